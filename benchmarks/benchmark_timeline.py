"""Per-frame cost of windows and face tracks on a long synthetic clip, against the clip statistics alone.

    python benchmarks/benchmark_timeline.py                                  # 50,000 frames, 1-6 faces, 1280-D
    python benchmarks/benchmark_timeline.py --frames 5000 --max-faces 1      # AFEW-like, quick
    python benchmarks/benchmark_timeline.py --save benchmarks/results/timeline.json

No video is decoded: a scene of people walking in and out of view (1 to ``--max-faces`` faces a
frame, each with its own embedding plus noise) is generated chunk by chunk, as a clip streams,
and only the calls the extractor would add are timed, chunk of ``--chunk`` frames by chunk:

* ``clip statistics``: ``ClipAccumulator.add_frames/add_faces``, what every clip pays today;
* ``windows``: ``WindowedAccumulator.add_frames/add_faces`` and ``pop_closed`` with the
  windows' rows, as the clip goes;
* ``tracks``: ``FaceTracker.update_chunk`` and ``pop_closed``, then ``finish``,
  ``stitch_tracks`` and the track rows.

The same clip is then tracked in segments of ``--segment-frames`` and stitched; the ids must
equal the unsplit ones. Figures: CPU microseconds of this process per sampled frame
(``time.process_time``, steadier than wall time on a shared machine), and that as a share of the
whole extraction's time per frame recorded in ``benchmarks/results/{vgaf_1280x720,afew_720x576}.json``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.tables.schema import DescriptorLayout  # noqa: E402
from pipelines.extraction.face_tracks import FaceTracker, stitch_tracks, track_rows  # noqa: E402
from pipelines.extraction.statistics import ClipAccumulator  # noqa: E402
from pipelines.extraction.windows import WindowedAccumulator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class Scene:
    """People on a wide frame: each stays for a while, walks slowly, then leaves and is replaced."""

    def __init__(self, max_faces: int, dim: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.max_faces, self.dim = max_faces, dim
        self.slots: list[dict | None] = [None] * max_faces
        self.next_person = 0
        self.face_people: list[int] = []  # the truth: each face's person, in feeding order
        self.long_misses = 0  # a person missed more than 2 frames in a row: a tracker must break the track

    def frame(self) -> tuple[np.ndarray, np.ndarray]:
        boxes, embeddings = [], []
        for slot in range(self.max_faces):
            person = self.slots[slot]
            if person is None or person["left"] <= 0:
                if slot > 0 and self.rng.random() < 0.02:  # the slot stays empty a while: 1..max faces
                    self.slots[slot] = None
                    continue
                person = self.slots[slot] = {
                    "id": self.next_person, "vector": self.rng.normal(size=self.dim).astype(np.float32),
                    "x": 200.0 * slot + 20, "y": 300.0, "left": int(self.rng.integers(50, 2000)), "missed": 0}
                self.next_person += 1
            person["left"] -= 1
            person["x"] += self.rng.normal(0, 1.0)
            person["y"] += self.rng.normal(0, 1.0)
            if self.rng.random() < 0.03:  # a missed detection
                person["missed"] += 1
                continue
            self.long_misses += person["missed"] > 2
            person["missed"] = 0
            self.face_people.append(person["id"])
            boxes.append([person["x"], person["y"], person["x"] + 120, person["y"] + 120])
            embeddings.append(person["vector"] + self.rng.normal(0, 0.3, size=self.dim).astype(np.float32))
        return np.array(boxes, np.float64).reshape(-1, 4), np.array(embeddings, np.float32).reshape(-1, self.dim)

    def chunks(self, n_frames: int, chunk: int):
        for start in range(0, n_frames, chunk):
            indices = np.arange(start, min(start + chunk, n_frames))
            frames = [self.frame() for _ in indices]
            positions = np.concatenate([np.full(len(b), p) for p, (b, _) in enumerate(frames)]).astype(np.int64)
            yield (indices, positions, np.concatenate([b for b, _ in frames]),
                   np.concatenate([e for _, e in frames]))


def run(args: argparse.Namespace) -> dict:
    fps, dim = 25.0, args.dim
    layout = DescriptorLayout("vgaf" if args.max_faces > 1 else "afew", dim)
    clip = ClipAccumulator(layout)
    windows = WindowedAccumulator(layout, args.window_seconds, fps)
    tracker = FaceTracker(dim)
    seconds = {"clip statistics": 0.0, "windows": 0.0, "tracks": 0.0}
    n_faces, n_window_rows, n_track_rows, max_live = 0, 0, 0, 0
    all_ids = []
    scene = Scene(args.max_faces, dim)
    for indices, positions, boxes, embeddings in scene.chunks(args.frames, args.chunk):
        n_faces += len(embeddings)
        face_frames = indices[positions]
        t0 = time.process_time()
        clip.add_frames(len(indices))
        clip.add_faces(embeddings, face_frames)
        t1 = time.process_time()
        windows.add_frames(indices)
        windows.add_faces(embeddings, face_frames)
        n_window_rows += len([w.row() for w in windows.pop_closed()])
        t2 = time.process_time()
        all_ids.append(tracker.update_chunk(indices, positions, boxes, embeddings))
        n_track_rows += len(track_rows(tracker.pop_closed(), fps))
        t3 = time.process_time()
        seconds["clip statistics"] += t1 - t0
        seconds["windows"] += t2 - t1
        seconds["tracks"] += t3 - t2
        max_live = max(max_live, tracker.n_live)
    t0 = time.process_time()
    n_window_rows += len([w.row() for w in windows.windows()])
    t1 = time.process_time()
    stitched = stitch_tracks([tracker.finish()])
    n_track_rows += len(track_rows(stitched.tracks, fps))
    t2 = time.process_time()
    seconds["windows"] += t1 - t0
    seconds["tracks"] += t2 - t1
    unsplit_ids = np.concatenate(all_ids)
    people = np.array(scene.face_people)
    people_per_track = [len(np.unique(people[unsplit_ids == t])) for t in np.unique(unsplit_ids)]

    # The same scene in segments, each tracked alone and shipped through pickle, then stitched.
    parts, local_ids, part_bytes = [], [], []
    scene_chunks = Scene(args.max_faces, dim).chunks(args.frames, args.chunk)
    part_tracker, ids = FaceTracker(dim), []
    for indices, positions, boxes, embeddings in scene_chunks:
        ids.append(part_tracker.update_chunk(indices, positions, boxes, embeddings))
        if (indices[-1] + 1) % args.segment_frames == 0 or indices[-1] + 1 == args.frames:
            blob = pickle.dumps(part_tracker.finish())
            part_bytes.append(len(blob))
            parts.append(pickle.loads(blob))
            local_ids.append(np.concatenate(ids))
            part_tracker, ids = FaceTracker(dim), []
    t0 = time.process_time()
    split = stitch_tracks(parts)
    stitch_s = time.process_time() - t0
    split_ids = np.concatenate([split.clip_ids(i, ids) for i, ids in enumerate(local_ids)])

    per_frame_us = {name: 1e6 * s / args.frames for name, s in seconds.items()}
    result = {
        "frames": args.frames, "fps": fps, "max_faces_per_frame": args.max_faces, "faces": n_faces,
        "feature_dim": dim, "chunk": args.chunk, "window_seconds": args.window_seconds,
        "cpu_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "cpu_us_per_frame": {k: round(v, 1) for k, v in per_frame_us.items()},
        "people": len(np.unique(people)), "tracks": stitched.n_tracks,
        "people_missed_over_2_frames": scene.long_misses,
        "tracks_holding_two_people": sum(n > 1 for n in people_per_track), "track_rows": n_track_rows,
        "window_rows": n_window_rows,
        "max_live_tracks": max_live,
        "segments": len(parts), "segment_frames": args.segment_frames, "stitch_s": round(stitch_s, 4),
        "largest_pickled_segment_tracks_bytes": max(part_bytes),
        "split_ids_equal_unsplit": bool(np.array_equal(split_ids, unsplit_ids)),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }
    for name in ("vgaf_1280x720", "afew_720x576"):
        recorded = RESULTS / f"{name}.json"
        if recorded.exists():
            ms_per_frame = 1000 / json.loads(recorded.read_text())["pipeline_fps"]
            result[f"share_of_{name}_pipeline_frame"] = {
                k: f"{v / 1000 / ms_per_frame:.2%}" for k, v in per_frame_us.items() if k != "clip statistics"}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--max-faces", type=int, default=6)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--window-seconds", type=float, default=10.0)
    parser.add_argument("--segment-frames", type=int, default=2048)
    parser.add_argument("--save", type=Path, default=None)
    args = parser.parse_args(argv)
    text = json.dumps(run(args), indent=2)
    print(text)
    if args.save:
        args.save.write_text(text + "\n")


if __name__ == "__main__":
    main()
