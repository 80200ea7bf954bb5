"""Our MTCNN cascade driver against facenet-pytorch's own, and its box arithmetic alone."""

import numpy as np
import pytest
import torch
from detections import assert_same_faces
from videos import SAMPLES

from featurizers.decoding.decode import FrameSampling, iter_frame_chunks
from featurizers.detection.detect import AFEW_DETECTOR, VGAF_DETECTOR, FaceDetector
from featurizers.detection.mtcnn_cascade import _pixel_bounds, min_nms, pyramid_scales


def test_pyramid_stops_before_the_scaled_frame_is_smaller_than_the_window():
    scales = pyramid_scales(256, 320, min_face_size=32, factor=0.709)
    assert scales[0] == pytest.approx(12 / 32)
    assert all(b == pytest.approx(a * 0.709) for a, b in zip(scales, scales[1:]))
    assert 256 * scales[-1] >= 12 and 256 * scales[-1] * 0.709 < 12
    assert pyramid_scales(20, 20, min_face_size=32, factor=0.709) == []  # 20 px at 12/32 is 7.5 px


def test_min_nms_drops_a_box_mostly_inside_a_better_one():
    boxes = np.array([[0, 0, 99, 99], [10, 10, 39, 39], [200, 200, 229, 229]], np.float32)
    # The small box is wholly inside the big one: intersection over the smaller area is 1.
    keep = min_nms(boxes, np.array([0.99, 0.95, 0.97], np.float32), threshold=0.7)
    assert keep.tolist() == [0, 2]


def test_pixel_bounds_truncate_and_clip_to_the_frame_keeping_mtcnns_one_pixel_offset():
    boxes = torch.tensor([[-5.7, 3.9, 50.2, 60.8], [300.0, 10.0, 420.0, 90.0]])
    top, bottom, left, right = _pixel_bounds(boxes, width=320, height=240)
    assert top.tolist() == [2, 9] and bottom.tolist() == [60, 90]
    assert left.tolist() == [0, 299] and right.tolist() == [50, 320]


@pytest.mark.slow
@pytest.mark.parametrize("clip, config", [
    ("afew/Train_AFEW/Happy/000001001.avi", AFEW_DETECTOR),
    ("vgaf/Train/2_3.mp4", VGAF_DETECTOR),
])
def test_cascade_finds_what_facenet_pytorch_finds(clip, config):
    cascade, stock = FaceDetector(config), FaceDetector(config, engine="facenet")
    frames = next(iter(iter_frame_chunks(str(SAMPLES / clip), FrameSampling(chunk_size=16)))).frames
    assert_same_faces(cascade.detect(frames), stock.detect(frames), len(frames))


def test_cascade_handles_frames_with_nothing_to_find():
    detector = FaceDetector(AFEW_DETECTOR)
    blank = np.full((3, 64, 80, 3), 128, np.uint8)
    assert [len(f) for f in detector.detect(blank)] == [0, 0, 0]
    tiny = np.zeros((1, 20, 20, 3), np.uint8)  # smaller than the smallest face: no pyramid level at all
    assert [len(f) for f in detector.detect(tiny)] == [0]


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="unknown detector engine 'dlib'"):
        FaceDetector(AFEW_DETECTOR, engine="dlib")  # type: ignore[arg-type]
