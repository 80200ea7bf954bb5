import pickle

import numpy as np
import pytest

from common.errors import FrameRateError
from pipelines.extraction.face_tracks import FaceTracker, TrackerSettings, box_geometry, stitch_tracks, track_rows

DIM = 16
SIZE = 50.0


def identities(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, DIM))


def box_at(x, y, size=SIZE):
    return [x, y, x + size, y + size]


def face(identity_vectors, who, x, y, rng, noise=0.1, size=SIZE):
    """(identity, box, embedding) of one detected face; the embedding is the person's vector plus noise."""
    return who, box_at(x, y, size), identity_vectors[who] + noise * rng.normal(size=DIM)


def run(frames, settings=None, chunk=4, tracker=None):
    """Track a list of frames (each a list of faces) chunk by chunk; returns the tracker and each face's id."""
    tracker = tracker or FaceTracker(DIM, settings)
    ids = []
    for start in range(0, len(frames), chunk):
        part = frames[start:start + chunk]
        positions = [p for p, faces in enumerate(part) for _ in faces]
        flat = [f for faces in part for f in faces]
        got = tracker.update_chunk(np.arange(start, start + len(part)), np.array(positions, np.int64),
                                   np.array([f[1] for f in flat]).reshape(-1, 4),
                                   np.array([f[2] for f in flat]).reshape(-1, DIM))
        ids.extend(got.tolist())
    return tracker, ids


def ids_by_person(frames, ids):
    people = [f[0] for faces in frames for f in faces]
    out: dict[int, set[int]] = {}
    for who, track in zip(people, ids):
        out.setdefault(who, set()).add(track)
    return out


def test_box_geometry_by_hand():
    a = np.array([box_at(0, 0, 10)])
    b = np.array([box_at(5, 0, 10), box_at(20, 0, 10), box_at(0, 0, 10), box_at(3, 4, 30)])
    iou, shift = box_geometry(a, b)
    # overlap 5 x 10 = 50 of union 150; none; identical; the 10-box inside the 30-box (x 3-33, y 4-34):
    # overlap 7 x 6 = 42 of union 100 + 900 - 42.
    assert iou[0].tolist() == pytest.approx([1 / 3, 0.0, 1.0, 42 / 958])
    # centres 5, 20 and 0 px apart with face size 10; (5, 5) to (18, 19) is sqrt(13^2 + 14^2) px, mean size 20.
    assert shift[0].tolist() == pytest.approx([0.5, 2.0, 0.0, np.hypot(13, 14) / 20])


def crossing_scene(seed=0):
    """Two people cross: A moves right, B moves left. On frame 3 each is detected a little short of the
    other's side, so on frame 4 each box overlaps the OTHER person's last box more than its own."""
    vectors = identities(2, seed)
    rng = np.random.default_rng(seed)
    xs_a = [140, 160, 180, 195, 220, 240, 260, 280]
    xs_b = [260, 240, 220, 205, 180, 160, 140, 120]
    return [[face(vectors, 1, xb, 100, rng), face(vectors, 0, xa, 100, rng)] for xa, xb in zip(xs_a, xs_b)]


def test_two_faces_crossing_keep_their_identities():
    frames = crossing_scene()
    _, ids = run(frames)
    assert ids_by_person(frames, ids) == {1: {0}, 0: {1}}


def test_without_the_embedding_term_the_crossing_swaps():
    # The same scene tracked on box overlap alone: frame 4's boxes favour the swap, which shows the
    # embedding term is what decides above.
    frames = crossing_scene()
    _, ids = run(frames, TrackerSettings(appearance_weight=0.0, min_similarity=-1.0))
    assert ids_by_person(frames, ids) == {1: {0, 1}, 0: {0, 1}}


