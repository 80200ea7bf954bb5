"""Adaptive frame rate (``jobs.score --adaptive``) against exact scoring: speed, frames used, label agreement,
and the calibration of the default margin threshold.

    python benchmarks/make_realistic_clips.py --out /tmp/realistic --clip-frames 250 --long-frames 50
    python benchmarks/benchmark_adaptive.py --clips /tmp/realistic --out benchmarks/results/adaptive.json

A model is trained first, as a user would (``jobs.extract`` then ``jobs.train --split all``), on the
six shipped AFEW sample clips at frame step 1: a LinearSVC (SVM margins) and a random forest
(probabilities). Then, per resolution (the 720x576 AFEW-like clips, the 1280x720 VGAF-like ones, the
1920x1080 archive-like ones, all described with the model's settings: one face a frame):

1. **exact**: every sampled frame of each clip decoded, detected, cropped and embedded once, timed,
   the faces of each frame kept; the windows' and clips' exact labels from them;
2. **simulation**: for a grid of thresholds, the adaptive decisions replayed on those faces (a
   window's descriptor at step s is the statistics of its frames on the step-s grid): share of
   frames, window- and clip-label agreement with exact. A frame's faces do not depend on which
   other frames are described, so the replay is what an adaptive run gives (checked in 3);
3. **adaptive**: the real describer (:func:`describe_adaptive`) at the chosen threshold, timed,
   its window labels compared with exact and with the replay.

Times are wall and CPU seconds of this process (detection and the featurizer; decoding runs in
its own process and is left out of the CPU figure). On a shared machine the CPU ratio is the
steadier one; the load average before and after is recorded.

The calibration picks, per kind of score, the threshold with the fewest frames that keeps at
least 97 % of the window labels of exact scoring on the AFEW-like clips; the 1280x720 and
1920x1080 clips are then scored with it (held out). The machine's load average is recorded: it is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifiers.evaluation import class_scores  # noqa: E402
from classifiers.model_io import TrainedModel, load_model  # noqa: E402
from classifiers.scoring import top_two_margins  # noqa: E402
from pipelines.extraction.adaptive import DEFAULT_SCHEDULE, AdaptiveSettings, next_level, on_grid  # noqa: E402
from pipelines.extraction.adaptive_describer import describe_adaptive  # noqa: E402
from pipelines.extraction.clip_describer import ClipExtractor, iter_clip_faces  # noqa: E402
from pipelines.extraction.clip_records import ClipRef  # noqa: E402
from pipelines.extraction.segments import SegmentTask  # noqa: E402
from pipelines.extraction.statistics import ClipAccumulator  # noqa: E402
from pipelines.extraction.timeline import TimelineSettings  # noqa: E402
from pipelines.extraction.windows import window_indices  # noqa: E402
from pipelines.scoring.settings_from_model import extraction_config_for_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_AGREEMENT = 0.97
THRESHOLDS = {"decision_function": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 1e9],
              "probability": [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1e9]}


def train_models(work: Path) -> dict[str, Path]:
    """LinearSVC and random forest on the six AFEW sample clips, frame step 1, as a user trains them."""
    from jobs import extract, train

    features = work / "features"
    if extract.run(["--dataset", "afew", "--data-root", str(ROOT / "sample_videos" / "afew"), "--frame-step", "1",
                    "--output", str(features)]) != 0:
        raise SystemExit("extraction of the sample clips failed")
    models = {}
    for kind, classifier in (("decision_function", "linearsvc"), ("probability", "randomforest")):
        folder = work / f"model_{classifier}"
        if train.run(["--features", str(features), "--output", str(folder), "--classifier", classifier,
                      "--split", "all"]) != 0:
            raise SystemExit(f"training the {classifier} failed")
        models[kind] = folder
    return models


class ClipFaces:
    """Every sampled frame of one clip, described once: its faces' features by frame, and the exact time."""

    def __init__(self, extractor: ClipExtractor, path: Path, window_s: float) -> None:
        started, cpu = time.perf_counter(), time.process_time()
        frames, features, fps = [], {}, None
        for chunk, faces in iter_clip_faces(str(path), extractor.config.sampling, extractor.detector,
                                            extractor.layout.aligns_faces):
            fps = chunk.native_fps
            frames.extend(int(i) for i in chunk.frame_indices)
            if faces.images:
                embedded, _ = extractor.embed_faces(faces.images)
                ids = chunk.frame_indices[faces.frame_positions]
                for frame in np.unique(ids):
                    features[int(frame)] = embedded[ids == frame]
        self.seconds = time.perf_counter() - started
        self.cpu_seconds = time.process_time() - cpu
        self.path = path
        self.sampled = np.asarray(frames, np.int64)
        self.features = features
        self.fps = float(fps)
        self.base_step = extractor.config.sampling.step_for(self.fps)
        self.units = window_indices(self.sampled, self.fps, window_s)
        self.layout = extractor.layout
        self.window_s = window_s

    def accumulator(self, frames: np.ndarray) -> ClipAccumulator:
        acc = ClipAccumulator(self.layout)
        acc.add_frames(len(frames))
        for frame in frames:
            if int(frame) in self.features:
                f = self.features[int(frame)]
                acc.add_faces(f, np.full(len(f), int(frame)))
        return acc


