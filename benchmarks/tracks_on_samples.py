"""Face tracks against people on real clips: the shipped VGAF group sample by default.

    python benchmarks/tracks_on_samples.py
    python benchmarks/tracks_on_samples.py --data-root /videos --dataset folder --group

Runs the real decoder, detector and featurizer (as ``ClipExtractor.describe`` does) with a
:class:`FaceTracker` fed chunk by chunk, and prints per clip: sampled frames, the most faces
seen in one frame (a lower bound on the people), tracks in all, tracks of at least
``--min-track-seconds``, and the cosine similarity of the embeddings that the tracker's
``min_similarity`` gate compares: a face with its own track's running appearance (the
matched pairs) against the other faces of the same frame.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.extraction.clip_describer import ClipExtractor, iter_clip_faces  # noqa: E402
from pipelines.extraction.datasets import SAMPLE_ROOT, list_clips  # noqa: E402
from pipelines.extraction.face_tracks import FaceTracker, TrackerSettings, stitch_tracks, track_rows, unit_rows  # noqa: E402
from pipelines.extraction.settings import ExtractionConfig  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="vgaf", choices=["afew", "vgaf", "folder"])
    parser.add_argument("--data-root", default=None, help="default: the shipped sample of --dataset")
    parser.add_argument("--group", action="store_true", help="folder archives: every face")
    parser.add_argument("--featurizer", default="effnet_lite0_imagenet")
    parser.add_argument("--min-track-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    root = args.data_root or str(Path(SAMPLE_ROOT) / args.dataset)
    config = ExtractionConfig(dataset=args.dataset, featurizer=args.featurizer, group=args.group,
                              detector=ExtractionConfig.default_detector(args.dataset, args.group))
    extractor = ClipExtractor(config)
    settings = TrackerSettings()
    print(f"{'clip':<28} {'frames':>6} {'max faces':>9} {'tracks':>6} {'>= min s':>8} {'s':>6}")
    same, other = [], []
    for ref in list_clips(args.dataset, Path(root))[0]:
        if ref.problem:
            continue
        started = time.perf_counter()
        tracker = FaceTracker(config.spec.feature_dim, settings)
        n_frames, max_faces, fps = 0, 0, None
        for chunk, faces in iter_clip_faces(ref.path, config.sampling, extractor.detector,
                                             config.layout.aligns_faces):
            fps = chunk.native_fps
            n_frames += len(chunk.frames)
            if not faces.images:
                tracker.update_chunk(chunk.frame_indices, [], [], [])
                continue
            features, _ = extractor.embed_faces(faces.images)
            positions = np.asarray(faces.frame_positions)
            max_faces = max(max_faces, int(np.bincount(positions).max()))
            before = {t.local_id: t.appearance.copy() for t in tracker.live_tracks()}
            ids = tracker.update_chunk(chunk.frame_indices, positions, np.stack(faces.boxes), features)
            units = unit_rows(features)
            for face, track in enumerate(ids):  # similarity to the track's appearance before this chunk
                for live, appearance in before.items():
                    in_frame = positions == positions[face]
                    if live == track:
                        same.append(float(appearance @ units[face]))
                    elif live in ids[in_frame]:
                        other.append(float(appearance @ units[face]))
        clip = stitch_tracks([tracker.finish()], settings)
        long = track_rows(clip.tracks, fps, args.min_track_seconds) if fps else []
        print(f"{ref.clip_id:<28} {n_frames:>6} {max_faces:>9} {clip.n_tracks:>6} {len(long):>8} "
              f"{time.perf_counter() - started:>6.1f}")
    if same and other:
        print(f"cosine to own track:   median {np.median(same):.3f}, 1st percentile {np.percentile(same, 1):.3f}, "
              f"min {min(same):.3f} ({len(same)} pairs)")
        print(f"cosine to other track: median {np.median(other):.3f}, 99th percentile {np.percentile(other, 99):.3f}, "
              f"max {max(other):.3f} ({len(other)} pairs)")


if __name__ == "__main__":
    main()