def test_a_face_missing_for_two_frames_keeps_its_id_and_three_frames_starts_a_new_one():
    vectors = identities(1)
    rng = np.random.default_rng(1)
    seen = [face(vectors, 0, 100 + 2 * t, 100, rng) for t in range(12)]
    two_missing = [[seen[t]] if t not in (4, 5) else [] for t in range(12)]
    _, ids = run(two_missing)
    assert set(ids) == {0}
    three_missing = [[seen[t]] if t not in (4, 5, 6) else [] for t in range(12)]
    _, ids = run(three_missing)
    assert ids == [0] * 4 + [1] * 5


def test_a_new_face_gets_the_next_id_and_a_far_jump_starts_a_new_track():
    vectors = identities(2)
    rng = np.random.default_rng(2)
    frames = [[face(vectors, 0, 100, 100, rng)] for _ in range(3)]
    frames += [[face(vectors, 0, 100, 100, rng), face(vectors, 1, 300, 100, rng)] for _ in range(3)]
    frames += [[face(vectors, 0, 100 + 5 * SIZE, 100, rng), face(vectors, 1, 300, 100, rng)]]  # A jumps 5 faces
    _, ids = run(frames)
    assert ids == [0, 0, 0, 0, 1, 0, 1, 0, 1, 2, 1]


def test_a_different_person_in_the_same_place_does_not_continue_the_track():
    vectors = identities(2)
    rng = np.random.default_rng(3)
    frames = [[face(vectors, 0, 100, 100, rng)]] * 3 + [[face(vectors, 1, 100, 100, rng)]] * 3
    _, ids = run(frames)
    assert ids == [0, 0, 0, 1, 1, 1]


def test_a_group_keeps_each_person_and_ids_follow_first_appearance():
    vectors = identities(6, seed=4)
    rng = np.random.default_rng(4)
    frames = []
    for t in range(30):
        present = range(6) if t >= 10 else range(3)  # three more people arrive at frame 10
        faces = [face(vectors, who, 60 * who + rng.normal(), 100 + rng.normal(), rng) for who in present]
        frames.append(list(reversed(faces)))  # detection order need not follow the people
    tracker, ids = run(frames, chunk=7)
    assert ids_by_person(frames, ids) == {2: {0}, 1: {1}, 0: {2}, 5: {3}, 4: {4}, 3: {5}}
    assert tracker.n_live == 6


def test_chunking_does_not_change_the_tracks_or_their_statistics():
    frames = crossing_scene(seed=5)
    one, ids_one = run(frames, chunk=1)
    many, ids_many = run(frames, chunk=5)
    assert ids_one == ids_many
    a, b = one.finish(), many.finish()
    for x, y in zip(a.pieces, b.pieces):
        np.testing.assert_allclose(x.faces.descriptor(), y.faces.descriptor(), rtol=1e-6)


def test_a_tracks_descriptor_is_mean_std_min_max_of_its_faces():
    frames = crossing_scene(seed=6)
    tracker, ids = run(frames)
    tracks = stitch_tracks([tracker.finish()]).tracks
    embeddings = np.array([f[2] for faces in frames for f in faces])
    for track in tracks:
        mine = embeddings[np.array(ids) == track.track_id]
        expected = np.concatenate([mine.mean(0), mine.std(0), mine.min(0), mine.max(0)])
        np.testing.assert_allclose(track.descriptor, expected, rtol=1e-5, atol=1e-6)
        assert (track.first_frame, track.last_frame, track.n_frames) == (0, 7, 8)


def test_track_rows_skip_short_tracks_and_need_a_frame_rate():
    vectors = identities(2)
    rng = np.random.default_rng(7)
    # Person 0 on frames 0-29 (1.16 s at 25 fps), person 1 on frames 0-19 (0.76 s).
    frames = [[face(vectors, 0, 100, 100, rng)] + ([face(vectors, 1, 300, 100, rng)] if t < 20 else [])
              for t in range(30)]
    tracker, _ = run(frames)
    tracks = stitch_tracks([tracker.finish()]).tracks
    rows = track_rows(tracks, fps=25.0)
    assert [(r["track_id"], r["start_s"], r["end_s"], r["n_frames"]) for r in rows] == [(0, 0.0, 29 / 25, 30)]
    assert len(rows[0]["descriptor"]) == 4 * DIM
    assert [r["track_id"] for r in track_rows(tracks, fps=25.0, min_duration_s=0.5)] == [0, 1]
    with pytest.raises(FrameRateError):
        track_rows(tracks, fps=0.0)


