import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from common.parquet_io import deduplicate_shards, publish, read_column, rows_to_table, staging_dir, write_shard
from common.schema import DescriptorLayout, descriptor_table_schema, read_provenance


def row(clip_id: str, status: str = "ok", length: int = 8) -> dict:
    return {"clip_id": clip_id, "path": f"/v/{clip_id}.avi", "dataset": "afew", "split": "val", "label": "Happy",
            "label_index": 3, "n_frames": 10, "n_face_frames": 9, "n_faces": 9, "has_face": status == "ok",
            "descriptor": np.arange(length, dtype=np.float32), "featurizer": "f", "status": status, "error": None,
            "max_faces_in_frame": 1, "fps": 25.0, "n_segments": 1, "n_corrupt_frames": 0}


LAYOUT = DescriptorLayout("afew", 2)
SCHEMA = descriptor_table_schema(LAYOUT, {"featurizer": "f", "layout": LAYOUT.to_dict()})


def test_table_has_the_documented_columns_and_a_fixed_length_descriptor():
    table = rows_to_table([row("a"), row("b", "faceless")], SCHEMA)
    assert table.column_names[:14] == ["clip_id", "path", "dataset", "split", "label", "label_index", "n_frames",
                                       "n_face_frames", "n_faces", "has_face", "descriptor", "featurizer", "status", "error"]
    assert table.schema.field("descriptor").type.list_size == 8
    assert read_provenance(table.schema)["layout"]["blocks"]["std"] == [2, 4]


def test_shards_read_back_with_plain_pandas(tmp_path):
    write_shard([row("a")], tmp_path, SCHEMA)
    write_shard([row("b"), row("c")], tmp_path, SCHEMA)
    df = pd.read_parquet(tmp_path)
    assert sorted(df.clip_id) == ["a", "b", "c"]
    assert np.stack(df.descriptor).shape == (3, 8)
    assert df.label_index.dtype == np.int64 and df.has_face.dtype == bool


def test_wrong_descriptor_length_is_refused(tmp_path):
    with pytest.raises(Exception):
        write_shard([row("a", length=7)], tmp_path, SCHEMA)


def test_duplicates_from_retried_bundles_are_dropped(tmp_path):
    write_shard([row("a"), row("b")], tmp_path, SCHEMA)
    write_shard([row("b")], tmp_path, SCHEMA)
    assert deduplicate_shards(tmp_path, SCHEMA) == 1
    assert sorted(read_column(tmp_path, "clip_id")) == ["a", "b"]
    assert read_provenance(pq.read_schema(next(tmp_path.glob("part-*.parquet"))))["featurizer"] == "f"


def test_publish_replaces_the_output_only_when_complete(tmp_path):
    output = tmp_path / "out"
    first = staging_dir(output)
    write_shard([row("old")], first, SCHEMA)
    publish(first, output, {"ok": 1})
    second = staging_dir(output)
    write_shard([row("new")], second, SCHEMA)
    # Until published, readers of `output` still see the old table only.
    assert read_column(output, "clip_id") == ["old"]
    publish(second, output)
    assert read_column(output, "clip_id") == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or old folder left behind


def test_face_rows_of_a_retried_segment_replace_the_first_attempt_and_error_clips_lose_theirs(tmp_path):
    import pandas as pd

    from common.schema import frame_table_schema
    from pipelines.graph.face_rows import FaceRowWriter, remove_face_rows

    schema = frame_table_schema(())

    def rows(clip, frames):
        return [{"clip_id": clip, "frame_index": f, "time_s": f / 25, "face_index": 0, "box": [0, 0, 9, 9],
                 "probability": 0.99} for f in frames]

    for attempt in range(2):  # a bundle retried after its first attempt wrote its shards
        writer = FaceRowWriter(tmp_path, schema, "a/clip", segment=1, rows_per_shard=3)
        writer.add(rows("a/clip", range(4)))
        writer.add(rows("a/clip", range(4, 5)))
        writer.flush()
    other = FaceRowWriter(tmp_path, schema, "b", segment=0)
    other.add(rows("b", range(2)))
    other.flush()
    table = pd.read_parquet(tmp_path)
    assert sorted(table.frame_index[table.clip_id == "a/clip"]) == [0, 1, 2, 3, 4]
    assert remove_face_rows(tmp_path, ["a/clip"]) == 2
    assert set(pd.read_parquet(tmp_path).clip_id) == {"b"}