def label_and_margin(model: TrainedModel, acc: ClipAccumulator) -> tuple[int | None, float | None]:
    return descriptor_label_and_margin(model, acc.descriptor() if acc.has_face else None)


def descriptor_label_and_margin(model: TrainedModel, descriptor: np.ndarray | None) -> tuple[int | None, float | None]:
    """The predicted class (column of the scores) and top-two margin; Nones without a face."""
    if descriptor is None:
        return None, None
    scores, _ = class_scores(model.pipeline, np.asarray(descriptor, np.float32).reshape(1, -1))
    return int(np.argmax(scores[0])), float(top_two_margins(scores)[0])


class ClipLevels:
    """One clip's windows described at each step of the schedule (the threshold-free part of a replay)."""

    def __init__(self, clip: ClipFaces, model: TrainedModel, steps: tuple[int, ...]) -> None:
        self.clip, self.model, self.steps = clip, model, steps
        self.accs: dict[int, list[ClipAccumulator]] = {}
        self.margins: dict[int, list[float | None]] = {}
        self.labels: dict[int, list[int | None]] = {}
        for unit in np.unique(clip.units):
            mine = clip.sampled[clip.units == unit]
            accs = [clip.accumulator(mine[on_grid(mine, clip.base_step, step)]) for step in steps]
            decided = [label_and_margin(model, acc) for acc in accs]
            self.accs[int(unit)] = accs
            self.labels[int(unit)] = [d[0] for d in decided]
            self.margins[int(unit)] = [d[1] for d in decided]


def replay(levels: ClipLevels, threshold: float) -> dict:
    """The adaptive decisions on one clip's described faces: per window, its final step, frames and label."""
    windows, steps, frames = {}, {}, 0
    whole = ClipAccumulator(levels.clip.layout)
    for unit, margins in levels.margins.items():
        level = 0
        while next_level(levels.steps, level, margins[level], threshold) is not None:
            level += 1
        windows[unit], steps[unit] = levels.labels[unit][level], levels.steps[level]
        frames += levels.accs[unit][level].n_frames
        whole.merge(levels.accs[unit][level])
    return {"windows": windows, "clip": label_and_margin(levels.model, whole)[0], "frames": frames, "steps": steps}


def exact_labels(clip: ClipFaces, model: TrainedModel) -> dict:
    windows = {int(u): label_and_margin(model, clip.accumulator(clip.sampled[clip.units == u]))[0]
               for u in np.unique(clip.units)}
    return {"windows": windows, "clip": label_and_margin(model, clip.accumulator(clip.sampled))[0]}


def agreement(clips: list[ClipFaces], exact: list[dict], adaptive: list[dict]) -> dict:
    same_w = [e["windows"][u] == a["windows"][u] for e, a in zip(exact, adaptive) for u in e["windows"]]
    same_c = [e["clip"] == a["clip"] for e, a in zip(exact, adaptive)]
    frames = sum(len(c.sampled) for c in clips)
    return {"share_of_frames": round(sum(a["frames"] for a in adaptive) / frames, 4),
            "window_agreement": round(float(np.mean(same_w)), 4), "windows": len(same_w),
            "clip_agreement": round(float(np.mean(same_c)), 4), "clips": len(same_c)}


