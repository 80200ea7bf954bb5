"""Speed and accuracy of the faster detection modes against exact, at the resolutions users meet.

    python benchmarks/benchmark_fast_modes.py --make-clips /tmp/fastclips     # a minute or two
    python benchmarks/benchmark_fast_modes.py --clips /tmp/fastclips --save benchmarks/results/fast_modes.json

Clips (made from the samples' public-domain stills, as ``make_realistic_clips.py`` makes them):
720x576 AFEW-like (one face, MPEG-4 in AVI, described as AFEW), 1280x720 group scenes (described
as a ``--group`` archive: every face, aligned), 1920x1080 and 3840x2160 archive footage (one face
a frame), and 720x576 fast pans past a face (AFEW-like; faces that move between key frames).
Each mode (exact, ``--detect-every 3/5/10``, ``--detect-max-side 640``) describes every clip in
one process with ``ClipExtractor.describe_clip`` (what a Beam worker runs: decode, detect, crop or
align, embed); per clip the modes run in turn, ``--repeat`` times, and each mode's best pass on
each clip is kept: the machine is shared, and a slow pass measures the neighbours. Detection and
featurizer time are measured inside the same runs. For each mode: frames per second, its ratio
to exact, the lowest and mean descriptor cosine to exact, and the largest face-frame count
difference (share of exact's). The load average is recorded with each figure.

Label agreement: LinearSVCs are trained once at the start, as a user trains them
(``benchmark_adaptive.train_models``: ``jobs.extract`` at frame step 1 then ``jobs.train --split
all`` on the shipped AFEW samples; the same on the shipped VGAF samples for the 1280x720 group
clips, whose descriptors have VGAF's layout). The timed runs also cut each clip into
``--window-seconds`` windows (the timeline of ``jobs.score --window-seconds``), and each mode's clip
and window descriptors are labelled by the model and compared with exact's: counts of clips and
windows whose label agrees. A window without a face in either mode has no label and is counted
apart. The featurizer is the generic ImageNet Lite0 and the samples' clips carry no real emotion,
so this measures how stable the predicted label is under a mode, not accuracy. The benchmark clips
are re-filmings of sample clips the models were trained on (at other sizes), which makes labels
steadier than on unseen footage: exact's smallest top-two margin over clips and over windows is
recorded to show how near a label came to flipping.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark_adaptive import WindowRows, cosine, descriptor_label_and_margin, train_models  # noqa: E402  (this folder is on sys.path when run as a script)

from classifiers.model_io import TrainedModel, load_model  # noqa: E402
from classifiers.scoring import predict_clips  # noqa: E402
from featurizers.detection.detection_mode import EXACT, DetectionMode, describe_mode  # noqa: E402
from featurizers.embedding.registry import DEFAULT_FEATURIZER  # noqa: E402
from pipelines.extraction.clip_describer import ClipExtractor, clip_result  # noqa: E402
from pipelines.extraction.clip_records import ClipRef  # noqa: E402
from pipelines.extraction.segments import SegmentTask, merge_segments  # noqa: E402
from pipelines.extraction.settings import ExtractionConfig  # noqa: E402
from pipelines.extraction.timeline import TimelineSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

MODES = (EXACT, DetectionMode(3), DetectionMode(5), DetectionMode(10), DetectionMode(max_side=640))
SETS = {
    # folder name: (frame size, dataset, group, clips of make_sample_videos' lists, frames a clip)
    "720x576": ((720, 576), "afew", False, ("AFEW", (0, 1, 2)), 100),
    "1280x720": ((1280, 720), "folder", True, ("VGAF", (2, 3)), 50),
    "1920x1080": ((1920, 1080), "folder", False, ("AFEW", (3, 4)), 50),
    "3840x2160": ((3840, 2160), "folder", False, ("AFEW", (3, 4)), 50),
    # A camera panning past a face at 8 and 16 px a frame on average: faces that move between key frames.
    "720x576-pan": ((720, 576), "afew", False, ("PAN", (8, 16)), 100),
}
MIN_FACE_SIZES = {"1920x1080-min20": ("1920x1080", 20)}
"""Extra sets: the same clips with another ``--min-face-size``: where ``--detect-max-side`` can help
(P-Net's finest level is 12 * longer side / min face size wide: 720 px at 1080p and 32 px, 1152 at 20)."""


def make_clips(out: Path) -> None:
    """Film the benchmark clips (H.264 for the archive sizes, MPEG-4 AVI for AFEW's)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from make_sample_videos import AFEW_CLIPS, VGAF_CLIPS, clip_frames, skimage_photos, write_video

    photos = skimage_photos()
    for name, (size, _, _, (kind, rows), frames) in SETS.items():
        for row in rows:
            if kind == "PAN":
                path = out / name / f"pan_{row:02d}px.avi"
                write_video(path, pan_frames(photos["astronaut"], size, row, frames), size)
            else:
                clip = (AFEW_CLIPS if kind == "AFEW" else VGAF_CLIPS)[row]
                path = out / name / (Path(clip.path).stem + (".avi" if name == "720x576" else ".mp4"))
                write_video(path, clip_frames(clip, photos, size, frames), size)
            print(f"wrote {path}", flush=True)


def pan_frames(photo: Image.Image, size: tuple[int, int], speed: int, frames: int) -> Iterator[np.ndarray]:
    """A camera panning right past one face at ``speed`` px a frame on average (smooth start and
    stop, so about 1.5x that midway): the face crosses the frame in the middle of the clip."""
    from make_sample_videos import CameraMove, film

    width, height = size
    span = speed * frames
    gradient = np.linspace(60, 180, width + span)[None, :, None] * np.ones((height, 1, 3))
    canvas = Image.fromarray(gradient.astype(np.uint8))
    face_side = int(height * 0.9)
    canvas.paste(photo.resize((face_side, face_side)), ((width + span - face_side) // 2, (height - face_side) // 2))
    move = CameraMove((width / 2, height / 2), (width / 2 + span, height / 2), width, width, shake=0.0)
    return film(lambda _index: canvas, move, size, frames, seed=speed)


class StageClock:
    """Seconds spent in face detection and in the featurizer, summed over the runs it watches."""

    def __init__(self, extractor: ClipExtractor) -> None:
        self.detect_s = 0.0
        self.embed_s = 0.0
        detector, embed = extractor.detector, extractor.embed_faces
        for name in ("find_all", "check_boxes"):
            setattr(detector, name, self._timed(getattr(detector, name), "detect_s"))
        extractor.embed_faces = self._timed(embed, "embed_s")  # type: ignore[method-assign]

    def _timed(self, call, field):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                setattr(self, field, getattr(self, field) + time.perf_counter() - started)
        return run


def train_vgaf_model(work: Path) -> Path:
    """A LinearSVC on the shipped VGAF samples (frame step 1, every split), as a user trains one."""
    from jobs import extract, train

    features = work / "vgaf_features"
    if extract.run(["--dataset", "vgaf", "--data-root", str(ROOT / "sample_videos" / "vgaf"), "--frame-step", "1",
                    "--output", str(features)]) != 0:
        raise SystemExit("extraction of the VGAF sample clips failed")
    folder = work / "vgaf_model_linearsvc"
    if train.run(["--features", str(features), "--output", str(folder), "--classifier", "linearsvc",
                  "--split", "all"]) != 0:
        raise SystemExit("training the VGAF LinearSVC failed")
    return folder


def labels(model: TrainedModel, rows: list[dict]) -> list[str | None]:
    """The predicted class of each clip or window row; None where it has no face (or failed)."""
    if not rows:
        return []
    usable = np.array([bool(r.get("has_face", r.get("n_face_frames", 0) > 0)) and not r.get("error")
                       for r in rows], dtype=bool)
    X = np.stack([np.asarray(r["descriptor"], np.float32).reshape(-1) for r in rows])
    return list(predict_clips(model.pipeline, model.provenance.classes, X, usable)[0])


def lowest_margin(model: TrainedModel, rows: list[dict]) -> float | None:
    """Exact's smallest top-two score margin over labelled rows: how near a label is to flipping."""
    margins = [descriptor_label_and_margin(model, r["descriptor"])[1] for r in rows
               if r.get("has_face", r.get("n_face_frames", 0) > 0) and not r.get("error")]
    return round(min(margins), 4) if margins else None


def label_agreement(mode_labels: list[str | None], exact_labels: list[str | None]) -> dict:
    """Counts: labelled in both and agreeing, labelled in both, faceless in both, labelled in one only."""
    both = [(m, e) for m, e in zip(mode_labels, exact_labels) if m is not None and e is not None]
    return {"agree": sum(m == e for m, e in both), "labelled": len(both),
            "faceless": sum(m is None and e is None for m, e in zip(mode_labels, exact_labels)),
            "face_in_one_only": sum((m is None) != (e is None) for m, e in zip(mode_labels, exact_labels))}


def run_set(name: str, clips: list[Path], repeat: int, model: TrainedModel, window_s: float) -> dict:
    folder, min_face = MIN_FACE_SIZES.get(name, (name, None))
    _, dataset, group, _, _ = SETS[folder]
    detector = ExtractionConfig.default_detector(dataset, group)  # as the jobs choose it
    if min_face is not None:
        detector = replace(detector, min_face_size=min_face)
    base = ExtractionConfig(dataset=dataset, featurizer=DEFAULT_FEATURIZER, group=group, segment_frames=0,
                            detector=detector, timeline=TimelineSettings(window_seconds=window_s))
    if model.provenance.layout != json.loads(json.dumps(base.layout.to_dict())):  # tuples as the file's lists
        raise SystemExit(f"{name}: the model's descriptor layout {model.provenance.layout} is not the clips' "
                         f"{base.layout.to_dict()}")
    extractors = {mode: ClipExtractor(replace(base, detection=mode)) for mode in MODES}
    clocks = {mode: StageClock(ex) for mode, ex in extractors.items()}
    refs = [ClipRef(p.stem, str(p), dataset) for p in clips]
    for ex in extractors.values():  # warm-up: compiled kernels and runtimes
        ex.describe_clip(refs[0])
    # Per clip, every mode in turn, best pass kept per mode and clip: a busy spell of the shared
    # machine then hits all modes alike instead of the one that happened to run in it.
    best: dict = {(mode, ref.clip_id): None for mode in MODES for ref in refs}
    rows: dict = {mode: {} for mode in MODES}
    windows: dict = {mode: {} for mode in MODES}
    for _ in range(repeat):
        for ref in refs:
            for mode, ex in extractors.items():
                clock = clocks[mode]
                clock.detect_s = clock.embed_s = 0.0
                load_before = os.getloadavg()[0]
                started = time.perf_counter()
                sink = WindowRows()
                part = ex.describe(SegmentTask(ref), timeline_sink=sink)
                rows[mode][ref.clip_id] = clip_result(ref, merge_segments([part], ex.layout), ex.spec.name).row
                windows[mode][ref.clip_id] = sink.rows
                seconds = time.perf_counter() - started
                load = (load_before + os.getloadavg()[0]) / 2
                kept = best[mode, ref.clip_id]
                if kept is None or seconds < kept["seconds"]:
                    best[mode, ref.clip_id] = {"seconds": seconds, "detect_s": clock.detect_s,
                                               "embed_s": clock.embed_s, "load": load}
    best = {mode: {key: sum(best[mode, ref.clip_id][key] for ref in refs) for key in
                   ("seconds", "detect_s", "embed_s", "load")} for mode in MODES}
    for mode in MODES:
        best[mode]["load"] = round(best[mode]["load"] / len(refs), 2)
    rows = {mode: [rows[mode][ref.clip_id] for ref in refs] for mode in MODES}
    clip_labels = {mode: labels(model, rows[mode]) for mode in MODES}
    window_labels = {mode: [label for ref in refs for label in labels(model, windows[mode][ref.clip_id])]
                     for mode in MODES}
    if len({len(v) for v in window_labels.values()}) != 1:
        raise SystemExit(f"{name}: the modes cut the clips into different numbers of windows")
    exact_rows = rows[EXACT]
    frames = sum(r["n_frames"] for r in exact_rows)
    result = {"resolution": name, "dataset": dataset, "group": group, "min_face_size": base.detector.min_face_size,
              "clips": len(refs), "frames": frames, "windows": len(window_labels[EXACT]), "window_seconds": window_s,
              "exact_clip_labels": clip_labels[EXACT], "exact_window_labels": window_labels[EXACT],
              "exact_lowest_clip_margin": lowest_margin(model, rows[EXACT]),
              "exact_lowest_window_margin": lowest_margin(model, [w for r in refs for w in windows[EXACT][r.clip_id]]),
              "modes": []}
    exact_fps = frames / best[EXACT]["seconds"]
    for mode in MODES:
        timing = best[mode]
        cosines = [cosine(np.asarray(r["descriptor"]), np.asarray(e["descriptor"]))
                   for r, e in zip(rows[mode], exact_rows)]
        face_diff = [abs(r["n_face_frames"] - e["n_face_frames"]) / max(e["n_face_frames"], 1)
                     for r, e in zip(rows[mode], exact_rows)]
        fps = frames / timing["seconds"]
        result["modes"].append({
            "mode": describe_mode(mode), "fps": round(fps, 2), "ratio_vs_exact": round(fps / exact_fps, 2),
            "min_cosine": round(min(cosines), 5), "mean_cosine": round(float(np.mean(cosines)), 5),
            "max_face_frame_diff_pct": round(100 * max(face_diff), 2),
            "face_frames": sum(r["n_face_frames"] for r in rows[mode]),
            "detect_ms_per_frame": round(1000 * timing["detect_s"] / frames, 1),
            "embed_ms_per_frame": round(1000 * timing["embed_s"] / frames, 1),
            "other_ms_per_frame": round(1000 * (timing["seconds"] - timing["detect_s"] - timing["embed_s"]) / frames,
                                        1),
            "load_average_1min": timing["load"],
            "clip_labels": label_agreement(clip_labels[mode], clip_labels[EXACT]),
            "window_labels": label_agreement(window_labels[mode], window_labels[EXACT]),
        })
    return result


def agreed(counts: dict) -> str:
    """"a/b" agreeing of labelled, with "+f" faceless and "!o" face in one mode only when there are any."""
    text = f"{counts['agree']}/{counts['labelled']}"
    return text + (f"+{counts['faceless']}f" if counts["faceless"] else "") + \
        (f"!{counts['face_in_one_only']}" if counts["face_in_one_only"] else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make-clips", type=Path, help="write the benchmark clips here and stop")
    parser.add_argument("--clips", type=Path, help="folder made by --make-clips")
    parser.add_argument("--sets", nargs="+", default=[*SETS, *MIN_FACE_SIZES], choices=[*SETS, *MIN_FACE_SIZES])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--save", type=Path, default=Path("benchmarks/results/fast_modes.json"))
    parser.add_argument("--window-seconds", type=float, default=1.0, help="window length for window labels")
    parser.add_argument("--work", type=Path, help="folder for the trained models (default: a new temporary one)")
    args = parser.parse_args(argv)
    if not args.window_seconds > 0:
        parser.exit(2, f"--window-seconds must be > 0, got {args.window_seconds}\n")
    if args.repeat < 1:
        parser.exit(2, f"--repeat must be >= 1, got {args.repeat}\n")
    if args.make_clips:
        make_clips(args.make_clips)
        return
    if args.clips is None:
        parser.error("--clips (or --make-clips) is required")
    torch.set_num_threads(os.cpu_count() or 1)
    load_before = os.getloadavg()
    work = args.work or Path(tempfile.mkdtemp(prefix="fast-modes-"))
    started = time.perf_counter()
    models = {"afew": load_model(train_models(work)["decision_function"])}
    if any(SETS[MIN_FACE_SIZES.get(n, (n,))[0]][2] for n in args.sets):
        models["vgaf"] = load_model(train_vgaf_model(work))
    print(f"trained {', '.join(models)} LinearSVC(s) in {time.perf_counter() - started:.0f} s", flush=True)
    results = {"command": "python benchmarks/benchmark_fast_modes.py " + " ".join(sys.argv[1:] if argv is None
                                                                                  else argv),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared: see load_average_1min)",
               "featurizer": DEFAULT_FEATURIZER, "repeat": args.repeat, "window_seconds": args.window_seconds,
               "label_models": "LinearSVC, jobs.extract --frame-step 1 + jobs.train --split all on the shipped "
                               "samples (AFEW; VGAF for the group clips)",
               "label_note": "generic ImageNet Lite0 features and samples without real emotion: label agreement "
                             "measures the label's stability under a mode, not accuracy",
               "load_average_before": [round(v, 2) for v in load_before], "sets": []}
    for name in args.sets:
        clips = sorted((args.clips / MIN_FACE_SIZES.get(name, (name,))[0]).glob("*.*"))
        group = SETS[MIN_FACE_SIZES.get(name, (name,))[0]][2]
        result = run_set(name, clips, args.repeat, models["vgaf" if group else "afew"], args.window_seconds)
        results["sets"].append(result)
        print(f"\n{name} ({result['dataset']}{', group' if result['group'] else ''}, min face "
              f"{result['min_face_size']} px): "
              f"{result['clips']} clips, {result['frames']} frames, {result['windows']} windows of "
              f"{result['window_seconds']:g} s; exact's lowest top-two margin: clips "
              f"{result['exact_lowest_clip_margin']}, windows {result['exact_lowest_window_margin']}")
        print(f"{'mode':<14}{'fps':>7}{'x exact':>9}{'min cos':>9}{'mean cos':>10}{'faces %':>9}"
              f"{'detect':>8}{'embed':>7}{'other':>7}{'load':>6}{'clips =':>9}{'windows =':>11}")
        for m in result["modes"]:
            print(f"{m['mode']:<14}{m['fps']:>7.1f}{m['ratio_vs_exact']:>9.2f}{m['min_cosine']:>9.4f}"
                  f"{m['mean_cosine']:>10.4f}{m['max_face_frame_diff_pct']:>9.1f}{m['detect_ms_per_frame']:>8.1f}"
                  f"{m['embed_ms_per_frame']:>7.1f}{m['other_ms_per_frame']:>7.1f}{m['load_average_1min']:>6.1f}"
                  f"{agreed(m['clip_labels']):>9}{agreed(m['window_labels']):>11}",
                  flush=True)
    results["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    results["wall_s"] = round(time.perf_counter() - started, 1)
    args.save.parent.mkdir(parents=True, exist_ok=True)
    args.save.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nsaved {args.save}")


if __name__ == "__main__":
    main()
