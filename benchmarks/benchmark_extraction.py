"""Frames per second of each extraction stage, end to end, and against the plain loop.

    python benchmarks/benchmark_extraction.py                       # shipped AFEW sample
    python benchmarks/benchmark_extraction.py --dataset vgaf        # shipped VGAF sample
    python benchmarks/benchmark_extraction.py --dataset folder --data-root /videos --group

    python benchmarks/make_realistic_clips.py --out /tmp/realistic       # real resolutions
    python benchmarks/benchmark_extraction.py --data-root /tmp/realistic/afew --save benchmarks/results/afew_720x576.json
    python benchmarks/benchmark_extraction.py --dataset vgaf --data-root /tmp/realistic/vgaf --save benchmarks/results/vgaf_1280x720.json

Prints a table and writes it as JSON (``--save``, default ``benchmarks/results/<dataset>.json``)
so that a change in speed shows in review. Stages are timed in one process, one after the
other, on the same clips and settings; the end-to-end figure is ClipExtractor.process (what
each Beam worker runs), without runner start-up. The plain loop is timed on the same clips
and its descriptors are compared with the pipeline's. Pipeline and plain loop are timed in
turn ``--repeat`` times and the best pass of each is reported: on a shared machine a slow
pass measures the neighbours, not the code. Peak resident memory is reported for the whole
process and, sampled while each runs, for the pipeline and for the plain loop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.plain_loop import plain_loop_descriptor, plain_loop_models  # noqa: E402
from featurizers.decoding.decode import FrameSampling, iter_frame_chunks, probe_video  # noqa: E402
from featurizers.embedding.registry import DEFAULT_FEATURIZER, FEATURIZERS  # noqa: E402
from pipelines.extraction.clip_describer import ClipExtractor, faces_of_chunk  # noqa: E402
from pipelines.extraction.datasets import SAMPLE_ROOT, list_clips  # noqa: E402
from pipelines.extraction.settings import ExtractionConfig  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """Resident memory now (Linux /proc), or the process peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mib()


class PeakRss:
    """The highest resident memory seen while a block runs, sampled every 5 ms by a thread."""

    def __init__(self) -> None:
        self.mib = 0.0

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.mib = max(self.mib, current_rss_mib())

    def __enter__(self) -> "PeakRss":
        self.mib = current_rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.mib = max(self.mib, current_rss_mib())


