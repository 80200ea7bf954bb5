import numpy as np
import pandas as pd
import pytest

from common.tables.parquet_io import read_column, rows_to_table
from common.stores.publishing import publish, staging_dir
from common.tables.schema import DescriptorLayout, descriptor_table_schema, read_provenance
from common.tables.shards import write_rows


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
    write_rows([row("a")], tmp_path, SCHEMA, "1")
    write_rows([row("b"), row("c")], tmp_path, SCHEMA, "2")
    df = pd.read_parquet(tmp_path)
    assert sorted(df.clip_id) == ["a", "b", "c"]
    assert np.stack(df.descriptor).shape == (3, 8)
    assert df.label_index.dtype == np.int64 and df.has_face.dtype == bool


def test_wrong_descriptor_length_is_refused(tmp_path):
    with pytest.raises(Exception):
        write_rows([row("a", length=7)], tmp_path, SCHEMA, "1")


def test_publish_replaces_the_output_only_when_complete(tmp_path):
    output = tmp_path / "out"
    first = staging_dir(output)
    write_rows([row("old")], first, SCHEMA, "1")
    publish(first, output, {"ok": 1})
    second = staging_dir(output)
    write_rows([row("new")], second, SCHEMA, "1")
    # Until published, readers of `output` still see the old table only.
    assert read_column(output, "clip_id") == ["old"]
    publish(second, output)
    assert read_column(output, "clip_id") == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or old folder left behind
