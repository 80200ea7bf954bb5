"""Peak resident memory of describing a short clip and a long one: flat in clip length or not.

    python benchmarks/make_realistic_clips.py --out /tmp/realistic
    python benchmarks/benchmark_memory.py /tmp/realistic/long/short_640x360.mp4 /tmp/realistic/long/archive_640x360.mp4

Each clip runs in a fresh process (what one Beam worker does for one clip: ClipExtractor.process,
unsplit, with face rows kept as with ``--frames-output``), so each peak is that clip's alone,
models included; memory is the process and its children (the decoder runs in a child), sampled
every 20 ms (needs psutil). Prints frames, resolution, seconds and peak RSS per clip, and the difference
between the longest and the shortest clip (the project's target: at most 300 MB).
Results are written as JSON (``--save``, default ``benchmarks/results/memory.json``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class TreeRss:
    """Peak resident memory of this process plus its children (the decoder runs in one), sampled every 20 ms."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def now_mib(self) -> float:
        import psutil

        total = self._me.memory_info().rss
        for child in self._me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # a child that just exited
                pass
        return total / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mib = max(self.peak_mib, self.now_mib())

    def __enter__(self) -> "TreeRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def describe_one(path: str, frame_step: int) -> dict:
    """Describe one clip in this process and report what it cost."""
    from featurizers.decoding.decode import FrameSampling, probe_video
    from pipelines.extraction.clip_describer import ClipExtractor
    from pipelines.extraction.clip_records import ClipRef
    from pipelines.extraction.settings import ExtractionConfig

    config = ExtractionConfig(dataset="folder", featurizer="effnet_lite0_imagenet",
                              sampling=FrameSampling(step=frame_step))
    extractor = ClipExtractor(config)
    with TreeRss() as tree:
        models_rss = tree.now_mib()
        started = time.perf_counter()
        face_rows: list[dict] = []  # the clip's face rows, held as the memory figure has always held them
        result = extractor.describe_clip(ClipRef(Path(path).stem, path, "folder"), face_rows.extend)
        seconds = time.perf_counter() - started
    info = probe_video(path)
    import decord

    height, width = decord.VideoReader(path, num_threads=1)[0].shape[:2]
    return {"clip": path, "resolution": f"{width}x{height}", "frames_in_file": info.n_frames,
            "frames_described": result.row["n_frames"], "faces": result.row["n_faces"],
            "status": result.row["status"], "seconds": round(seconds, 1),
            "frames_per_s": round(result.row["n_frames"] / seconds, 1),
            "rss_after_model_load_mib": round(models_rss, 1),
            "peak_rss_mib": round(max(tree.peak_mib, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), 1),
            "peak_rss_of_main_process_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clips", nargs="+", help="video files, each described in its own process")
    parser.add_argument("--frame-step", type=int, default=1)
    parser.add_argument("--save", type=Path, default=Path(__file__).resolve().parent / "results" / "memory.json")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the child's mode
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(describe_one(args.clips[0], args.frame_step)))
        return {}
    runs = []
    for clip in args.clips:
        child = subprocess.run([sys.executable, __file__, "--one", "--frame-step", str(args.frame_step), clip],
                               check=True, capture_output=True, text=True)
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]))
    by_length = sorted(runs, key=lambda r: r["frames_described"])
    report = {"runs": runs, "frame_step": args.frame_step,
              "peak_difference_longest_vs_shortest_mib": round(by_length[-1]["peak_rss_mib"] - by_length[0]["peak_rss_mib"], 1)}
    print(f"peak RSS, longest ({by_length[-1]['frames_described']} frames) minus shortest "
          f"({by_length[0]['frames_described']} frames): {report['peak_difference_longest_vs_shortest_mib']} MiB")
    args.save.parent.mkdir(parents=True, exist_ok=True)
    args.save.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
