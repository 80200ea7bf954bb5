import numpy as np
import pytest

from common.tables.schema import DescriptorLayout
from pipelines.extraction.statistics import ClipAccumulator, RunningStats, frame_statistics, group_by_frame


def test_afew_descriptor_is_mean_std_min_max_over_face_frames():
    faces = np.array([[1.0, 10.0], [3.0, 20.0], [8.0, 30.0]])
    acc = ClipAccumulator(DescriptorLayout("afew", 2))
    acc.add_frames(5)
    acc.add_faces(faces[:2], np.array([0, 1]))
    acc.add_faces(faces[2:], np.array([4]))
    # mean (4, 20); population std: sqrt(((1-4)^2 + (3-4)^2 + (8-4)^2) / 3) = sqrt(26/3)
    expected = [4, 20, np.sqrt(26 / 3), np.sqrt(200 / 3), 1, 10, 8, 30]
    assert acc.descriptor() == pytest.approx(expected, rel=1e-6)
    assert (acc.n_frames, acc.n_face_frames, acc.n_faces, acc.max_faces_in_frame) == (5, 3, 3, 1)


def test_vgaf_descriptor_by_hand_with_a_single_face_frame_and_empty_frames():
    # Frame 0: faces (0, 2) and (2, 6) -> mean (1, 4), std (1, 2).
    # Frame 3: one face (4, 1) -> mean (4, 1), std (0, 0).  Frames 1, 2, 4 have no face.
    features = np.array([[0.0, 2.0], [2.0, 6.0], [4.0, 1.0]])
    acc = ClipAccumulator(DescriptorLayout("vgaf", 2))
    acc.add_frames(5)
    acc.add_faces(features, np.array([0, 0, 3]))
    # Per-frame vectors f0 = (1, 4, 1, 2), f3 = (4, 1, 0, 0).
    # mean_t f = (2.5, 2.5, 0.5, 1); std_t f = (1.5, 1.5, 0.5, 1).
    layout_order = [2.5, 2.5, 0.5, 1.0, 1.5, 1.5, 0.5, 1.0]
    assert acc.descriptor() == pytest.approx(layout_order)
    assert (acc.n_face_frames, acc.n_faces, acc.max_faces_in_frame) == (2, 3, 2)


def test_vgaf_layout_names_match_the_computed_blocks():
    layout = DescriptorLayout("vgaf", 2)
    assert list(layout.slices()) == ["mean_of_frame_mean", "mean_of_frame_std", "std_of_frame_mean", "std_of_frame_std"]
    assert layout.length == 8


def test_single_face_frame_has_zero_std():
    assert frame_statistics(np.array([[3.0, -1.0]])) == pytest.approx([3, -1, 0, 0])


def test_group_by_frame_keeps_order_of_first_appearance():
    out = group_by_frame(np.array([[1.0], [5.0], [3.0]]), np.array([7, 2, 7]))
    assert out.tolist() == [[2.0, 1.0], [5.0, 0.0]]


def test_faceless_clip_gives_zeros_of_full_length():
    acc = ClipAccumulator(DescriptorLayout("afew", 3))
    acc.add_frames(10)
    acc.add_faces(np.zeros((0, 3)), np.zeros(0))
    assert not acc.has_face
    assert acc.descriptor().tolist() == [0.0] * 12


@pytest.mark.parametrize("aggregation", ["afew", "vgaf"])
def test_merged_parts_equal_the_whole_clip_and_numpy(aggregation):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 6)).astype(np.float32)
    frames = np.sort(rng.integers(0, 15, 40)) if aggregation == "vgaf" else np.arange(40)
    layout = DescriptorLayout(aggregation, 6)
    whole = ClipAccumulator(layout)
    whole.add_faces(features, frames)
    cut = int(np.searchsorted(frames, 7))  # a split between frames, as chunks are
    first, second = ClipAccumulator(layout), ClipAccumulator(layout)
    first.add_faces(features[:cut], frames[:cut])
    second.add_faces(features[cut:], frames[cut:])
    assert first.merge(second).descriptor() == pytest.approx(whole.descriptor(), abs=1e-6)
    x = features.astype(np.float64)
    if aggregation == "afew":
        expected = np.concatenate([x.mean(0), x.std(0), x.min(0), x.max(0)])
    else:
        f = np.stack([np.concatenate([x[frames == t].mean(0), x[frames == t].std(0)]) for t in np.unique(frames)])
        expected = np.concatenate([f.mean(0), f.std(0)])
    assert whole.descriptor() == pytest.approx(expected, abs=1e-6)


def test_std_never_nan_for_constant_columns():
    stats = RunningStats(2).add(np.full((1000, 2), 0.1))
    assert np.all(stats.std() >= 0) and stats.std() == pytest.approx([0, 0], abs=1e-6)


def test_merge_rejects_other_width():
    with pytest.raises(ValueError, match="width"):
        RunningStats(2).merge(RunningStats(3))


def test_a_tracks_afew_statistics_give_the_vgaf_descriptor_of_one_face_per_frame():
    from pipelines.extraction.statistics import one_face_per_frame_descriptor

    rng = np.random.default_rng(3)
    faces, frames = rng.normal(size=(9, 5)), np.arange(9) * 3  # one face in each of 9 frames
    afew, vgaf = ClipAccumulator(DescriptorLayout("afew", 5)), ClipAccumulator(DescriptorLayout("vgaf", 5))
    afew.add_faces(faces, frames)
    vgaf.add_faces(faces, frames)
    converted = one_face_per_frame_descriptor(afew.descriptor(), vgaf.layout)
    np.testing.assert_array_equal(converted, vgaf.descriptor())
    np.testing.assert_array_equal(converted[5:10], 0.0)  # mean over frames of a lone face's std
    np.testing.assert_array_equal(one_face_per_frame_descriptor(afew.descriptor(), afew.layout), afew.descriptor())
    with pytest.raises(ValueError, match="4 x 5"):
        one_face_per_frame_descriptor(np.zeros(12), vgaf.layout)
