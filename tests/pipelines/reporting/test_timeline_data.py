"""The report's records built from rows and arrays: hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.reporting.timeline_data import (
    TimelinePoint,
    TrackSpan,
    VideoTimeline,
    class_columns,
    downsample,
    frame_spacing,
    label_runs,
    merge_faceless,
    pack_lanes,
    points_from_windows,
    trace_from_faces,
    tracks_from_faces,
    tracks_from_rows,
)


def test_class_columns_keep_score_names_and_capitalise_face_row_names_without_valence():
    assert class_columns(["key", "score_Angry", "score_Happy", "n_frames"], "score_") == [
        ("score_Angry", "Angry"), ("score_Happy", "Happy")]
    assert class_columns(["clip_id", "p_anger", "p_happiness", "p_valence", "p_arousal"], "p_") == [
        ("p_anger", "Anger"), ("p_happiness", "Happiness")]


def test_window_rows_become_points_in_time_order_and_faceless_windows_carry_no_score():
    rows = pd.DataFrame({
        "key": ["a", "a", "b", "a"], "start_s": [10.0, 0.0, 0.0, None], "end_s": [20.0, 10.0, 10.0, None],
        "has_face": [False, True, True, False], "predicted_label": [None, "Happy", "Sad", None],
        "score_Happy": [np.nan, 0.4, -0.2, np.nan], "score_Sad": [np.nan, -0.1, 0.3, np.nan],
        "n_frames": [250, 250, 250, 0], "n_face_frames": [0, 240, 250, 0],
        "error": [None, None, None, "the video states no frame rate"]})
    points, notes = points_from_windows(rows, ["score_Happy", "score_Sad"])
    assert [p.start_s for p in points["a"]] == [0.0, 10.0]
    assert points["a"][0] == TimelinePoint(0.0, 10.0, True, "Happy", (0.4, -0.1), 250, 240)
    assert points["a"][1].scores == (None, None) and points["a"][1].label is None and not points["a"][1].scored
    assert points["b"][0].label == "Sad"
    assert notes == {"a": ["windows: the video states no frame rate"]}


def test_track_rows_become_spans_sorted_by_start():
    rows = pd.DataFrame({"clip_id": ["c", "c"], "track_id": [7, 2], "start_s": [5.0, 1.0], "end_s": [9.0, 3.0],
                         "n_frames": [100, 50]})
    assert tracks_from_rows(rows, key_column="clip_id") == {
        "c": [TrackSpan(2, 1.0, 3.0, 50), TrackSpan(7, 5.0, 9.0, 100)]}


def test_the_trace_averages_faces_of_a_frame_and_marks_gaps_in_the_face_rows_as_faceless():
    # Frames at 0, 0.04, 0.08 and 0.2 s (spacing 0.04): no face rows for 0.12 and 0.16 s.
    times = np.array([0.0, 0.0, 0.04, 0.08, 0.2])
    probabilities = np.array([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9], [0.7, 0.3], [0.5, 0.5]])
    points = trace_from_faces(times, probabilities, ["Happy", "Sad"])
    assert frame_spacing(times) == pytest.approx(0.04)
    assert [(p.start_s, p.has_face) for p in points] == [
        (0.0, True), (0.04, True), (0.08, True), (pytest.approx(0.12), False), (0.2, True)]
    assert points[0].scores == pytest.approx((0.6, 0.4)) and points[0].label == "Happy"
    assert points[1].label == "Sad"
    assert points[3].end_s == pytest.approx(0.2) and points[3].scores == (None, None)


def test_tracks_from_face_rows_span_first_to_last_face_with_the_class_of_highest_mean_probability():
    times = np.array([0.0, 0.04, 0.08, 0.04, 0.08, 0.12])
    track_ids = np.array([1, 1, 1, 2, 2, np.nan], dtype=object)  # the last face is in no track
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.9, 0.1], [0.3, 0.7], [0.4, 0.6], [1.0, 0.0]])
    spans = tracks_from_faces(times, track_ids, probabilities, ["Happy", "Sad"], 0.04)
    assert spans == [TrackSpan(1, 0.0, pytest.approx(0.12), 3, "Happy"),
                     TrackSpan(2, 0.04, pytest.approx(0.12), 2, "Sad")]
    assert [t.label for t in tracks_from_faces(times, track_ids, None, [], 0.04)] == [None, None]


def test_downsampling_averages_groups_and_never_mixes_faceless_points_with_scored_ones():
    points = [TimelinePoint(float(k), k + 1.0, True, "Happy" if k < 3 else "Sad", (float(k),), 10, 10)
              for k in range(5)]
    points += [TimelinePoint(float(k), k + 1.0, False, None, (None,), 10, 0) for k in range(5, 7)]
    points += [TimelinePoint(7.0, 8.0, True, "Sad", (7.0,), 10, 10)]
    out = downsample(points, max_points=3)  # groups of ceil(8 / 3) = 3
    assert [(p.start_s, p.end_s, p.has_face, p.merged) for p in out] == [
        (0.0, 3.0, True, 3), (3.0, 5.0, True, 2), (5.0, 7.0, False, 2), (7.0, 8.0, True, 1)]
    assert out[0].scores == (1.0,) and out[0].label == "Happy" and out[0].n_frames == 30
    assert out[1].scores == (3.5,) and out[1].label == "Sad"
    assert out[2].n_face_frames == 0
    assert downsample(points, max_points=100) == points


def test_label_runs_join_neighbours_of_one_label_and_face_state():
    points = [TimelinePoint(0, 1, True, "A"), TimelinePoint(1, 2, True, "A"), TimelinePoint(2, 3, False),
              TimelinePoint(3, 4, False), TimelinePoint(4, 5, True, "B"), TimelinePoint(6, 7, True, "B")]
    assert [(r.start_s, r.end_s, r.label, r.has_face, r.points) for r in label_runs(points)] == [
        (0, 2, "A", True, 2), (2, 4, None, False, 2), (4, 5, "B", True, 1), (6, 7, "B", True, 1)]


def test_lanes_never_hold_overlapping_tracks_and_number_the_most_tracks_on_screen_at_once():
    tracks = [TrackSpan(1, 0, 10), TrackSpan(2, 2, 4), TrackSpan(3, 4, 6), TrackSpan(4, 5, 12), TrackSpan(5, 10, 11)]
    assert pack_lanes(tracks) == [0, 1, 1, 2, 0]
    rng = np.random.default_rng(3)
    starts = rng.uniform(0, 100, 60)
    tracks = [TrackSpan(i, float(s), float(s + rng.uniform(0.5, 20))) for i, s in enumerate(starts)]
    lanes = pack_lanes(tracks)
    for lane in set(lanes):
        mine = sorted((t.start_s, t.end_s) for t, k in zip(tracks, lanes) if k == lane)
        assert all(a[1] <= b[0] for a, b in zip(mine, mine[1:]))
    most_at_once = max(sum(t.start_s <= s < t.end_s for t in tracks) for s in (t.start_s for t in tracks))
    assert max(lanes) + 1 == most_at_once


def test_faceless_windows_of_a_window_table_are_added_to_a_trace_unless_already_marked():
    trace = [TimelinePoint(0.0, 0.04, True, "A", (1.0,)), TimelinePoint(0.04, 1.0, False, None, (None,)),
             TimelinePoint(1.0, 1.04, True, "A", (1.0,))]
    windows = [TimelinePoint(0.0, 1.0, True), TimelinePoint(0.2, 0.6, False), TimelinePoint(2.0, 3.0, False)]
    merged = merge_faceless(trace, windows)
    assert [(p.start_s, p.end_s, p.has_face) for p in merged] == [
        (0.0, 0.04, True), (0.04, 1.0, False), (1.0, 1.04, True), (2.0, 3.0, False)]


def test_a_video_joins_neighbouring_faceless_points_and_lasts_to_its_last_window_or_track():
    video = VideoTimeline("v", points=(TimelinePoint(0, 10, False), TimelinePoint(10, 20, False),
                                       TimelinePoint(20, 30, True), TimelinePoint(30, 35, False)),
                          tracks=(TrackSpan(1, 20, 38),))
    assert video.faceless_spans == [(0, 20), (30, 35)]
    assert video.duration_s == 38
    assert VideoTimeline("empty").duration_s is None
