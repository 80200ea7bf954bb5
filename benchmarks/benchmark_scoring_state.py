"""A nightly scoring run over a large scored archive: wall time and peak memory of the run.

    python benchmarks/benchmark_scoring_state.py                  # 1,000,000 scored videos + 10 new
    python benchmarks/benchmark_scoring_state.py --rows 100000 --new 10 --work /tmp/bench

Builds a state of ``--rows`` synthetic scored videos (written by the job's own store, one
run), then times ``jobs.score``'s run over an archive listing of those videos, unchanged,
plus ``--new`` real sample videos that it describes and scores with a small model trained
here on two sample clips (frame step 10). Listing itself is not timed: the listing of a
million synthetic videos is given to the run as a table (on a real archive that is the
store's own listing, about a thousand keys per S3 LIST request). A second run with nothing
new shows the cost of an unchanged night. Peak memory is the resident set's high-water mark
during the run (Linux ``VmHWM``, reset before it), beside the resident set before it (Python,
Beam, torch and the model already loaded).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifiers.scoring import scores_metadata, scores_schema, scores_table  # noqa: E402
from jobs import extract, score, train  # noqa: E402
from jobs.job_setup import configure_logging  # noqa: E402
from pipelines.extraction.datasets import SAMPLE_ROOT  # noqa: E402
from pipelines.scoring import model_check, night_plan, scoring_run  # noqa: E402
from pipelines.scoring.commit_intent import CommitIntent, commit_run  # noqa: E402
from pipelines.scoring.score_store import ScoreStore, new_run_id  # noqa: E402

HAPPY = SAMPLE_ROOT / "afew" / "Train_AFEW" / "Happy" / "000001001.avi"
NEUTRAL = SAMPLE_ROOT / "afew" / "Train_AFEW" / "Neutral" / "000002002.avi"


def memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set


def train_model(work: Path) -> Path:
    root = work / "afew"
    for clip in (HAPPY, NEUTRAL):
        target = root / "Train_AFEW" / clip.parent.name / clip.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, target)
    assert extract.run(["--dataset", "afew", "--data-root", str(root), "--frame-step", "10",
                        "--output", str(work / "features")]) == 0
    assert train.run(["--features", str(work / "features"), "--output", str(work / "model")]) == 0
    return work / "model"


def synthetic_state(rows: int, setup: scoring_run.ScoringSetup, output: str) -> pd.DataFrame:
    """``rows`` scored videos (a few faceless, a few given up on) as one earlier run wrote them; returns the listing."""
    rng = np.random.default_rng(0)
    keys = np.array([f"cameras/{i % 100:02d}/{i:08d}.mp4" for i in range(rows)], dtype=object)
    sizes = rng.integers(10**5, 10**9, rows)
    mtimes = 1_700_000_000 * 10**9 + rng.integers(0, 10**17, rows)
    status = np.where(rng.random(rows) < 0.9, "ok", np.where(rng.random(rows) < 0.9, "faceless", "failed_permanently"))
    classes = scoring_run.score_classes(setup.model)
    ok = status == "ok"
    frame = pd.DataFrame({
        "key": keys, "path": "/archive/" + pd.Series(keys), "clip_id": keys, "size_bytes": sizes, "mtime_ns": mtimes,
        "status": status, "error": np.where(status == "failed_permanently", "VideoDecodeError: synthetic", None),
        "attempts": np.where(status == "failed_permanently", 3, 0), "has_face": ok,
        "predicted_label": np.where(ok, rng.choice(classes, rows), None),
        **{f"score_{c}": np.where(ok, rng.normal(size=rows), np.nan) for c in classes},
        "n_frames": rng.integers(10, 1000, rows), "n_face_frames": 0, "n_faces": 0,
        "scored_at": pd.Timestamp("2026-01-01", tz="UTC"), "model_sha256": setup.model_sha256,
        "featurizer": setup.config.featurizer, "run_id": "synthetic"})
    schema = scores_schema(classes, scores_metadata(setup.provenance, {}))
    commit_run(ScoreStore(output), CommitIntent(new_run_id(), scores_table(frame, schema), [], {"synthetic": True}))
    return frame[["key", "path", "size_bytes", "mtime_ns"]].rename(columns={"path": "url"})


def timed_run(setup: scoring_run.ScoringSetup, listing: pd.DataFrame, argv: list[str]) -> dict[str, float]:
    settings = score.scoring_settings(*score.build_parser().parse_known_args(argv))
    before = memory_kib("VmRSS")
    reset_peak()
    started = time.perf_counter()
    plan = night_plan.plan_night(settings, listing, setup.model_sha256)
    counts, _ = scoring_run.score_archive(setup, plan, settings, new_run_id()) if plan.has_work else \
        (night_plan.commit_idle_night(plan, settings, new_run_id()), None)
    seconds = time.perf_counter() - started
    peak = memory_kib("VmHWM")
    print(f"  {counts.line()}")
    return {"seconds": seconds, "rss_before_mib": before / 1024, "peak_mib": peak / 1024,
            "peak_above_before_mib": (peak - before) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10)
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed after)")
    args = parser.parse_args()
    configure_logging()
    for name in ("pipelines", "jobs.extract", "jobs.train", "featurizers"):
        logging.getLogger(name).setLevel(logging.ERROR)  # keep jobs.score's timings: index, plan, write
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        model = train_model(work)
        archive, output = work / "new", str(work / "state")
        archive.mkdir()
        for i in range(args.new):
            shutil.copy((HAPPY, NEUTRAL)[i % 2], archive / f"{i:03d}.avi")
        argv = ["--model", str(model), "--input", str(archive), "--output", output]
        settings = score.scoring_settings(*score.build_parser().parse_known_args(argv))
        setup = scoring_run.prepare(model_check.check_model(settings, night_plan.check_settings(settings)), settings)
        started = time.perf_counter()
        listing = synthetic_state(args.rows, setup, output)
        print(f"state of {args.rows} scored videos written in {time.perf_counter() - started:.1f} s")
        new = night_plan.list_archive(settings)
        new["key"] = "new/" + new["key"]
        night = pd.concat([listing, new], ignore_index=True)
        print(f"run over {len(night)} listed videos ({args.new} new):")
        first = timed_run(setup, night, argv)
        print(f"  {first['seconds']:.1f} s, peak resident {first['peak_mib']:.0f} MiB "
              f"({first['peak_above_before_mib']:.0f} MiB above the {first['rss_before_mib']:.0f} MiB before)")
        print(f"run over the same {len(night)} videos, nothing new:")
        again = timed_run(setup, night, argv)
        print(f"  {again['seconds']:.1f} s, peak resident {again['peak_mib']:.0f} MiB "
              f"({again['peak_above_before_mib']:.0f} MiB above the {again['rss_before_mib']:.0f} MiB before)")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
