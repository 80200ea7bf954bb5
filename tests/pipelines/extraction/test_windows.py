import pickle

import numpy as np
import pytest

from common.errors import EmotiwError, FrameRateError
from common.tables.schema import DescriptorLayout
from pipelines.extraction.statistics import ClipAccumulator
from pipelines.extraction.windows import (
    WindowedAccumulator,
    check_window_seconds,
    clip_end_seconds,
    merge_windows,
    window_index,
    window_indices,
)


def test_window_of_a_frame_by_hand():
    # 25 fps, 10 s windows: frame 249 is at 9.96 s (window 0), frame 250 at exactly 10 s (window 1).
    assert window_indices(np.array([0, 249, 250, 499, 500]), 25.0, 10.0).tolist() == [0, 0, 1, 1, 2]
    # NTSC 29.97 fps: frame 299 is at 9.977 s, frame 300 at 10.010 s.
    assert window_indices(np.array([299, 300]), 30000 / 1001, 10.0).tolist() == [0, 1]
    # 2 s windows at 30 fps: frame 59 at 1.967 s, frame 60 at exactly 2 s.
    assert [window_index(f, 30.0, 2.0) for f in (59, 60, 119, 120)] == [0, 1, 1, 2]


def test_a_frame_exactly_on_an_edge_starts_the_next_window_despite_float_rounding():
    # 3 / 10 fps = 0.3 s and 0.3 / 0.1 = 2.9999999999999996 in floating point; by hand it is window 3.
    assert window_index(3, 10.0, 0.1) == 3
    assert window_indices(np.arange(10), 10.0, 0.1).tolist() == list(range(10))


@pytest.mark.parametrize("fps", [None, 0, 0.0, -25.0, float("nan"), float("inf"), "25"])
def test_a_missing_or_invalid_frame_rate_is_a_typed_error_naming_the_video(fps):
    with pytest.raises(FrameRateError, match="clip.mp4 states no usable frame rate"):
        WindowedAccumulator(DescriptorLayout("afew", 2), 10.0, fps, where="clip.mp4")
    with pytest.raises(FrameRateError) as caught:
        window_indices(np.array([0, 1]), fps, 10.0)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, EmotiwError)


@pytest.mark.parametrize("seconds", [0, -1.0, float("nan"), float("inf")])
def test_window_length_must_be_positive_and_finite(seconds):
    with pytest.raises(ValueError, match="window length"):
        check_window_seconds(seconds)


def test_window_rows_by_hand_with_the_last_window_clipped_to_the_clip_end():
    # 2 fps, 1.5 s windows, 7 frames at 0, 0.5, ..., 3.0 s; the clip ends at 7 / 2 = 3.5 s.
    # Window 0 [0, 1.5): frames 0-2, a face on frame 1 (value 2).
    # Window 1 [1.5, 3): frames 3-5, faces on frames 4 (4) and 5 (6): mean 5, std 1, min 4, max 6.
    # Window 2 [3, 4.5) clipped to [3, 3.5): frame 6, no face.
    acc = WindowedAccumulator(DescriptorLayout("afew", 1), 1.5, 2.0)
    acc.add_frames(np.arange(7))
    acc.add_faces(np.array([[2.0], [4.0], [6.0]]), np.array([1, 4, 5]))
    rows = [w.row(clip_end_seconds(7, 2.0)) for w in acc.windows()]
    assert [(r["start_s"], r["end_s"], r["n_frames"], r["n_face_frames"], r["has_face"]) for r in rows] == [
        (0.0, 1.5, 3, 1, True), (1.5, 3.0, 3, 2, True), (3.0, 3.5, 1, 0, False)]
    assert rows[0]["descriptor"].tolist() == [2, 0, 2, 2]
    assert rows[1]["descriptor"].tolist() == pytest.approx([5, 1, 4, 6])
    assert rows[2]["descriptor"].tolist() == [0, 0, 0, 0]


def test_a_clip_end_before_the_window_start_is_refused():
    acc = WindowedAccumulator(DescriptorLayout("afew", 1), 1.0, 10.0)
    acc.add_frames(np.array([25]))
    with pytest.raises(ValueError, match="clip end or the frame rate is wrong"):
        acc.windows()[0].row(clip_end_s=1.5)


def synthetic_clip(aggregation, n_frames=300, dim=5, seed=0):
    """Sampled frames (every 2nd native frame) with 0-3 faces each (1 for AFEW), some frames faceless."""
    rng = np.random.default_rng(seed)
    frames = np.arange(0, 2 * n_frames, 2)
    per_frame = rng.integers(0, 4 if aggregation == "vgaf" else 2, size=n_frames)
    frame_ids = np.repeat(frames, per_frame)
    features = rng.normal(size=(len(frame_ids), dim)).astype(np.float32)
    return frames, frame_ids, features


def feed_in_chunks(frames, frame_ids, features, accumulators, chunk=32, popped=None):
    """Feed chunk by chunk, as ClipExtractor.describe does; closed windows are popped as the clip streams."""
    for start in range(0, len(frames), chunk):
        part = frames[start:start + chunk]
        mask = np.isin(frame_ids, part)
        for acc in accumulators:
            acc.add_frames(part if isinstance(acc, WindowedAccumulator) else len(part))
            acc.add_faces(features[mask], frame_ids[mask])
            if popped is not None and isinstance(acc, WindowedAccumulator):
                popped.extend(acc.pop_closed())


