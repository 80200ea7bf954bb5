"""Bytes a job reads of a long video, in all and per segment, from the local disk and from S3.

    python benchmarks/benchmark_long_video_reads.py --minutes 60 --frame-step 250 --segment-frames 32

Makes (once, cached under ``--clip``) an hour-long 320x180, 25 fps H.264 clip of a face under a
slow camera move (the samples' own material, ``scripts/make_sample_videos.py``, looped back and
forth, with film grain for a real bitrate), then runs ``jobs.extract`` on it (direct runner,
one process) from a local folder and from a bucket on moto's S3 server (started here, as the
tests start it). Each clip is probed
once (the planning step logs the bytes its probe read) and each segment logs the bytes its
decoder read: from a bucket, the bytes fetched by ranged GETs; locally, the decoder process's
``rchar`` (/proc/self/io). Locally the decoder processes' ``rchar`` as a whole is also given
(every byte they read: the video, and the pipes' small messages). The target: the whole job
reads at most twice the file. Results go to ``benchmarks/results/long_video_reads_<codec>.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]

FPS = 25
SIZE = (320, 180)
CLIP_NAME = "long.mp4"
LOOP_FRAMES = 500
GRAIN = 14
"""Frames rendered from the stills; the clip plays them forwards and backwards until it is long enough."""


def make_clip(path: Path, frames: int, codec: str) -> None:
    """An H.264 .mp4 (or MPEG-4 .avi) of ``frames`` frames at 320x180, 25 fps."""
    import av
    import numpy as np
    from make_sample_videos import AFEW_CLIPS, clip_frames, skimage_photos

    loop = list(clip_frames(AFEW_CLIPS[0], skimage_photos(), SIZE, LOOP_FRAMES))
    loop = loop + loop[::-1]
    # Film grain, so that the clip takes the bytes real footage takes (about 350 kbit/s here);
    # a still under a slow pan alone compresses to 20 kbit/s, where the sample tables outweigh the frames.
    rng = np.random.default_rng(0)
    grain = [rng.integers(-GRAIN, GRAIN + 1, (SIZE[1], SIZE[0], 1), dtype=np.int16) for _ in range(37)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        if codec == "mpeg4":
            stream = container.add_stream("mpeg4", rate=FPS)
            stream.bit_rate = 600_000
        else:
            stream = container.add_stream("libx264", rate=FPS, options={"crf": "24", "preset": "veryfast"})
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = np.clip(loop[i % len(loop)] + grain[i % len(grain)], 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


class _Bytes(logging.Handler):
    """Collects the bytes that the planning step's probe and each segment's decoder log."""

    PROBE = re.compile(r"clip (\S+): (\d+) frames, split into (\d+) segments; its probe read (-?\d+) bytes")
    SEGMENT = re.compile(r"clip (\S+), segment (\d+) of (\d+) .*, (-?\d+) bytes of the video read")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.probe: list[int] = []
        self.segments: dict[int, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if m := self.PROBE.search(text):
            self.probe.append(int(m.group(4)))
        elif m := self.SEGMENT.search(text):
            self.segments[int(m.group(2))] = int(m.group(4))


def _decoder_rchar() -> int:
    import psutil

    total = 0
    for child in psutil.Process().children(recursive=True):
        try:
            if "decode_child" in " ".join(child.cmdline()):
                total += child.io_counters().read_chars
        except psutil.Error:
            pass
    return total


def run_job(data_root: str, out: Path, step: int, segment_frames: int) -> dict:
    """One ``jobs.extract`` run over the folder ``data_root``; its bytes read and its row."""
    import pandas as pd

    from featurizers.decoding import decode
    from jobs import extract

    decode._stop_ready()  # a fresh decoder process: its rchar is this job's alone
    decode._ready = None
    listed = extract.list_job_clips
    if data_root.startswith("s3://"):  # jobs.extract lists local folders; jobs.score lists buckets
        from pipelines.extraction.clip_records import ClipRef

        url = data_root + "/" + CLIP_NAME
        extract.list_job_clips = lambda *_args: ([ClipRef(Path(url).stem, url, "folder")], [])
    handler = _Bytes()
    loggers = [logging.getLogger("pipelines.graph.planning"), logging.getLogger("pipelines.graph.describe_steps")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    started = time.perf_counter()
    try:
        code = extract.run(["--dataset", "folder", "--data-root", data_root, "--output", str(out),
                            "--frame-step", str(step), "--segment-frames", str(segment_frames)])
    finally:
        extract.list_job_clips = listed
        for logger in loggers:
            logger.removeHandler(handler)
    seconds = time.perf_counter() - started
    rchar = _decoder_rchar()
    row = pd.read_parquet(out).iloc[0]
    segments = [handler.segments[k] for k in sorted(handler.segments)]
    return {"exit_code": code, "seconds": round(seconds, 1), "status": row.status, "n_frames": int(row.n_frames),
            "n_segments": int(row.n_segments), "probe_bytes": handler.probe[0] if handler.probe else None,
            "segment_bytes": segments, "job_bytes": (handler.probe[0] if handler.probe else 0) + sum(segments),
            "decoder_processes_rchar": rchar, "descriptor": [float(v) for v in row.descriptor[:4]]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the clip")
    parser.add_argument("--codec", choices=["h264", "mpeg4"], default="h264")
    parser.add_argument("--clip", type=Path, help="the clip (made here when missing); default in the temp folder")
    parser.add_argument("--frame-step", type=int, default=250)
    parser.add_argument("--segment-frames", type=int, default=32)
    parser.add_argument("--where", nargs="+", choices=["local", "s3"], default=["local", "s3"])
    parser.add_argument("--save", type=Path, help="default: benchmarks/results/long_video_reads_<codec>.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    frames = int(args.minutes * 60 * FPS)
    global CLIP_NAME
    suffix = ".mp4" if args.codec == "h264" else ".avi"
    CLIP_NAME = f"long{suffix}"
    clip = args.clip or Path(tempfile.gettempdir()) / f"long_{frames}_{SIZE[0]}x{SIZE[1]}_{args.codec}{suffix}"
    if not clip.exists():
        started = time.perf_counter()
        make_clip(clip, frames, args.codec)
        print(f"made {clip}: {frames} frames in {time.perf_counter() - started:.0f} s")
    size = clip.stat().st_size
    report: dict = {"clip": {"frames": frames, "minutes": args.minutes, "size": f"{SIZE[0]}x{SIZE[1]}", "fps": FPS,
                             "codec": args.codec, "bytes": size},
                    "frame_step": args.frame_step, "segment_frames": args.segment_frames, "cpus": os.cpu_count(),
                    "load_average_at_start": os.getloadavg()[0], "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for where in args.where:
            if where == "local":
                root = Path(tmp, "local")
                root.mkdir()
                os.link(clip, root / clip.name) if clip.stat().st_dev == root.stat().st_dev else \
                    root.joinpath(clip.name).symlink_to(clip)
                result = run_job(str(root), Path(tmp, "out-local"), args.frame_step, args.segment_frames)
            else:
                import fsspec
                import stores

                server = stores.S3Server()
                saved = stores.set_env(server.env)
                try:
                    bucket = stores.new_s3_bucket()
                    fsspec.filesystem("s3", skip_instance_cache=True).put_file(str(clip), f"{bucket}/long/{CLIP_NAME}")
                    result = run_job(f"{bucket}/long", Path(tmp, "out-s3"), args.frame_step, args.segment_frames)
                finally:
                    stores.restore_env(saved)
                    server.stop()
            result["job_bytes_per_file"] = round(result["job_bytes"] / size, 3)
            result["largest_segment_bytes"] = max(result["segment_bytes"], default=0)
            report["runs"][where] = result
            print(f"{where}: {result['status']}, {result['n_frames']} frames in {result['n_segments']} segments, "
                  f"{result['seconds']} s; file {size / 1e6:.1f} MB; probe read {result['probe_bytes'] / 1e6:.2f} MB;"
                  f" segments {sum(result['segment_bytes']) / 1e6:.1f} MB in all, largest "
                  f"{result['largest_segment_bytes'] / 1e6:.2f} MB; job {result['job_bytes'] / 1e6:.1f} MB = "
                  f"{result['job_bytes_per_file']}x the file (decoder processes' rchar "
                  f"{result['decoder_processes_rchar'] / 1e6:.1f} MB)")
    args.save = args.save or ROOT / "benchmarks" / "results" / f"long_video_reads_{args.codec}.json"
    args.save.parent.mkdir(parents=True, exist_ok=True)
    args.save.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
