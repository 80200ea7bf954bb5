"""Face rows are written as a segment streams, under names that a retried segment rewrites."""

import pandas as pd

from common.tables.schema import frame_table_schema
from pipelines.graph.face_rows import face_row_writer, remove_face_rows


def test_face_rows_of_a_retried_segment_replace_the_first_attempt_and_error_clips_lose_theirs(tmp_path):
    schema = frame_table_schema(())

    def rows(clip, frames):
        return [{"clip_id": clip, "frame_index": f, "time_s": f / 25, "face_index": 0, "box": [0, 0, 9, 9],
                 "probability": 0.99} for f in frames]

    for attempt in range(2):  # a bundle retried after its first attempt wrote its shards
        writer = face_row_writer(tmp_path, schema, "a/clip", segment=1, rows_per_shard=3)
        writer.add(rows("a/clip", range(4)))
        writer.add(rows("a/clip", range(4, 5)))
        writer.close()
    other = face_row_writer(tmp_path, schema, "b", segment=0)
    other.add(rows("b", range(2)))
    other.close()
    table = pd.read_parquet(tmp_path)
    assert sorted(table.frame_index[table.clip_id == "a/clip"]) == [0, 1, 2, 3, 4]
    assert remove_face_rows(tmp_path, ["a/clip"]) == 2
    assert set(pd.read_parquet(tmp_path).clip_id) == {"b"}
