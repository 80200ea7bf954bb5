"""Timeline rows on disk: a split clip's face rows renumbered once and only once, a failed clip's rows removed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from common.tables.schema import frame_table_schema
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.settings import ExtractionConfig
from pipelines.extraction.timeline import TimelineSettings
from pipelines.graph.face_rows import face_row_writer
from pipelines.graph.timeline_rows import (
    MERGE_PART,
    TimelineOutputs,
    TimelineRows,
    remove_clip_shards,
    renumber_face_tracks,
    segment_part,
)


def _face_rows(clip, frames, track_ids):
    return [{"clip_id": clip, "frame_index": f, "time_s": f / 25, "face_index": 0, "box": [0, 0, 9, 9],
             "probability": 0.99, "track_id": t} for f, t in zip(frames, track_ids)]


def _write_segments(folder, clip, segments):
    for index, (frames, ids) in enumerate(segments):
        writer = face_row_writer(folder, frame_table_schema(()), clip, index, rows_per_shard=2)
        for row in _face_rows(clip, frames, ids):  # a shard every two rows, as a long segment streams
            writer.add([row])
        writer.close()


def test_later_segments_face_rows_get_clip_ids_and_a_retried_merge_changes_nothing(tmp_path):
    # Segment 0: track 0; segment 1: local 0 continues clip track 0, local 1 is a new person (clip 1);
    # segment 2: local 0 is clip 1, local 1 clip 0 (locals follow each segment's order of appearance).
    segments = [([0, 1, 2], [0, 0, 0]), ([3, 4, 5, 6], [0, 1, 0, 1]), ([7, 8, 9], [0, 1, 1])]
    _write_segments(tmp_path, "news/a.mp4", segments)
    _write_segments(tmp_path, "other", [([0], [0]), ([1], [0])])
    id_maps = [np.array([0]), np.array([0, 1]), np.array([1, 0])]
    assert renumber_face_tracks(tmp_path, "news/a.mp4", id_maps) == 4  # two shards each in segments 1 and 2
    assert renumber_face_tracks(tmp_path, "news/a.mp4", id_maps) == 0  # a retried merge: nothing left to do
    faces = pd.read_parquet(tmp_path)
    mine = faces[faces.clip_id == "news/a.mp4"].sort_values("frame_index")
    assert mine.track_id.tolist() == [0, 0, 0, 0, 1, 0, 1, 1, 0, 0]
    assert faces[faces.clip_id == "other"].track_id.tolist() == [0, 0]  # another clip's rows untouched
    assert remove_clip_shards(tmp_path, ["news/a.mp4"]) == 6 and set(pd.read_parquet(tmp_path).clip_id) == {"other"}


def test_window_and_track_rows_carry_the_clips_columns_and_are_named_by_clip_and_part(tmp_path):
    config = ExtractionConfig(dataset="afew", featurizer="effnet_lite0_imagenet",
                              timeline=TimelineSettings(window_seconds=2.0, track_faces=True))
    outputs = TimelineOutputs(str(tmp_path / "w"), str(tmp_path / "t"), TimelineRows(config, {"project": "x"}))
    clip = ClipRef("000001001", "/data/Train_AFEW/Happy/000001001.avi", "afew", "train", "Happy", 3)
    zero = np.zeros(config.layout.length, np.float32)
    window = {"start_s": 0.0, "end_s": 2.0, "n_frames": 50, "n_face_frames": 0, "n_faces": 0, "max_faces_in_frame": 0,
              "has_face": False, "descriptor": zero, "error": None}
    track = {"track_id": 4, "start_s": 0.5, "end_s": 1.5, "n_frames": 26, "descriptor": zero}
    for part in (segment_part(0), MERGE_PART):
        writer = outputs.open(clip, part, 2)
        writer.windows([window])
        writer.tracks([track])
        writer.close()
    windows, tracks = pd.read_parquet(tmp_path / "w"), pd.read_parquet(tmp_path / "t")
    assert len(windows) == 2 and set(windows.status) == {"faceless"} and set(windows.label) == {"Happy"}
    assert windows.n_segments.tolist() == [2, 2] and windows.n_corrupt_frames.isna().all()
    assert tracks[["clip_id", "track_id", "n_frames"]].values.tolist() == [["000001001", 4, 26]] * 2
    names = sorted(p.name for p in (tmp_path / "w").iterdir())
    assert names[0].endswith("-m-0000.parquet") and names[1].endswith("-s00000-0000.parquet")
    assert remove_clip_shards(str(tmp_path / "w"), ["000001001"]) == 2