def track_split(frames, cuts, chunk=4, settings=None):
    """Track each segment [cut_i, cut_i+1) alone, ship it through pickle, stitch; returns clip ids per face."""
    bounds = [0, *cuts, len(frames)]
    parts, local_ids = [], []
    for start, stop in zip(bounds, bounds[1:]):
        tracker = FaceTracker(DIM, settings)
        ids = []
        for s in range(start, stop, chunk):
            part = frames[s:min(s + chunk, stop)]
            positions = [p for p, faces in enumerate(part) for _ in faces]
            flat = [f for faces in part for f in faces]
            ids.extend(tracker.update_chunk(np.arange(s, s + len(part)), np.array(positions, np.int64),
                                            np.array([f[1] for f in flat]).reshape(-1, 4),
                                            np.array([f[2] for f in flat]).reshape(-1, DIM)).tolist())
        parts.append(pickle.loads(pickle.dumps(tracker.finish())))
        local_ids.append(ids)
    stitched = stitch_tracks(parts, settings)
    clip_ids = [i for part, ids in enumerate(local_ids) for i in stitched.clip_ids(part, np.array(ids, np.int64))]
    return stitched, clip_ids


def test_tracks_are_stitched_across_segment_boundaries_as_if_unsplit():
    vectors = identities(3, seed=8)
    rng = np.random.default_rng(8)
    frames = [[face(vectors, 0, 100 + t, 100, rng), face(vectors, 1, 300 - t, 100, rng)]
              + ([face(vectors, 2, 500, 100, rng)] if 5 <= t < 14 else []) for t in range(20)]
    whole_tracker, whole_ids = run(frames)
    whole = stitch_tracks([whole_tracker.finish()])
    stitched, clip_ids = track_split(frames, cuts=[7, 13])
    assert clip_ids == whole_ids
    assert [(t.track_id, t.first_frame, t.last_frame, t.n_frames) for t in stitched.tracks] == \
        [(t.track_id, t.first_frame, t.last_frame, t.n_frames) for t in whole.tracks] == \
        [(0, 0, 19, 20), (1, 0, 19, 20), (2, 5, 13, 9)]
    for a, b in zip(stitched.tracks, whole.tracks):
        np.testing.assert_allclose(a.descriptor, b.descriptor, rtol=1e-5, atol=1e-6)
    assert stitched.id_maps[0].tolist() == list(range(len(stitched.id_maps[0])))  # the first part keeps its ids


def test_a_gap_across_a_boundary_counts_both_sides():
    vectors = identities(1)
    rng = np.random.default_rng(9)
    seen = [face(vectors, 0, 100, 100, rng) for _ in range(12)]
    # Missing on frames 5 and 6 with the cut at 6: one missed frame on each side, two in all: same track.
    frames = [[] if t in (5, 6) else [seen[t]] for t in range(12)]
    assert set(track_split(frames, cuts=[6])[1]) == {0}
    # Missing on frames 5, 6 and 7: three in all, over the gap of two: a new track, as unsplit.
    frames = [[] if t in (5, 6, 7) else [seen[t]] for t in range(12)]
    stitched, clip_ids = track_split(frames, cuts=[6])
    assert clip_ids == run(frames)[1] == [0] * 5 + [1] * 4
    assert [(t.track_id, t.first_frame, t.last_frame, t.n_frames) for t in stitched.tracks] == \
        [(0, 0, 4, 5), (1, 8, 11, 4)]