def timed(fn, memory: PeakRss | None = None):
    """Seconds a call takes; with ``memory``, also the peak resident memory during it."""
    started = time.perf_counter()
    if memory is None:
        value = fn()
    else:
        with memory:
            value = fn()
    return value, time.perf_counter() - started


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two descriptors (1.0 for two zero descriptors: a faceless clip on both sides)."""
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norms) if norms else float(not a.any() and not b.any())


def _duration_s(path: str) -> float:
    info = probe_video(path)
    return info.n_frames / info.fps if info.fps > 0 else float("nan")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=("afew", "vgaf", "folder"), default="afew")
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--group", action="store_true", help="folder: every face (VGAF-style)")
    parser.add_argument("--featurizer", default=DEFAULT_FEATURIZER, choices=sorted(FEATURIZERS))
    parser.add_argument("--weights")
    parser.add_argument("--frame-step", type=int, default=1)
    parser.add_argument("--max-clips", type=int, default=0, help="0: all clips")
    parser.add_argument("--skip-plain-loop", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes of pipeline and plain loop (best kept)")
    parser.add_argument("--save", type=Path, help="JSON file for the figures")
    args = parser.parse_args(argv)

    root = args.data_root or SAMPLE_ROOT / args.dataset
    refs, _ = list_clips(args.dataset, root)
    refs = [r for r in refs if r.problem is None][: args.max_clips or None]
    config = ExtractionConfig(
        dataset=args.dataset, featurizer=args.featurizer, weights=args.weights,
        detector=ExtractionConfig.default_detector(args.dataset, args.group),
        sampling=FrameSampling(step=args.frame_step), group=args.group,
    )
    extractor, load_s = timed(lambda: ClipExtractor(config))
    align = config.layout.aligns_faces
    extractor.describe_clip(refs[0])  # warm-up: first calls allocate and pick kernels for each shape

    # Stage by stage: decode all, then detect all, then featurize all (same batching as the pipeline).
    decode_s = detect_s = crop_s = featurize_s = 0.0
    n_frames = n_faces = 0
    resolutions = set()
    for ref in refs:
        chunks = iter_frame_chunks(ref.path, config.sampling)
        while True:  # chunk by chunk, as the pipeline streams: a long clip is never held whole
            chunk, seconds = timed(lambda: next(chunks, None))
            decode_s += seconds
            if chunk is None:
                break
            resolutions.add(f"{chunk.frames.shape[2]}x{chunk.frames.shape[1]}")
            n_frames += len(chunk.frames)
            detections, seconds = timed(lambda: extractor.detector.detect(chunk.frames))
            detect_s += seconds
            faces, seconds = timed(lambda: faces_of_chunk(chunk, detections, align))
            crop_s += seconds
            n_faces += len(faces.images)
            if faces.images:
                _, seconds = timed(lambda: extractor.embed_faces(faces.images))
                featurize_s += seconds

    def pipeline_pass():
        return [extractor.describe_clip(ref) for ref in refs]

    plain_pass = None
    if not args.skip_plain_loop:
        detector, embedder = plain_loop_models(config.detector, extractor.spec, extractor.embedder.model)
        plain_loop_descriptor(refs[0].path, detector, embedder, config.layout, FrameSampling(step=10))  # warm-up

        def plain_pass():
            return [plain_loop_descriptor(ref.path, detector, embedder, config.layout, config.sampling)
                    for ref in refs]

    pipeline_s = plain_s = float("inf")
    pipeline_memory, plain_memory = PeakRss(), PeakRss()
    pipeline_peak = plain_peak = 0.0
    for _ in range(max(1, args.repeat)):
        results, seconds = timed(pipeline_pass, pipeline_memory)
        pipeline_s, pipeline_peak = min(pipeline_s, seconds), max(pipeline_peak, pipeline_memory.mib)
        if plain_pass is not None:
            plain, seconds = timed(plain_pass, plain_memory)
            plain_s, plain_peak = min(plain_s, seconds), max(plain_peak, plain_memory.mib)
    pipeline_frames = sum(r.row["n_frames"] for r in results)
    report = {
        "dataset": args.dataset, "data_root": str(root), "clips": len(refs), "featurizer": config.featurizer,
        "resolution": ", ".join(sorted(resolutions)), "frame_step": args.frame_step, "frames": n_frames,
        "faces": n_faces, "seconds_of_video": round(sum(_duration_s(ref.path) for ref in refs), 1),
        "torch_threads": torch.get_num_threads(), "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
        "torch": torch.__version__, "featurizer_backend": extractor.embedder.backend,
        "detector_backend": extractor.detector.backend,
        "model_load_s": round(load_s, 2),
        "decode_fps": round(n_frames / decode_s, 1),
        "detect_fps": round(n_frames / detect_s, 1),
        "crop_or_align_faces_per_s": round(n_faces / crop_s, 1) if crop_s else None,
        "featurize_faces_per_s": round(n_faces / featurize_s, 1) if featurize_s else None,
        "repeat": max(1, args.repeat),
        "pipeline_fps": round(pipeline_frames / pipeline_s, 2),
        "pipeline_peak_rss_mib": round(pipeline_peak, 1),
    }
    if plain_pass is not None:
        plain_frames = sum(n for _, n in plain)
        diff = max(float(np.abs(r.row["descriptor"] - d).max()) for r, (d, _) in zip(results, plain))
        cosine = min(_cosine(r.row["descriptor"], d) for r, (d, _) in zip(results, plain))
        report.update({
            "plain_loop_fps": round(plain_frames / plain_s, 2),
            "plain_loop_peak_rss_mib": round(plain_peak, 1),
            "speedup_vs_plain_loop": round((pipeline_frames / pipeline_s) / (plain_frames / plain_s), 2),
            "max_abs_descriptor_difference": diff,
            "min_descriptor_cosine": round(cosine, 6),
        })
    report["peak_rss_mib"] = round(peak_rss_mib(), 1)
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    save = args.save or Path(__file__).resolve().parent / "results" / f"{args.dataset}.json"
    save.parent.mkdir(parents=True, exist_ok=True)
    save.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
