"""A clip's windows and tracks built while it streams, split or whole: the same rows, the same face ids."""

import pickle

import numpy as np
import pytest

from common.tables.schema import DescriptorLayout
from featurizers.decoding.decode import FrameChunk
from pipelines.extraction.timeline import PartTimeline, TimelineSettings, finish_timeline, timeline_from_flags

DIM = 8
FPS = 10.0
N_FRAMES = 60
SETTINGS = TimelineSettings(window_seconds=1.5, track_faces=True, min_track_seconds=0.5)


def scene(seed=0):
    """60 frames at 10 fps: A everywhere at the left; B at the right in frames 10-25, and again (a new
    track: 14 frames away) in 40-59; C, faint, only in frames 50-52 (shorter than the minimum)."""
    rng = np.random.default_rng(seed)
    people = rng.normal(size=(3, DIM))
    frames = []
    for i in range(N_FRAMES):
        faces = [(0, [10 + i, 20, 60 + i, 70])]
        if 10 <= i <= 25 or 40 <= i:
            faces.append((1, [200 - i, 20, 250 - i, 70]))
        if 50 <= i <= 52:
            faces.append((2, [100, 150, 140, 190]))
        frames.append([(who, box, people[who] + 0.05 * rng.normal(size=DIM)) for who, box in faces])
    return frames


def chunk_of(frames, start, stop, fps=FPS):
    """The chunk of native frames [start, stop) and its faces (positions, boxes, embeddings)."""
    indices = np.arange(start, stop)
    part = frames[start:stop]
    positions = np.array([p for p, faces in enumerate(part) for _ in faces], np.int64)
    flat = [f for faces in part for f in faces]
    chunk = FrameChunk(frame_indices=indices, times_s=indices / fps, frames=np.zeros((len(indices), 1, 1, 3), np.uint8),
                       native_fps=fps, n_native_frames=N_FRAMES)
    return chunk, positions, np.array([f[1] for f in flat], float).reshape(-1, 4), \
        np.array([f[2] for f in flat], np.float32).reshape(-1, DIM)


def describe(frames, layout, frame_range=None, index=0, settings=SETTINGS, fps=FPS, chunk=4):
    """Feed one part chunk by chunk as the describer does; returns its streamed rows, its face ids and its part."""
    start, stop = frame_range or (0, len(frames))
    part = PartTimeline(settings, layout, index, frame_range)
    windows, tracks, ids = [], [], []
    for first in range(start, stop, chunk):
        got = part.add_chunk(*chunk_of(frames, first, min(first + chunk, stop), fps))
        ids += got.tolist()
        w, t = part.pop_final()
        windows += w
        tracks += t
    return windows, tracks, ids, pickle.loads(pickle.dumps(part.finish()))  # as it travels between workers


@pytest.mark.parametrize("aggregation", ["afew", "vgaf"])
def test_a_split_clip_gives_the_whole_clips_window_rows_track_rows_and_face_ids(aggregation):
    layout = DescriptorLayout(aggregation, DIM)
    frames = scene()
    whole_windows, whole_tracks, whole_ids, whole_part = describe(frames, layout)
    last = finish_timeline([whole_part], SETTINGS, layout)
    whole_windows += last.window_rows
    whole_tracks += last.track_rows

    # Windows of 1.5 s: [1.5, 3) holds frames 15-29, cut at 20; [3, 4.5) frames 30-44, cut at 44.
    ranges = [(0, 20), (20, 44), (44, 60)]
    described = [describe(frames, layout, r, i) for i, r in enumerate(ranges)]
    done = finish_timeline([d[3] for d in reversed(described)], SETTINGS, layout)  # any order
    split_windows = [w for d in described for w in d[0]] + done.window_rows
    split_tracks = [t for d in described for t in d[1]] + done.track_rows
    split_ids = [int(i) for k, d in enumerate(described) for i in done.id_maps[k][np.array(d[2], np.int64)]]

    assert split_ids == whole_ids
    assert sorted(set(whole_ids)) == [0, 1, 2, 3]  # A, B, B again, C
    assert done.id_maps[2].tolist() != list(range(len(done.id_maps[2])))  # later parts were renumbered
    by_start = sorted(split_windows, key=lambda w: w["start_s"])
    assert [(w["start_s"], w["end_s"]) for w in by_start] == [(k * 1.5, min((k + 1) * 1.5, 6.0)) for k in range(4)]
    assert [(w["start_s"], w["n_frames"], w["n_face_frames"], w["n_faces"]) for w in by_start] == \
        [(w["start_s"], w["n_frames"], w["n_face_frames"], w["n_faces"]) for w in whole_windows]
    assert [w["n_frames"] for w in whole_windows] == [15, 15, 15, 15]
    for split, whole in zip(by_start, whole_windows):
        np.testing.assert_allclose(split["descriptor"], whole["descriptor"], rtol=1e-6, atol=1e-7)
    key = lambda t: t["track_id"]  # noqa: E731
    assert [(t["track_id"], t["start_s"], t["end_s"], t["n_frames"]) for t in sorted(split_tracks, key=key)] == \
        [(0, 0.0, 5.9, 60), (1, 1.0, 2.5, 16), (2, 4.0, 5.9, 20)]  # C (0.2 s) is below the 0.5 s minimum
    for split, whole in zip(sorted(split_tracks, key=key), sorted(whole_tracks, key=key)):
        assert split["track_id"] == whole["track_id"]
        np.testing.assert_allclose(split["descriptor"], whole["descriptor"], rtol=1e-6, atol=1e-7)