def random_scene(seed, n_frames=60, max_people=5, dim=DIM):
    """People on a grid (well apart), each present over a random span, walking slowly, sometimes missed
    for up to two frames; distinct embeddings. The truth: one track per person."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, max_people + 1))
    vectors = rng.normal(size=(n, dim))
    spans = [sorted(rng.integers(0, n_frames, size=2)) for _ in range(n)]
    start_xy = [(150.0 * (i % 4), 150.0 * (i // 4)) for i in rng.permutation(8)[:n]]
    frames = []
    for t in range(n_frames):
        faces = []
        for who in range(n):
            first, last = spans[who]
            if not first <= t <= last:
                continue
            if first < t < last and rng.random() < 0.1 and t % 3 != 0:  # short misses, never 3 in a row
                continue
            x, y = start_xy[who]
            faces.append(face(vectors, who, x + 0.5 * (t - first), y + 0.3 * (t - first), rng, noise=0.2))
        rng.shuffle(faces)
        frames.append(faces)
    return frames


@pytest.mark.parametrize("seed", range(15))
def test_random_scenes_give_one_track_per_person_split_or_not(seed):
    frames = random_scene(seed)
    tracker, ids = run(frames, chunk=int(np.random.default_rng(seed).integers(1, 9)))
    per_person = ids_by_person(frames, ids)
    assert all(len(tracks) == 1 for tracks in per_person.values())
    assert len(set(ids)) == len(per_person)
    first_seen = [i for n, i in enumerate(ids) if i not in ids[:n]]
    assert first_seen == list(range(len(first_seen)))  # ids in order of first appearance
    cuts = sorted(set(np.random.default_rng(seed + 100).integers(1, len(frames), size=2).tolist()))
    stitched, clip_ids = track_split(frames, cuts)
    assert clip_ids == ids
    whole = stitch_tracks([tracker.finish()])
    assert stitched.n_tracks == whole.n_tracks == len(per_person)
    assert [(t.track_id, t.first_frame, t.last_frame, t.n_frames) for t in stitched.tracks] == \
        [(t.track_id, t.first_frame, t.last_frame, t.n_frames) for t in whole.tracks]


def test_the_tracker_refuses_frames_out_of_order_and_mismatched_inputs():
    tracker = FaceTracker(DIM)
    tracker.update(5, np.zeros((0, 4)), np.zeros((0, DIM)))
    with pytest.raises(ValueError, match="in order"):
        tracker.update(5, np.zeros((0, 4)), np.zeros((0, DIM)))
    with pytest.raises(ValueError, match="width"):
        tracker.update(6, np.array([box_at(0, 0)]), np.zeros((1, DIM + 1)))


@pytest.mark.parametrize("bad", [dict(max_gap_frames=-1), dict(min_similarity=2.0), dict(appearance_momentum=1.0),
                                 dict(overlap_weight=float("nan")), dict(appearance_weight=0.0, overlap_weight=0.0)])
def test_bad_tracker_settings_are_refused(bad):
    with pytest.raises(ValueError):
        TrackerSettings(**bad)


def test_tracks_handed_out_while_streaming_are_counted_and_renumbered_clip_wide():
    vectors = identities(3, seed=10)
    rng = np.random.default_rng(10)
    # Person 0 throughout; person 1 on frames 4-6 (segment 0); person 2 on frames 13-16 (segment 1, cut
    # at 10). Both start after the gap and end before it, so no neighbour can own them.
    frames = [[face(vectors, 0, 100, 100, rng)]
              + ([face(vectors, 1, 300, 100, rng)] if 4 <= t <= 6 else [])
              + ([face(vectors, 2, 500, 100, rng)] if 13 <= t <= 16 else []) for t in range(20)]
    parts, popped = [], []
    for start, stop in ((0, 10), (10, 20)):
        tracker, _ = run(frames[start:stop], chunk=4)
        popped.append(tracker.pop_closed())  # interior tracks: no other segment can continue them
        parts.append(tracker.finish())
    assert [[t.track_id for t in p] for p in popped] == [[1], [1]]  # local ids
    stitched = stitch_tracks(parts)
    assert stitched.n_tracks == 3 and [t.track_id for t in stitched.tracks] == [0]
    assert stitched.clip_ids(0, [popped[0][0].track_id]).tolist() == [1]  # the first part keeps its ids
    assert stitched.clip_ids(1, [popped[1][0].track_id]).tolist() == [2]
