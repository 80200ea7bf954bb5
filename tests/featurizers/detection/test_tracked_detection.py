"""Detection on key frames against the full cascade, on the first frames of the smallest sample clip."""

import numpy as np
import pytest
from videos import SAMPLES

from featurizers.decoding.decode import FrameSampling, iter_frame_chunks
from featurizers.detection.detect import AFEW_DETECTOR, FaceDetector
from featurizers.detection.detection_mode import DetectionMode
from featurizers.detection.key_frames import box_iou, search_boxes
from featurizers.detection.tracked_detection import KeyFrameDetector

CLIP = SAMPLES / "afew" / "Train_AFEW" / "Happy" / "000001001.avi"  # 320x256, one face


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(AFEW_DETECTOR)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return next(iter(iter_frame_chunks(str(CLIP), FrameSampling(chunk_size=8)))).frames


@pytest.fixture(scope="module")
def exact(detector, frames):
    return detector.find_all(frames)


def test_o_net_on_the_cascades_own_boxes_finds_the_same_faces(detector, frames, exact):
    frame_index = np.concatenate([np.full(len(faces), i) for i, faces in enumerate(exact)])
    boxes = np.concatenate([faces.boxes for faces in exact])
    outside = np.array([[-200, -200, -100, -100]], np.float32)  # wholly outside its frame: no crop, no face
    checks = detector.check_boxes(frames, np.append(frame_index, 0), np.concatenate([search_boxes(boxes), outside]))
    assert len(frame_index) >= len(frames)  # faces in every frame: a real comparison
    assert checks.passed.tolist() == [True] * len(boxes) + [False]
    assert detector.check_boxes(frames, np.zeros(1), outside).passed.tolist() == [False]  # no crop at all
    want = np.concatenate([faces.boxes for faces in exact])
    assert box_iou(want, checks.boxes[:-1]).diagonal().min() > 0.8
    side = (want[:, 2] - want[:, 0])[:, None, None]
    landmarks = np.concatenate([faces.landmarks for faces in exact])
    assert (np.abs(checks.landmarks[:-1] - landmarks) < 0.05 * side).all()


def test_key_frames_get_the_full_cascade_and_the_frames_between_follow_the_face(detector, frames, exact):
    tracked = KeyFrameDetector(detector, every=4)
    found = tracked.detect(frames, np.arange(len(frames)))
    assert (tracked.n_key_frames, tracked.n_refined_frames) == (2, 6)
    for position, (want, got) in enumerate(zip(exact, found, strict=True)):
        assert len(got) == len(want) == 1
        if position % 4 == 0:  # the cascade itself, on a batch of the key frames alone
            np.testing.assert_allclose(got.boxes, want.boxes, atol=0.05)
        else:
            assert box_iou(want.boxes, got.boxes)[0, 0] > 0.8


def test_a_face_that_left_its_key_frame_crop_is_found_at_its_last_box(detector, frames):
    step = 16  # px a frame: the face (77 px wide) leaves the key frame's crop within a few frames
    pan = np.stack([np.roll(frames[0], k * step, axis=1) for k in range(8)])
    tracked = KeyFrameDetector(detector, every=8)
    found = tracked.detect(pan, np.arange(8))
    assert tracked.n_second_looks > 0  # the key frame's crop lost it
    assert tracked.n_recentred > 0  # found off a crop, looked at again centred on it
    for want, got in zip(detector.find_all(pan), found, strict=True):
        assert len(got) == len(want) == 1 and box_iou(want.boxes, got.boxes)[0, 0] > 0.8


def test_a_segment_starting_on_a_block_gives_the_faces_of_the_whole_clip(detector, frames):
    whole = KeyFrameDetector(detector, every=4)
    unsplit = whole.detect(frames[:4], np.arange(4)) + whole.detect(frames[4:], np.arange(4, 8))
    segment = KeyFrameDetector(detector, every=4).detect(frames[4:], np.arange(4, 8))
    for want, got in zip(unsplit[4:], segment, strict=True):
        assert np.array_equal(want.boxes, got.boxes) and np.array_equal(want.landmarks, got.landmarks)


def test_a_capped_pyramid_still_finds_the_face_and_a_cap_above_it_changes_nothing(frames, exact, caplog):
    # 320x256 frames at a 32 px minimum face: P-Net's largest level is 12 * 320 / 32 + 1 = 121 px wide.
    with caplog.at_level("INFO", logger="featurizers.detection.mtcnn_cascade"):
        capped = FaceDetector(AFEW_DETECTOR, mode=DetectionMode(max_side=100)).find_all(frames[:2])
        above = FaceDetector(AFEW_DETECTOR, mode=DetectionMode(max_side=200)).find_all(frames[:2])
    for want, got in zip(exact, capped):
        assert len(got) == len(want) and box_iou(want.boxes, got.boxes)[0, 0] > 0.8
    for want, got in zip(exact, above):
        assert np.array_equal(want.boxes, got.boxes)
    said = [r.getMessage() for r in caplog.records if "changes nothing" in r.getMessage()]
    assert said == ["--detect-max-side 200 changes nothing on 320x256 frames: P-Net's largest level is 121 px at "
                    "a minimum face of 32 px, so detection is exact's"]
