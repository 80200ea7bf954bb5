"""Segments of long clips: planning the frame ranges and merging the parts, without any video."""

import numpy as np
import pytest

from common.tables.schema import DescriptorLayout
from featurizers.decoding.decode import sampled_indices
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.segments import (
    SegmentResult,
    SegmentTask,
    merge_segments,
    plan_segments,
    planning_shard_count,
    segment_ranges,
    tasks_of_shard,
)
from pipelines.extraction.statistics import ClipAccumulator

CLIP = ClipRef("long", "/videos/long.mp4", "folder")


def test_ranges_hold_the_same_number_of_decoded_frames_whatever_the_step():
    assert segment_ranges(10, 1, 4) == [(0, 4), (4, 8), (8, 10)]
    assert segment_ranges(25, 3, 4) == [(0, 12), (12, 24), (24, 25)]
    assert [len(sampled_indices(25, 3, r)) for r in segment_ranges(25, 3, 4)] == [4, 4, 1]


def test_segments_are_whole_decoding_chunks():
    assert segment_ranges(20, 1, 5, chunk_frames=4) == [(0, 8), (8, 16), (16, 20)]
    assert segment_ranges(100, 2, 32, chunk_frames=32) == [(0, 64), (64, 100)]


def test_splitting_off_or_a_clip_that_fits_gives_one_range():
    assert segment_ranges(10, 1, 0) == [(0, 10)]
    assert segment_ranges(8, 2, 4) == [(0, 8)]
    assert plan_segments(CLIP, [(0, 8)]) == [SegmentTask(CLIP)]
    for bad in ((10, 0, 4), (10, 1, 4, 0)):
        with pytest.raises(ValueError):
            segment_ranges(*bad)


@pytest.mark.parametrize("n_frames, step, per_segment", [(100, 1, 7), (100, 3, 5), (31, 4, 2), (7, 1, 7)])
def test_consecutive_ranges_sample_exactly_the_frames_of_the_whole_clip(n_frames, step, per_segment):
    parts = [sampled_indices(n_frames, step, r) for r in segment_ranges(n_frames, step, per_segment)]
    assert np.array_equal(np.concatenate(parts), sampled_indices(n_frames, step))
    assert np.array_equal(sampled_indices(n_frames, step), np.arange(0, n_frames, step))


def test_tasks_name_their_segment_and_frames_for_messages():
    tasks = plan_segments(CLIP, segment_ranges(10, 1, 4))
    assert [(t.index, t.count, t.frame_range) for t in tasks] == [(0, 3, (0, 4)), (1, 3, (4, 8)), (2, 3, (8, 10))]
    assert tasks[1].describe() == "segment 2 of 3 (frames 4-7)"
    assert SegmentTask(CLIP).describe() == "the whole clip"


def test_the_driver_estimates_planning_shards_from_the_file_size():
    # 500 bytes a frame, 1024 native frames a segment: 512,000 bytes a segment.
    assert planning_shard_count(10 * 512_000 + 1, 1024, 500, 64) == 10
    assert planning_shard_count(2 * 512_000 - 1, 1024, 500, 64) == 1  # under two segments: one element
    assert planning_shard_count(10**12, 1024, 500, 64) == 64
    assert planning_shard_count(None, 1024, 500, 64) == 1  # size unknown (a bucket)
    assert planning_shard_count(10**9, 0, 500, 64) == 1  # splitting off


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_planning_shards_emit_each_segment_exactly_once(shards):
    tasks = plan_segments(CLIP, segment_ranges(100, 1, 7))
    emitted = [t for shard in range(shards) for t in tasks_of_shard(tasks, shard, shards)]
    assert sorted(emitted, key=lambda t: t.index) == tasks
    whole = [SegmentTask(CLIP)]
    assert [tasks_of_shard(whole, shard, shards) for shard in range(shards)] == [whole] + [[]] * (shards - 1)
    with pytest.raises(ValueError):
        tasks_of_shard(tasks, shards, shards)