def sweep(clips: list[ClipFaces], model: TrainedModel, kind: str, steps: tuple[int, ...]) -> list[dict]:
    exact = [exact_labels(c, model) for c in clips]
    levels = [ClipLevels(c, model, steps) for c in clips]
    return [{"threshold": t, **agreement(clips, exact, [replay(lv, t) for lv in levels])} for t in THRESHOLDS[kind]]


def calibrate(table: list[dict]) -> float:
    """The threshold with the fewest frames among those keeping TARGET_AGREEMENT of the window labels."""
    good = [row for row in table if row["window_agreement"] >= TARGET_AGREEMENT]
    return min(good, key=lambda row: (row["share_of_frames"], -row["threshold"]))["threshold"]



class WindowRows:
    """A timeline sink keeping a clip's bare window rows (no track rows are asked for here)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def windows(self, rows: list[dict]) -> None:
        self.rows.extend(rows)

    def tracks(self, rows: list[dict]) -> None:
        pass

def timed_adaptive(extractor: ClipExtractor, clips: list[ClipFaces], model: TrainedModel,
                   settings: AdaptiveSettings) -> tuple[float, float, list[dict]]:
    """The real adaptive describer on each clip: its wall and CPU time, each clip's window labels, frames, steps."""
    class Judge:
        def __init__(self) -> None:
            self.settings = settings

        def setup(self) -> None:
            pass

        def margins(self, descriptors: np.ndarray) -> np.ndarray:
            return top_two_margins(class_scores(model.pipeline, descriptors.astype(np.float32))[0])

    judge, seconds, cpu, out = Judge(), 0.0, 0.0, []
    for clip in clips:
        sink = WindowRows()
        started, cpu_started = time.perf_counter(), time.process_time()
        result = describe_adaptive(extractor, SegmentTask(ClipRef(clip.path.stem, str(clip.path), "folder")),
                                   judge.settings, judge.margins, sink)
        seconds += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        if result.error:
            raise SystemExit(f"{clip.path}: {result.error}")
        windows = {int(round(row["start_s"] / clip.window_s)):
                   descriptor_label_and_margin(model, row["descriptor"] if row["has_face"] else None)[0]
                   for row in sink.rows}
        out.append({"windows": windows, "clip": label_and_margin(model, result.accumulator)[0],
                    "frames": result.accumulator.n_frames, "steps": [r["frame_step"] for r in sink.rows],
                    "window_descriptors": {int(round(row["start_s"] / clip.window_s)): row["descriptor"]
                                           for row in sink.rows if row["has_face"]},
                    "clip_descriptor": result.accumulator.descriptor() if result.accumulator.has_face else None})
    return seconds, cpu, out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / norm) if norm else float(np.array_equal(a, b))


