"""What windows and face tracks add to describing a long clip: the same clip described without them, with
windows, and with windows and tracks.

    python benchmarks/make_realistic_clips.py --out /tmp/realistic
    python benchmarks/benchmark_timeline_overhead.py /tmp/realistic/long/archive_640x360.mp4 --frame-step 2

Each run is what a worker does for an unsplit clip (``ClipExtractor.describe``), with the window
and track rows turned into ``jobs.extract``'s rows and written as Parquet shards as the clip
streams. Reported per mode: wall time, the CPU time of this process (detection, featurizer and
the timeline; decoding runs in its own process), and, measured inside the same runs, the time
spent in the timeline itself (windows and tracks fed chunk by chunk, rows handed out and written).
On a shared machine wall and CPU time move by a few percent from run to run; the in-run share is
the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pipelines.extraction.clip_describer as clip_describer  # noqa: E402
from featurizers.decoding.decode import FrameSampling, probe_video  # noqa: E402
from pipelines.extraction.clip_describer import ClipExtractor  # noqa: E402
from pipelines.extraction.clip_records import ClipRef  # noqa: E402
from pipelines.extraction.segments import SegmentTask  # noqa: E402
from pipelines.extraction.settings import ExtractionConfig  # noqa: E402
from pipelines.extraction.timeline import PartTimeline, TimelineSettings  # noqa: E402
from pipelines.graph.timeline_rows import TimelineOutputs, TimelineRows  # noqa: E402

SPENT = {"timeline": 0.0}


class TimedPartTimeline(PartTimeline):
    """The describer's PartTimeline, with the thread time of its work added up."""

    def add_chunk(self, *args, **kwargs):
        started = time.thread_time()
        try:
            return super().add_chunk(*args, **kwargs)
        finally:
            SPENT["timeline"] += time.thread_time() - started

    def pop_final(self):
        started = time.thread_time()
        try:
            return super().pop_final()
        finally:
            SPENT["timeline"] += time.thread_time() - started


class TimedWriter:
    """A timeline sink that times the rows' conversion and writing (the graph's TimelineWriter)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.track_rows = 0

    def windows(self, rows):
        started = time.thread_time()
        self.inner.windows(rows)
        SPENT["timeline"] += time.thread_time() - started

    def tracks(self, rows):
        started = time.thread_time()
        self.inner.tracks(rows)
        SPENT["timeline"] += time.thread_time() - started
        self.track_rows += len(rows)


def describe_once(extractor: ClipExtractor, ref: ClipRef, timeline: TimelineSettings, folder: Path) -> dict:
    extractor.config = replace(extractor.config, timeline=timeline)
    outputs = TimelineOutputs(str(folder / "windows") if timeline.windows_on else None,
                              str(folder / "tracks") if timeline.track_faces else None,
                              TimelineRows(extractor.config))
    writer = outputs.open(ref, "s00000", 1)
    timed = TimedWriter(writer)
    SPENT["timeline"] = 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    result = extractor.describe(SegmentTask(ref), None, timed)  # no face rows: they would bring tracks in all modes
    started = time.thread_time()
    writer.close()
    SPENT["timeline"] += time.thread_time() - started
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert result.error is None, result.error
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "timeline_cpu_s": round(SPENT["timeline"], 3),
            "frames": result.accumulator.n_frames, "faces": result.accumulator.n_faces,
            "track_rows": timed.track_rows if timeline.track_faces else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path)
    parser.add_argument("--frame-step", type=int, default=1)
    parser.add_argument("--window-seconds", type=float, default=10.0)
    parser.add_argument("--group", action="store_true", help="every face (VGAF aggregation)")
    parser.add_argument("--featurizer", default="effnet_lite0_imagenet")
    parser.add_argument("--repeat", type=int, default=1, help="describe the clip this many times per mode, "
                                                                  "the modes taking turns; the fastest run counts")
    parser.add_argument("--save", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)

    clip_describer.PartTimeline = TimedPartTimeline  # the describer builds its timeline through this name
    config = ExtractionConfig(dataset="folder", featurizer=args.featurizer, group=args.group,
                              detector=ExtractionConfig.default_detector("folder", args.group),
                              sampling=FrameSampling(step=args.frame_step))
    extractor = ClipExtractor(config)
    info = probe_video(args.video)
    ref = ClipRef(args.video.stem, str(args.video), "folder")
    modes = {"none": TimelineSettings(),
             "windows": TimelineSettings(window_seconds=args.window_seconds),
             "windows+tracks": TimelineSettings(window_seconds=args.window_seconds, track_faces=True)}
    with tempfile.TemporaryDirectory() as tmp:
        warm = ClipRef("warm", str(args.video), "folder")  # load and compile the networks, import the tracker's solver
        extractor.config = replace(config, timeline=modes["windows+tracks"])
        extractor.describe(SegmentTask(warm, frame_range=(0, 64 * args.frame_step)))
        runs: dict[str, list[dict]] = {name: [] for name in modes}
        for turn in range(args.repeat):
            for name, settings in modes.items():
                runs[name].append(describe_once(extractor, ref, settings, Path(tmp) / f"{name}-{turn}"))
    results = {name: min(done, key=lambda r: r["cpu_s"]) for name, done in runs.items()}
    base = results["none"]
    for name, r in results.items():
        r["timeline_share"] = round(r["timeline_cpu_s"] / r["cpu_s"], 4)
        r["cpu_vs_none"] = round(r["cpu_s"] / base["cpu_s"] - 1, 4)
        r["wall_vs_none"] = round(r["wall_s"] / base["wall_s"] - 1, 4)
        r["timeline_ms_per_frame"] = round(1000 * r["timeline_cpu_s"] / r["frames"], 3)
        print(f"{name:>15}: {r['frames']} frames, {r['faces']} faces, wall {r['wall_s']} s, CPU {r['cpu_s']} s "
              f"({r['cpu_vs_none']:+.1%} against none), in the timeline {r['timeline_cpu_s']} s "
              f"= {r['timeline_share']:.2%} of the CPU time ({r['timeline_ms_per_frame']} ms a frame)"
              + (f", {r['track_rows']} track rows" if r["track_rows"] is not None else ""))
    report = {"video": str(args.video), "native_frames": info.n_frames, "fps": info.fps,
              "frame_step": args.frame_step, "window_seconds": args.window_seconds, "group": args.group,
              "featurizer": args.featurizer, "repeat": args.repeat, "modes": results,
              "all_runs": runs}
    if args.save:
        args.save.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
