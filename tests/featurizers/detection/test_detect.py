import numpy as np
import pytest

from featurizers.detection.detect import (
    AFEW_DETECTOR,
    VGAF_DETECTOR,
    DetectorConfig,
    FaceDetector,
    FrameFaces,
    select_faces,
)


def faces(boxes, probs):
    boxes = np.array(boxes, np.float32)
    return FrameFaces(boxes, np.array(probs, np.float32), np.zeros((len(boxes), 5, 2), np.float32))


def test_reference_settings():
    assert AFEW_DETECTOR.thresholds == (0.6, 0.7, 0.9) and AFEW_DETECTOR.factor == 0.709
    assert (AFEW_DETECTOR.min_face_size, AFEW_DETECTOR.all_faces) == (32, False)
    assert (VGAF_DETECTOR.min_face_size, VGAF_DETECTOR.all_faces) == (64, True)


def test_one_face_per_frame_keeps_the_most_confident_by_default():
    found = faces([[0, 0, 10, 10], [0, 0, 50, 50]], [0.99, 0.95])
    chosen = select_faces(found, AFEW_DETECTOR)
    assert chosen.boxes.tolist() == [[0, 0, 10, 10]]


def test_largest_face_option():
    found = faces([[0, 0, 10, 10], [0, 0, 50, 50]], [0.99, 0.95])
    chosen = select_faces(found, DetectorConfig(face_choice="largest"))
    assert chosen.boxes.tolist() == [[0, 0, 50, 50]]


def test_group_mode_keeps_every_face():
    found = faces([[0, 0, 10, 10], [0, 0, 50, 50], [5, 5, 9, 9]], [0.99, 0.95, 0.91])
    assert len(select_faces(found, VGAF_DETECTOR)) == 3


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(AFEW_DETECTOR)


def test_mtcnn_finds_the_astronauts_face_with_landmarks(detector, astronaut):
    no_face = np.full_like(astronaut, 128)
    found, empty = detector.detect(np.stack([astronaut, no_face]))
    assert len(found) == 1 and len(empty) == 0
    x1, y1, x2, y2 = found.boxes[0]
    # The face sits around x 170-250, y 60-150 in scikit-image's 512x512 astronaut.
    assert 140 < x1 < 200 and 220 < x2 < 290 and 30 < y1 < 100 and 120 < y2 < 180
    left_eye, right_eye = found.landmarks[0][0], found.landmarks[0][1]
    assert left_eye[0] < right_eye[0] and x1 < left_eye[0] < x2
    assert found.probs[0] > 0.9


def test_empty_batch(detector):
    assert detector.detect(np.zeros((0, 32, 32, 3), np.uint8)) == []
