"""The maths of detection on key frames, alone: which frames, where to look."""

import numpy as np
import pytest

from featurizers.detection.detection_mode import EXACT, DetectionMode, describe_mode, mode_from_record
from featurizers.detection.key_frames import box_iou, key_frame_mask, search_boxes
from featurizers.detection.mtcnn_cascade import capped_scales, pyramid_scales


def test_key_frames_fall_on_blocks_of_the_clip_whatever_the_chunks():
    positions = np.arange(12)
    whole = key_frame_mask(positions, None, 5)
    assert np.flatnonzero(whole).tolist() == [0, 5, 10]
    first, second = key_frame_mask(positions[:7], None, 5), key_frame_mask(positions[7:], 6, 5)
    assert np.concatenate([first, second]).tolist() == whole.tolist()
    # A segment starting on a block (positions 10..) starts with a key frame, as the whole clip has there.
    assert key_frame_mask(positions[10:], None, 5).tolist() == whole[10:].tolist()


def test_a_lost_key_frame_passes_its_role_to_the_next_frame_of_its_block():
    positions = np.array([3, 4, 6, 7, 11])  # position 5 and 10 were not decoded
    assert key_frame_mask(positions, None, 5).tolist() == [True, False, True, False, True]


def test_the_search_box_is_a_square_about_the_centre_grown_on_each_side():
    square = search_boxes(np.array([[10, 20, 50, 40]], np.float32), margin=0.1)  # 40 wide, 20 high
    assert square.tolist() == [[pytest.approx(6), pytest.approx(6), pytest.approx(54), pytest.approx(54)]]


def test_box_overlap_is_intersection_over_union():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    assert box_iou(boxes[:1], boxes).tolist() == [[1.0, pytest.approx(1 / 3), 0.0]]


def test_capped_pyramid_keeps_the_coarse_levels_and_replaces_the_finer_ones_by_one_at_the_cap():
    scales = pyramid_scales(1080, 1920, min_face_size=32, factor=0.709)
    capped = capped_scales(scales, 1080, 1920, max_side=640)
    assert int(1920 * capped[0] + 1) <= 640 and capped[1:] == [s for s in scales if s < capped[0]]
    assert capped_scales(scales, 1080, 1920, None) is scales
    assert capped_scales(scales, 1080, 1920, 1920) is scales  # frame no larger than the cap: exact


def test_modes_validate_their_flags_and_name_themselves_for_the_provenance():
    assert EXACT.exact and describe_mode(EXACT) == "exact"
    assert DetectionMode(5, 640).to_dict() == {"mode": "every-5+max-side-640", "detect_every": 5, "max_side": 640}
    assert mode_from_record(DetectionMode(5, 640).to_dict()) == DetectionMode(5, 640)
    assert mode_from_record(None) == EXACT  # tables made before the modes existed
    with pytest.raises(ValueError, match="--detect-every must be an integer >= 1"):
        DetectionMode(0).check(32)
    with pytest.raises(ValueError, match=r"--detect-max-side must be at least the minimum face size \(32 px"):
        DetectionMode(max_side=20).check(32)
    DetectionMode(3, 32).check(32)
