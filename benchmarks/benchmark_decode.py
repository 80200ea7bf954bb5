"""Decoding alone: frames per second and peak memory, decord's reader against ours.

    python benchmarks/benchmark_decode.py                      # 640x360 and 1280x720, 6,000-frame long clip
    python benchmarks/benchmark_decode.py --long-frames 9440 --pause 0.5

Makes its clips at run time (H.264, x264 "veryfast", one keyframe per 250 frames, like common
web video) from a scikit-image picture, under ``--workdir``; nothing large is committed.

Three ways to decode are measured:
  decord    the project's former reader: decord 0.6.0 ``get_batch`` of 32 frames, in process
  in-proc   featurizers.decoding.video_reader.IndexedVideo.read (PyAV), in process
  isolated  featurizers.decoding.decode.iter_frame_chunks: the same reader in a child process (what jobs run)

Throughput is measured with a consumer that only touches each chunk (best of ``--repeat``);
memory with a slow consumer that sleeps ``--pause`` seconds per chunk, as face detection
keeps the decoder waiting. Memory is the peak resident set of a fresh process plus its
children (the decoder and the spare decoder started ahead), sampled every 10 ms.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featurizers.decoding.decode import FrameSampling, iter_frame_chunks  # noqa: E402
from featurizers.decoding.video_reader import IndexedVideo  # noqa: E402


def make_clip(path: Path, n_frames: int, width: int, height: int) -> Path:
    """A slow pan over the astronaut picture, H.264 at 25 fps, made once and reused."""
    if path.exists():
        return path
    import av
    import skimage.data
    from PIL import Image

    base = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((width + 200, height + 200)))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "veryfast", "g": "250"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n_frames):
            k = i % 400
            dx = k if k < 200 else 400 - k
            frame = np.ascontiguousarray(base[dx // 2 : dx // 2 + height, dx : dx + width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    partial.rename(path)
    return path


def decord_chunks(path: Path, chunk_size: int = 32):
    """The former reader: decord get_batch, 32 frames at a time, in this process."""
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    for start in range(0, len(reader), chunk_size):
        yield reader.get_batch(list(range(start, min(start + chunk_size, len(reader))))).asnumpy()


def inproc_chunks(path: Path, chunk_size: int = 32):
    video = IndexedVideo(str(path))
    try:
        for chunk in video.read(np.arange(video.n_frames), chunk_size):
            yield np.stack(chunk.frames)
    finally:
        video.close()


def isolated_chunks(path: Path, chunk_size: int = 32):
    for chunk in iter_frame_chunks(path, FrameSampling(chunk_size=chunk_size)):
        yield chunk.frames


READERS = {"decord": decord_chunks, "in-proc": inproc_chunks, "isolated": isolated_chunks}


def tree_rss_mib() -> float:
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


class PeakTreeRss:
    """Highest RSS of this process and its children while a block runs, sampled every 10 ms."""

    def __enter__(self) -> PeakTreeRss:
        self.mib, self._stop = tree_rss_mib(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.mib = max(self.mib, tree_rss_mib())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def throughput(reader, path: Path, repeat: int, gap_s: float) -> tuple[float, float, int]:
    """Best frames/s over ``repeat`` passes, and the seconds to the first chunk of that pass.

    Each pass starts ``gap_s`` after the last, as clips follow each other in a job after
    detection has run (the isolated reader's spare process is ready by then).
    """
    best, first_s, n = 0.0, 0.0, 0
    for _ in range(repeat):
        time.sleep(gap_s)
        started = time.perf_counter()
        first, n = None, 0
        for frames in reader(path):
            first = first or time.perf_counter() - started
            n += len(frames)
        rate = n / (time.perf_counter() - started)
        if rate > best:
            best, first_s = rate, first
    return best, first_s, n


def slow_peak(reader, path: Path, pause: float, max_chunks: int | None) -> tuple[float, int]:
    """Peak RSS (MiB) of a loop that sleeps ``pause`` s per chunk, and the frames it read."""
    n = 0
    with PeakTreeRss() as peak:
        for i, frames in enumerate(reader(path)):
            n += len(frames)
            time.sleep(pause)
            if max_chunks is not None and i + 1 >= max_chunks:
                break
    return peak.mib, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/emotiw-decode-bench"))
    parser.add_argument("--long-frames", type=int, default=6000)
    parser.add_argument("--short-frames", type=int, default=250)
    parser.add_argument("--hd-frames", type=int, default=500)
    parser.add_argument("--pause", type=float, default=0.05, help="seconds the slow consumer spends per chunk")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between passes (as detection runs between clips)")
    parser.add_argument("--speed-long", action="store_true", help="also time the long clip (a minute or more)")
    parser.add_argument("--readers", default="decord,in-proc,isolated")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: speed,memory")
    parser.add_argument("--memory-case", nargs=2, metavar=("READER", "CLIP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_case:  # one memory measurement, in a fresh process
        mib, n = slow_peak(READERS[args.memory_case[0]], Path(args.memory_case[1]), args.pause, None)
        print(f"{mib:.0f} {n}")
        return
    readers = args.readers.split(",")
    short = make_clip(args.workdir / f"short_640x360_{args.short_frames}.mp4", args.short_frames, 640, 360)
    hd = make_clip(args.workdir / f"hd_1280x720_{args.hd_frames}.mp4", args.hd_frames, 1280, 720)
    long = make_clip(args.workdir / f"long_640x360_{args.long_frames}.mp4", args.long_frames, 640, 360)
    if "speed" not in args.skip:
        print(f"{'clip':28s} {'reader':9s} {'frames':>7s} {'frames/s':>9s} {'first chunk s':>14s}")
        for clip in (short, hd, long) if args.speed_long else (short, hd):
            for name in readers:
                rate, first, n = throughput(READERS[name], clip, args.repeat, args.gap)
                print(f"{clip.name:28s} {name:9s} {n:7d} {rate:9.1f} {first:14.3f}", flush=True)
    if "memory" not in args.skip:
        print(f"\nslow consumer, {args.pause} s per 32-frame chunk: peak RSS of this process and its children")
        print(f"{'clip':28s} {'reader':9s} {'frames':>7s} {'peak MiB':>9s}")
        for clip in (short, long):
            for name in readers:
                out = subprocess.run([sys.executable, __file__, "--pause", str(args.pause), "--memory-case", name, str(clip)],
                                     capture_output=True, text=True, check=True).stdout.split()
                print(f"{clip.name:28s} {name:9s} {int(out[1]):7d} {float(out[0]):9.0f}", flush=True)


if __name__ == "__main__":
    main()
