"""The report on a large scored archive: time and memory to write the page, its size, and Chromium's time to draw it.

    python benchmarks/benchmark_report.py                               # 100,000 videos, 200 of 2 h drawn
    python benchmarks/benchmark_report.py --videos 10000 --hours 10 --no-browser

Builds a ``jobs.score`` output of ``--videos`` synthetic scored videos (latest view and
manifest by the job's own store; 1 % failed), of which ``--drawn`` (the report's default
``--max-videos``) last ``--hours`` each, with a window row every ``--window-seconds`` and
``--tracks`` track rows; the other videos have window rows too, so the report must filter.
Then times ``python -m jobs.report`` in a child process (its wall time and peak resident set,
from ``wait4``) and, unless ``--no-browser``, headless Chromium loading the page from disk
until its layout is done (``document.readyState`` complete and every figure measured).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifiers.scoring import score_column, scores_schema, scores_table  # noqa: E402
from common.tables.schema import AFEW_CLASSES  # noqa: E402
from pipelines.scoring.commit_intent import CommitIntent, commit_run  # noqa: E402
from pipelines.scoring.score_store import ScoreStore, new_run_id  # noqa: E402


def build_output(root: Path, videos: int, drawn: int, hours: float, window_s: float, tracks: int,
                 short_windows: int = 6) -> dict[str, int]:
    """A scores output; returns its row counts."""
    rng = np.random.default_rng(0)
    classes = AFEW_CLASSES
    keys = [f"archive/{i:07d}.mp4" for i in range(videos)]
    status = np.where(rng.random(videos) < 0.01, "error", "ok")
    status[:drawn] = "ok"  # the drawn videos sort first
    now = pd.Timestamp.now(tz="UTC")
    run_id = new_run_id()
    latest = pd.DataFrame({
        "key": keys, "path": keys, "clip_id": keys, "size_bytes": 1000, "mtime_ns": 1, "status": status,
        "error": np.where(status == "error", "synthetic failure", None), "attempts": 0, "has_face": status == "ok",
        "predicted_label": np.where(status == "ok", "Happy", None), "n_frames": 100, "n_face_frames": 100,
        "n_faces": 100, "scored_at": now, "model_sha256": "ab" * 32, "featurizer": "synthetic", "run_id": run_id,
        **{score_column(c): rng.normal(size=videos) for c in classes}})
    schema = scores_schema(classes)
    commit_run(ScoreStore(str(root)), CommitIntent(run_id, scores_table(latest, schema), [], {
        "counts": {"new": videos, "rescored": 0, "reused": 0, "skipped": 0,
                   "failed": int((status == "error").sum()), "permanently_failed": 0, "removed": 0},
        "listed": videos}))
    long_windows = math.ceil(hours * 3600 / window_s)
    ok_keys = np.array([k for k, s in zip(keys, status) if s == "ok"], dtype=object)
    counts = np.where(np.arange(len(ok_keys)) < drawn, long_windows, short_windows)
    position = np.concatenate([np.arange(n) for n in counts])  # window index within its video
    span = np.repeat(counts, counts) * window_s
    start = position * window_s
    t = start / span
    has_face = ~((t > 0.4) & (t < 0.45))
    window_parts = [pd.DataFrame({
        "key": np.repeat(ok_keys, counts), "start_s": start, "end_s": start + window_s, "n_frames": 250,
        "n_face_frames": np.where(has_face, 250, 0), "has_face": has_face,
        "predicted_label": np.where(has_face, "Happy", None),
        **{score_column(c): np.where(has_face, np.sin(2 * np.pi * (3 * t + j / 7)) - 0.5, np.nan)
           for j, c in enumerate(classes)}})]
    track_parts = []
    for key in ok_keys[:drawn]:
        begin = np.sort(rng.uniform(0, long_windows * window_s * 0.9, tracks))
        track_parts.append(pd.DataFrame({
            "key": key, "track_id": np.arange(tracks), "start_s": begin,
            "end_s": begin + rng.uniform(5, long_windows * window_s * 0.3, tracks), "n_frames": 100,
            "predicted_label": rng.choice(classes, tracks), **{score_column(c): 0.0 for c in classes}}))
    windows, track_rows = pd.concat(window_parts, ignore_index=True), pd.concat(track_parts, ignore_index=True)
    for name, frame in (("windows", windows), ("tracks", track_rows)):
        (root / name).mkdir()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), root / name / "part-000.parquet")
    return {"videos": videos, "window_rows": len(windows), "track_rows": len(track_rows)}


def run_report(scores: Path, output: Path, max_videos: int) -> dict[str, float]:
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "jobs.report", "--scores", str(scores), "--output", str(output),
                              "--max-videos", str(max_videos)], cwd=ROOT, stdout=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"jobs.report failed ({status})")
    page = output / "index.html"
    return {"report_s": round(seconds, 2), "report_peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "page_mib": round(page.stat().st_size / 2**20, 2)}


def browser_load(page: Path) -> dict[str, float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.set_page_load_timeout(300)
        started = time.perf_counter()
        driver.get(page.as_uri())
        figures = driver.execute_script(
            "return Array.from(document.querySelectorAll('svg.timeline')).filter("
            "s => s.getBoundingClientRect().width > 0).length")
        return {"browser_load_s": round(time.perf_counter() - started, 2), "figures_drawn": figures}
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--drawn", type=int, default=200)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--window-seconds", type=float, default=10.0)
    parser.add_argument("--tracks", type=int, default=12)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(dir=args.work))
    try:
        started = time.perf_counter()
        figures = build_output(work / "scores", args.videos, args.drawn, args.hours, args.window_seconds, args.tracks)
        figures["build_s"] = round(time.perf_counter() - started, 1)
        figures |= run_report(work / "scores", work / "report", args.drawn)
        if not args.no_browser:
            figures |= browser_load(work / "report" / "index.html")
        figures |= {"load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(), "drawn": args.drawn,
                    "hours": args.hours, "window_seconds": args.window_seconds,
                    "tracks_per_video": args.tracks}
        print(json.dumps(figures, indent=2))
        if args.save:
            args.save.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