def _part(layout, index, count, rows, frame_ids, error=None):
    accumulator = ClipAccumulator(layout)
    accumulator.add_frames(len(set(frame_ids)) + 1)
    accumulator.add_faces(np.asarray(rows, np.float64), np.asarray(frame_ids))
    return SegmentResult(CLIP, index, count, accumulator, error, 25.0, 1.0)


@pytest.mark.parametrize("aggregation", ["afew", "vgaf"])
def test_merged_segments_give_the_descriptor_of_the_whole_clip(aggregation):
    rng = np.random.default_rng(0)
    layout = DescriptorLayout(aggregation, 3)
    features = rng.normal(size=(12, 3))
    frames = np.repeat(np.arange(6), 2) if aggregation == "vgaf" else np.arange(12)
    whole = ClipAccumulator(layout)
    whole.add_faces(features, frames)
    cut = [(0, 5), (5, 12)] if aggregation == "afew" else [(0, 4), (4, 12)]  # vgaf: cut between frames
    parts = [_part(layout, i, 2, features[a:b], frames[a:b]) for i, (a, b) in enumerate(cut)]
    merged = merge_segments(reversed(parts), layout)  # arrival order does not matter
    assert merged.error is None and merged.n_segments == 2 and merged.native_fps == 25.0
    assert merged.accumulator.n_faces == 12 and merged.accumulator.n_face_frames == whole.n_face_frames
    assert np.allclose(merged.accumulator.descriptor(), whole.descriptor(), atol=1e-6)


def test_a_failed_or_missing_segment_makes_the_clip_an_error_and_a_repeat_counts_once():
    layout = DescriptorLayout("afew", 2)
    ok0, ok1 = _part(layout, 0, 3, [[1, 2]], [0]), _part(layout, 1, 3, [[3, 4]], [5])
    bad = _part(layout, 2, 3, [[5, 6]], [9], error="segment 3 of 3 (frames 8-11): VideoDecodeError: boom")
    assert merge_segments([ok0, ok1, bad], layout).error.startswith("segment 3 of 3 (frames 8-11)")
    assert merge_segments([ok0, ok1], layout).error == "segments [3] of 3 came back without a result"
    repeated = merge_segments([ok0, ok1, ok1, _part(layout, 2, 3, [[5, 6]], [9])], layout)
    assert repeated.error is None and repeated.accumulator.n_faces == 3


def test_the_corrupt_frame_limit_applies_to_the_split_clips_total_as_unsplit():
    layout = DescriptorLayout("afew", 2)

    def segment(index, decoded, corrupt):
        part = _part(layout, index, 2, [[1, 2]], [0])  # 2 frames decoded
        part.accumulator.add_frames(decoded - 2)
        part.n_corrupt_frames = corrupt
        return part

    # 3 of 8 corrupt in one segment (over 10 % there) but 3 of 40 in the clip: ok, as unsplit
    within = merge_segments([segment(0, 5, 3), segment(1, 32, 0)], layout)
    assert within.error is None and within.n_corrupt_frames == 3
    over = merge_segments([segment(0, 14, 2), segment(1, 14, 2)], layout)  # 4 of 32: each and all over
    assert over.error == ("VideoDecodeError: /videos/long.mp4: 4 of the 32 sampled frames of the whole clip are "
                          "corrupt or missing (more than 10%)")


def test_each_task_of_a_planned_clip_carries_its_window_of_the_one_index():
    from featurizers.decoding.frame_index import index_of_packets

    index = index_of_packets([(t, t, t % 10 == 0) for t in range(100)], 25.0)
    tasks = plan_segments(CLIP, segment_ranges(100, 1, 32, 8), index)
    assert [(t.frames.first, t.frames.stop) for t in tasks] == [(0, 32), (30, 64), (60, 96), (90, 100)]
    assert plan_segments(CLIP, [(0, 100)], index)[0].frames is index