@pytest.mark.parametrize("aggregation", ["afew", "vgaf"])
def test_the_clip_equals_the_merge_of_its_windows(aggregation):
    layout = DescriptorLayout(aggregation, 5)
    frames, frame_ids, features = synthetic_clip(aggregation)
    clip = ClipAccumulator(layout)
    windowed = WindowedAccumulator(layout, window_s=1.3, fps=25.0)
    popped = []
    feed_in_chunks(frames, frame_ids, features, [clip, windowed], popped=popped)
    assert len(windowed) == 1  # only the current window stays held while the clip streams
    windows = popped + windowed.windows()
    assert [w.index for w in windows] == list(range(len(windows))) and len(windows) == 19  # 600 / 25 / 1.3
    merged = merge_windows(windows, layout)
    assert (merged.n_frames, merged.n_face_frames, merged.n_faces, merged.max_faces_in_frame) == \
        (clip.n_frames, clip.n_face_frames, clip.n_faces, clip.max_faces_in_frame)
    np.testing.assert_allclose(merged.descriptor(), clip.descriptor(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("aggregation", ["afew", "vgaf"])
def test_each_window_is_the_clip_descriptor_of_its_own_frames(aggregation):
    layout = DescriptorLayout(aggregation, 5)
    frames, frame_ids, features = synthetic_clip(aggregation, seed=1)
    windowed = WindowedAccumulator(layout, window_s=2.0, fps=25.0)
    feed_in_chunks(frames, frame_ids, features, [windowed])
    for window in windowed.windows():
        inside = (frames / 25.0 >= window.start_s) & (frames / 25.0 < window.end_s)
        alone = ClipAccumulator(layout)
        alone.add_frames(int(inside.sum()))
        face_inside = np.isin(frame_ids, frames[inside])
        alone.add_faces(features[face_inside], frame_ids[face_inside])
        assert (window.accumulator.n_frames, window.accumulator.n_faces) == (alone.n_frames, alone.n_faces)
        np.testing.assert_allclose(window.accumulator.descriptor(), alone.descriptor(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("aggregation", ["afew", "vgaf"])
def test_a_window_spanning_segment_boundaries_merges_exactly(aggregation):
    layout = DescriptorLayout(aggregation, 5)
    frames, frame_ids, features = synthetic_clip(aggregation, seed=2)
    whole = WindowedAccumulator(layout, window_s=1.0, fps=25.0)
    feed_in_chunks(frames, frame_ids, features, [whole])
    # Native frame ranges cut mid-window: 130 is at 5.2 s (window 5), 410 at 16.4 s (window 16).
    ranges = [(0, 130), (130, 410), (410, 600)]
    parts, popped = [], []
    for start, stop in ranges:
        part = WindowedAccumulator(layout, window_s=1.0, fps=25.0, frame_range=(start, stop))
        inside = (frames >= start) & (frames < stop)
        face_inside = (frame_ids >= start) & (frame_ids < stop)
        feed_in_chunks(frames[inside], frame_ids[face_inside], features[face_inside], [part], chunk=16,
                       popped=popped)
        parts.append(pickle.loads(pickle.dumps(part)))  # as Beam ships a segment's result
    assert 5 in {w.index for w in parts[0].windows()} and 5 in {w.index for w in parts[1].windows()}
    assert 5 not in {w.index for w in popped}  # the shared window is never handed out half-full
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    by_index = {w.index: w for w in popped + merged.windows()}
    expected = whole.windows()
    assert sorted(by_index) == [w.index for w in expected]
    for window in expected:
        got = by_index[window.index].accumulator
        assert (got.n_frames, got.n_face_frames, got.n_faces) == \
            (window.accumulator.n_frames, window.accumulator.n_face_frames, window.accumulator.n_faces)
        np.testing.assert_allclose(got.descriptor(), window.accumulator.descriptor(), rtol=1e-6, atol=1e-7)


def test_a_segments_held_windows_stay_small_when_pickled():
    layout = DescriptorLayout("afew", 1280)
    part = WindowedAccumulator(layout, window_s=10.0, fps=25.0, frame_range=(1000, 3048))
    rng = np.random.default_rng(0)
    for start in range(1000, 3048, 32):
        frames = np.arange(start, start + 32)
        part.add_frames(frames)
        part.add_faces(rng.normal(size=(32, 1280)).astype(np.float32), frames)
        part.pop_closed()
    assert [w.index for w in part.windows()] == [4, 12]  # the first (shared) and the current window
    assert len(pickle.dumps(part)) < 2 * 4 * 1280 * 8 + 4096  # two windows' float64 statistics


def test_frames_after_their_window_was_handed_out_are_refused():
    acc = WindowedAccumulator(DescriptorLayout("afew", 1), 1.0, 10.0)
    acc.add_frames(np.arange(0, 25))
    assert [w.index for w in acc.pop_closed()] == [0, 1]
    with pytest.raises(ValueError, match="time order"):
        acc.add_frames(np.array([5]))


def test_windows_of_another_rate_or_length_do_not_merge():
    layout = DescriptorLayout("afew", 1)
    with pytest.raises(ValueError, match="cannot merge windows"):
        WindowedAccumulator(layout, 1.0, 25.0).merge(WindowedAccumulator(layout, 1.0, 30.0))
    with pytest.raises(ValueError, match="cannot merge windows"):
        WindowedAccumulator(layout, 1.0, 25.0).merge(WindowedAccumulator(layout, 2.0, 25.0))