def test_rows_leave_as_soon_as_they_are_final_and_only_the_open_ones_are_held():
    layout = DescriptorLayout("afew", DIM)
    windows, tracks, _, part = describe(scene(), layout)
    assert [w["start_s"] for w in windows] == [0.0, 1.5, 3.0]  # the last window waits for the clip's end
    assert [t["track_id"] for t in tracks] == [1]  # B's first track ended mid-clip: final at once
    # Held: the last window; A and B's second track, still alive. C ended too and was too short for a row.
    assert len(part.windows) == 1 and [p.local_id for p in part.tracks.pieces] == [0, 2]
    assert part.tracks.closed == []


def test_a_video_without_a_frame_rate_gets_a_window_error_row_and_no_track_rows_but_its_faces_keep_ids():
    layout = DescriptorLayout("afew", DIM)
    windows, tracks, ids, part = describe(scene(), layout, fps=float("nan"))
    done = finish_timeline([part], SETTINGS, layout)
    assert windows == [] and tracks == [] and done.track_rows == []
    (row,) = done.window_rows
    assert row["start_s"] is None and row["end_s"] is None and not row["has_face"]
    assert "FrameRateError" in row["error"] and not np.any(row["descriptor"])
    assert sorted(set(ids)) == [0, 1, 2, 3]


def test_windows_alone_and_tracks_alone():
    layout = DescriptorLayout("afew", DIM)
    only_windows = TimelineSettings(window_seconds=3.0)
    w, t, ids, part = describe(scene(), layout, settings=only_windows)
    done = finish_timeline([part], only_windows, layout)
    assert [r["start_s"] for r in w + done.window_rows] == [0.0, 3.0] and t == [] and ids == []
    assert done.track_rows == [] and done.id_maps is None
    only_tracks = TimelineSettings(track_faces=True)
    w, t, ids, part = describe(scene(), layout, settings=only_tracks)
    done = finish_timeline([part], only_tracks, layout)
    assert w == [] and done.window_rows == [] and len(t + done.track_rows) == 3  # 1 s minimum: C is too short


@pytest.mark.parametrize("window, can_be_off, message", [
    (0.0, False, "--window-seconds must be a number of seconds > 0, got 0.0"),
    (-1.0, True, "--window-seconds must be a number of seconds >= 0 (0: no windows), got -1.0"),
    (float("nan"), True, "--window-seconds"),
])
def test_bad_window_lengths_are_refused_naming_the_flag(window, can_be_off, message):
    with pytest.raises(ValueError) as caught:
        timeline_from_flags(window, 1.0, windows=True, tracks=True, windows_can_be_off=can_be_off)
    assert message in str(caught.value)


def test_flags_give_the_settings_and_a_negative_minimum_track_length_is_refused():
    assert timeline_from_flags(0.0, 1.0, windows=True, tracks=True, windows_can_be_off=True).windows_on is False
    settings = timeline_from_flags(10.0, 2.0, windows=False, tracks=True)
    assert (settings.window_seconds, settings.track_faces, settings.min_track_seconds) == (0.0, True, 2.0)
    with pytest.raises(ValueError, match="--min-track-seconds must be a number of seconds >= 0, got -0.5"):
        timeline_from_flags(10.0, -0.5, windows=True, tracks=True)
