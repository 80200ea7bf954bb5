"""Synthetic but schema-faithful outputs of jobs.score and jobs.extract, for the report's tests.

The scores output is written by the project's own commit (``commit_intent.commit_run``) with the scores schema
(history, latest view, manifest); its windows and tracks tables use the schemas ``jobs.score``
writes them with (``classifiers.timeline_scoring``). The extraction tables use the descriptor,
face-row (with its integer ``track_id``), window and track schemas of ``common``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from classifiers.scoring import score_column, scores_schema, scores_table
from classifiers.timeline_scoring import track_scores_schema, window_scores_schema
from common.tables.parquet_io import rows_to_table
from common.tables.schema import AFEW_CLASSES, DescriptorLayout, descriptor_table_schema, frame_table_schema
from common.tables.timeline_schema import track_table_schema, window_table_schema
from pipelines.scoring.commit_intent import CommitIntent, commit_run
from pipelines.scoring.score_store import ScoreStore

CLASSES = AFEW_CLASSES
RUN_ID = "20260301T020000.000000Z"
FACE_CLASSES = ("Anger", "Contempt", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise")


@dataclass
class ScoredVideo:
    key: str
    status: str = "ok"
    error: str | None = None
    duration_s: float = 0.0
    window_s: float = 10.0
    faceless_windows: frozenset[int] = frozenset()
    tracks: list[tuple[int, float, float, str]] = field(default_factory=list)
    """(track_id, start_s, end_s, predicted_label)."""

    def windows(self) -> list[tuple[float, float, bool]]:
        count = math.ceil(self.duration_s / self.window_s) if self.duration_s else 0
        return [(k * self.window_s, min((k + 1) * self.window_s, self.duration_s), k not in self.faceless_windows)
                for k in range(count)]


def margins(t: float, phase: float, period_s: float = 250.0) -> list[float]:
    """Smooth SVM-margin-like scores over time, one per class, in about [-1.4, 0.4]."""
    return [0.9 * math.sin(2 * math.pi * t / period_s + phase + 0.9 * i) - 0.5 for i in range(len(CLASSES))]


def standard_videos() -> list[ScoredVideo]:
    """An ordinary video, a two-hour one, a faceless one, and two failures (one with HTML in its key)."""
    return [
        ScoredVideo("news/2024-01-01 evening.mp4", duration_s=95.0, faceless_windows=frozenset({3, 4}),
                    tracks=[(1, 0.0, 31.5, "Happy"), (2, 12.0, 95.0, "Neutral"), (3, 50.0, 80.0, "Sad")]),
        ScoredVideo("archive/long_interview.mp4", duration_s=7200.0,
                    faceless_windows=frozenset(range(300, 330)) | {700},
                    tracks=[(1, 0.0, 2990.0, "Neutral"), (2, 40.0, 1500.0, "Happy"), (4, 3310.0, 7000.0, "Angry"),
                            (5, 3400.0, 3460.0, "Surprise"), (7, 6000.0, 7190.0, "Neutral")]),
        ScoredVideo("misc/no_faces.avi", status="faceless", duration_s=25.0, faceless_windows=frozenset({0, 1, 2})),
        ScoredVideo("broken/<script>alert(1)</script>.mp4", status="error",
                    error="cannot open <b>file</b>: moov atom not found"),
        ScoredVideo("broken/gone.mp4", status="failed_permanently", error="decoder timed out after 60 s"),
    ]


def write_scores_output(root: Path, videos: list[ScoredVideo], *, windows: bool = True, tracks: bool = True,
                        manifest: bool = True) -> Path:
    """A jobs.score output folder holding ``videos`` as the latest scores of one run."""
    schema = scores_schema(CLASSES)
    now = pd.Timestamp("2026-03-01T02:00:00Z")
    rows, window_rows, track_rows = [], [], []
    for n, video in enumerate(videos):
        usable = video.status == "ok"
        whole = margins(video.duration_s / 2, n)
        label = CLASSES[int(np.argmax(whole))] if usable else None
        fps_frames = int(video.duration_s * 25)
        rows.append({"key": video.key, "path": f"/archive/{video.key}", "clip_id": video.key, "size_bytes": 1000 + n,
                     "mtime_ns": 10**18 + n, "status": video.status, "error": video.error,
                     "attempts": 3 if video.status == "failed_permanently" else (1 if video.status == "error" else 0),
                     "has_face": usable, "predicted_label": label,
                     **{score_column(c): (whole[i] if usable else None) for i, c in enumerate(CLASSES)},
                     "n_frames": fps_frames or None, "n_face_frames": fps_frames if usable else 0, "n_faces": None,
                     "scored_at": now, "model_sha256": "cd" * 32, "featurizer": "enet_b0_8_best_afew",
                     "run_id": RUN_ID})
        for start, end, has_face in video.windows():
            period = max(video.duration_s / 3, 60.0)
            scores = margins((start + end) / 2, n, period) if has_face else [None] * len(CLASSES)
            window_rows.append({"key": video.key, "start_s": start, "end_s": end, "n_frames": int((end - start) * 25),
                                "n_face_frames": int((end - start) * 25) if has_face else 0, "has_face": has_face,
                                "predicted_label": CLASSES[int(np.argmax(scores))] if has_face else None,
                                **{score_column(c): scores[i] for i, c in enumerate(CLASSES)},
                                "error": None, "scored_at": now, "run_id": RUN_ID})
        for track_id, start, end, track_label in video.tracks:
            track_rows.append({"key": video.key, "track_id": track_id, "start_s": start, "end_s": end,
                               "n_frames": int((end - start) * 25), "predicted_label": track_label,
                               **{score_column(c): (1.0 if c == track_label else -1.0) for c in CLASSES},
                               "scored_at": now, "run_id": RUN_ID})
    store = ScoreStore(str(root))
    counts = {"new": 3, "rescored": 1, "reused": 0, "skipped": 0, "failed": 1,
              "permanently_failed": 1, "removed": 0}
    commit_run(store, CommitIntent(RUN_ID, scores_table(pd.DataFrame(rows), schema), [], {
        "input": "/archive", "model": "models/afew_b0", "model_sha256": "cd" * 32, "max_attempts": 3,
        "adopted_runs": [], "counts": counts, "listed": len(videos)}))
    if not manifest:
        (Path(store.run_dir(RUN_ID)) / "_manifest.json").unlink()
    if windows:
        _write(root / "windows", window_rows, window_scores_schema(CLASSES))
    if tracks:
        _write(root / "tracks", track_rows, track_scores_schema(CLASSES))
    return root


def _write(folder: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "part-000.parquet")


# --- jobs.extract --------------------------------------------------------------------------------

LAYOUT = DescriptorLayout("afew", 2)
FPS = 25.0


def _clip_row(clip_id: str, status: str = "ok", error: str | None = None, n_frames: int = 100,
              n_face_frames: int = 90, label: str | None = "Happy") -> dict[str, Any]:
    return {"clip_id": clip_id, "path": f"/data/{clip_id}.avi", "dataset": "folder", "split": None, "label": label,
            "label_index": None, "n_frames": n_frames, "n_face_frames": n_face_frames, "n_faces": n_face_frames,
            "has_face": status == "ok", "descriptor": np.zeros(LAYOUT.length, np.float32),
            "featurizer": "enet_b0_8_best_afew", "status": status, "error": error, "max_faces_in_frame": 2,
            "fps": FPS, "n_segments": 1, "n_corrupt_frames": 0}


def face_rows_of(clip_id: str, frames: range, track_id: int, favourite: int, face_index: int = 0,
                 ) -> list[dict[str, Any]]:
    """Face rows of one track: probabilities peaked on class ``favourite``."""
    rows = []
    for frame in frames:
        p = np.full(len(FACE_CLASSES), 0.3 / (len(FACE_CLASSES) - 1))
        p[favourite] = 0.7
        rows.append({"clip_id": clip_id, "frame_index": frame, "time_s": frame / FPS, "face_index": face_index,
                     "box": [10.0, 10.0, 60.0, 60.0], "probability": 0.99, "track_id": track_id,
                     **{f"p_{c.lower()}": float(v) for c, v in zip(FACE_CLASSES, p)}})
    return rows


def write_extract_outputs(root: Path) -> dict[str, Path]:
    """Clip, face, window and track tables of three clips: two with faces, one failed.

    ``duo``: 125 frames (5 s at 25 fps); track 1 (Happiness) in frames 0-36 and 50-99, track 2
    (Sadness) in frames 55-89: no face in frames 37-49 (a gap in the face rows) nor in 100-124
    (the faceless window [4, 5)). ``solo``: 75 frames, one face (Surprise) throughout.
    """
    features, frames, windows, tracks = root / "features", root / "frames", root / "windows", root / "tracks"
    for folder in (features, frames, windows, tracks):
        folder.mkdir(parents=True)
    clips = [_clip_row("duo", n_frames=125, n_face_frames=87),
             _clip_row("solo", n_frames=75, n_face_frames=75, label=None),
             _clip_row("bad", status="error", error="truncated file: 40 of 100 frames", n_face_frames=0)]
    pq.write_table(rows_to_table(clips, descriptor_table_schema(LAYOUT)), features / "part-000.parquet")
    (features / "_summary.json").write_text(json.dumps(
        {"clips": 3, "ok": 2, "faceless": 0, "error": 1, "frames": 215, "seconds": 4.2, "frames_per_second": 51.2,
         "runner": "FnApiRunner", "warnings": [], "failures": {"bad": "truncated file: 40 of 100 frames"}}))
    face_schema = frame_table_schema(FACE_CLASSES)
    faces = (face_rows_of("duo", range(0, 37), 1, 4) + face_rows_of("duo", range(50, 100), 1, 4)
             + face_rows_of("duo", range(55, 90), 2, 6, face_index=1) + face_rows_of("solo", range(0, 75), 1, 7))
    pq.write_table(rows_to_table(faces, face_schema), frames / "part-000.parquet")
    window_schema = window_table_schema(LAYOUT)
    window_rows = [{**_clip_row("duo", n_frames=25, n_face_frames=25), "start_s": s, "end_s": s + 1.0}
                   for s in (0.0, 1.0, 2.0, 3.0)]
    window_rows.append({**_clip_row("duo", status="faceless", n_frames=25, n_face_frames=0), "start_s": 4.0,
                        "end_s": 5.0})
    window_rows += [{**_clip_row("solo", n_frames=25, n_face_frames=25), "start_s": s, "end_s": s + 1.0}
                    for s in (0.0, 1.0, 2.0)]
    pq.write_table(rows_to_table(window_rows, window_schema), windows / "part-000.parquet")
    track_schema = track_table_schema(LAYOUT.feature_dim)
    track_rows = [{"clip_id": "duo", "track_id": 1, "start_s": 0.0, "end_s": 4.0, "n_frames": 87,
                   "descriptor": np.zeros(LAYOUT.length, np.float32)},
                  {"clip_id": "duo", "track_id": 2, "start_s": 2.2, "end_s": 3.6, "n_frames": 35,
                   "descriptor": np.zeros(LAYOUT.length, np.float32)},
                  {"clip_id": "solo", "track_id": 1, "start_s": 0.0, "end_s": 3.0, "n_frames": 75,
                   "descriptor": np.zeros(LAYOUT.length, np.float32)}]
    pq.write_table(rows_to_table(track_rows, track_schema), tracks / "part-000.parquet")
    return {"features": features, "frames": frames, "windows": windows, "tracks": tracks}