def descriptor_cosines(clips: list[ClipFaces], adaptive: list[dict]) -> dict:
    """Lowest and mean cosine of the adaptive clip and window descriptors to exact's (windows with a face in both)."""
    windows, whole = [], []
    for clip, run in zip(clips, adaptive):
        for unit, descriptor in run["window_descriptors"].items():
            exact = clip.accumulator(clip.sampled[clip.units == unit])
            if exact.has_face:
                windows.append(cosine(np.asarray(descriptor, np.float64), exact.descriptor().astype(np.float64)))
        exact = clip.accumulator(clip.sampled)
        if run["clip_descriptor"] is not None and exact.has_face:
            whole.append(cosine(run["clip_descriptor"].astype(np.float64), exact.descriptor().astype(np.float64)))
    return {"clip_cosine_min": round(min(whole), 5), "clip_cosine_mean": round(float(np.mean(whole)), 5),
            "window_cosine_min": round(min(windows), 5), "window_cosine_mean": round(float(np.mean(windows)), 5)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, required=True, help="make_realistic_clips.py --out folder")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "adaptive.json")
    parser.add_argument("--window-seconds", type=float, default=2.0)
    parser.add_argument("--schedule", default=",".join(map(str, DEFAULT_SCHEDULE)))
    parser.add_argument("--model", type=Path, help="calibrate this jobs.train model folder instead of training "
                                                   "two on the sample clips")
    args = parser.parse_args(argv)
    steps = tuple(int(s) for s in args.schedule.split(","))
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="adaptive-bench-"))
    if args.model is not None:
        own = load_model(args.model)
        models = {"decision_function" if hasattr(own.pipeline, "decision_function") else "probability": own}
    else:
        models = {kind: load_model(folder) for kind, folder in train_models(work).items()}
    first = next(iter(models))
    config = extraction_config_for_model(models[first].provenance)
    config = replace(config, segment_frames=0, timeline=TimelineSettings(window_seconds=args.window_seconds))
    extractor = ClipExtractor(config)
    groups = {"720x576": sorted((args.clips / "afew").rglob("*.avi")),
              "1280x720": sorted((args.clips / "vgaf").rglob("*.mp4")),
              "1920x1080": sorted((args.clips / "hd").glob("*.mp4"))}
    groups = {name: paths for name, paths in groups.items() if paths}  # folders of earlier versions lack hd/
    results: dict = {"command": "python benchmarks/benchmark_adaptive.py " + " ".join(argv or sys.argv[1:]),
                     "schedule": list(steps), "window_seconds": args.window_seconds,
                     "featurizer": config.featurizer, "model_frame_step": config.sampling.step,
                     "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
                     "load_average_before": [round(v, 2) for v in load_before], "resolutions": {}}
    ClipFaces(extractor, ROOT / "sample_videos" / "afew" / "Train_AFEW" / "Happy" / "000001001.avi",
              args.window_seconds)  # warm-up: first inferences compile and allocate; not timed
    described = {}
    for name, paths in groups.items():
        clips = [ClipFaces(extractor, p, args.window_seconds) for p in paths]
        described[name] = clips
        print(f"{name}: {len(clips)} clips, {sum(len(c.sampled) for c in clips)} frames described exactly "
              f"in {sum(c.seconds for c in clips):.1f} s", flush=True)
    thresholds = {}
    for kind, model in models.items():
        table = sweep(described["720x576"], model, kind, steps)
        thresholds[kind] = calibrate(table)
        results[f"calibration_{kind}"] = {"on": "720x576", "table": table, "chosen": thresholds[kind]}
        print(f"calibrated {kind}: {thresholds[kind]}", json.dumps(table), flush=True)
    for name, clips in described.items():
        frames = sum(len(c.sampled) for c in clips)
        exact_s = sum(c.seconds for c in clips)
        model = models[first]
        exact = [exact_labels(c, model) for c in clips]
        settings = AdaptiveSettings(steps, thresholds[first])
        exact_cpu = sum(c.cpu_seconds for c in clips)
        adaptive_s, adaptive_cpu, adaptive = timed_adaptive(extractor, clips, model, settings)
        replayed = [replay(ClipLevels(c, model, steps), settings.threshold) for c in clips]
        row = {"clips": len(clips), "frames": frames, "faces": sum(len(f) for c in clips for f in c.features.values()),
               "threshold": settings.threshold, "exact_s": round(exact_s, 2),
               "exact_fps": round(frames / exact_s, 2), "adaptive_s": round(adaptive_s, 2),
               "adaptive_fps": round(frames / adaptive_s, 2), "ratio_vs_exact": round(exact_s / adaptive_s, 2),
               "exact_cpu_s": round(exact_cpu, 2), "adaptive_cpu_s": round(adaptive_cpu, 2),
               "cpu_ratio_vs_exact": round(exact_cpu / adaptive_cpu, 2),
               **agreement(clips, exact, adaptive), **descriptor_cosines(clips, adaptive),
               "replay_agrees_with_run": [r["windows"] for r in replayed] == [a["windows"] for a in adaptive],
               "final_steps": [a["steps"] for a in adaptive]}
        for kind, model in models.items():  # the replay for each kind at its calibrated threshold
            ex = [exact_labels(c, model) for c in clips]
            row[f"replay_{kind}"] = {"threshold": thresholds[kind],
                                     **agreement(clips, ex, [replay(ClipLevels(c, model, steps), thresholds[kind])
                                                             for c in clips])}
        results["resolutions"][name] = row
        print(name, json.dumps(row), flush=True)
    results["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
