from pathlib import Path

import numpy as np
import pytest

from featurizers.detection.face_crops import (
    ALIGNMENT_TEMPLATE,
    align_face,
    crop_face,
    similarity_transform,
    warp_affine,
)


def test_template_is_the_arcface_points_shifted_and_doubled():
    # Left eye of the 96x112 template (30.2946, 51.6963), +8 px in x, x2.
    assert ALIGNMENT_TEMPLATE[0] == pytest.approx([76.5892, 103.3926])
    assert ALIGNMENT_TEMPLATE.shape == (5, 2)


def test_crop_truncates_and_clips_to_the_frame():
    frame = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    crop = crop_face(frame, np.array([2.9, 1.7, 7.2, 5.99]))
    assert crop.shape == (4, 5, 3)  # x 2..7, y 1..5
    assert np.array_equal(crop, frame[1:5, 2:7])
    clipped = crop_face(frame, np.array([-3.5, -1.0, 4.0, 30.0]))
    assert np.array_equal(clipped, frame[0:10, 0:4])


@pytest.mark.parametrize("box", [[-10, -10, -2, -2], [25, 0, 40, 5], [3.2, 3.0, 3.9, 8.0]])
def test_crop_outside_or_thinner_than_a_pixel_gives_none(box):
    assert crop_face(np.zeros((10, 20, 3), np.uint8), np.array(box, float)) is None


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = similarity_transform(src, src @ rot.T + shift)
    assert np.allclose(matrix[:2, :2], rot)
    assert np.allclose(matrix[:2, 2], shift)


def test_similarity_transform_matches_scikit_image():
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(2)
    src = rng.uniform(0, 300, (5, 2))
    expected = SimilarityTransform.from_estimate(src, ALIGNMENT_TEMPLATE).params
    assert np.allclose(similarity_transform(src, ALIGNMENT_TEMPLATE), expected)


def test_warp_is_bilinear_with_a_black_border_like_scikit_image():
    from skimage.transform import AffineTransform, warp

    # A smooth image: OpenCV samples at 1/32 pixel, which on it moves values by under a level;
    # only where the image meets the black border (255 levels in a pixel) may that reach 8.
    ys, xs = np.mgrid[0:60, 0:80].astype(float)
    image = np.stack([2 * xs + ys, 100 + 60 * np.sin(xs / 9) * np.cos(ys / 7), 3 * ys + 20], axis=2).astype(np.uint8)
    angle = np.deg2rad(10)
    matrix = np.array([[1.1 * np.cos(angle), -1.1 * np.sin(angle), 15.0], [1.1 * np.sin(angle), 1.1 * np.cos(angle), 10.0],
                       [0.0, 0.0, 1.0]])
    ours = warp_affine(image, matrix, (70, 70)).astype(float)
    theirs = warp(image, AffineTransform(matrix).inverse, output_shape=(70, 70), order=1, cval=0, preserve_range=True)
    outside = (theirs == 0).all(axis=2)
    assert 0.05 < outside.mean() < 0.5
    assert (ours[outside] == 0).all()
    edge = np.zeros_like(outside)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            edge |= np.roll(np.roll(outside, dy, axis=0), dx, axis=1)
    assert np.abs(ours - theirs)[~edge].max() <= 1.5
    assert np.abs(ours - theirs)[edge].max() <= 255 / 32 + 1


def test_warp_reproduces_opencv_4_warp_affine_bit_for_bit():
    # Made by OpenCV 4.10's warpAffine (the reference's warp); OpenCV 5.0 differs by up to 4 levels.
    case = np.load(Path(__file__).parents[2] / "fixtures" / "warp_affine_opencv4.npz")
    matrix = np.vstack([case["matrix"], [0.0, 0.0, 1.0]])
    warped = warp_affine(case["image"], matrix, case["warped"].shape[:2])
    assert (warped == 0).all(axis=2).any()  # the case covers the black border and its blended edge
    np.testing.assert_array_equal(warped, case["warped"])


def test_alignment_puts_the_landmarks_on_the_template_within_a_pixel():
    # Draw a bright dot at each of 5 landmarks of a tilted, scaled face, align, find the dots again.
    frame = np.zeros((300, 400, 3), np.uint8)
    angle = np.deg2rad(17)
    rot = 0.6 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = ALIGNMENT_TEMPLATE @ rot.T + np.array([150.0, 60.0])
    for k, (x, y) in enumerate(landmarks):
        frame[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2, k % 3] = 255
    aligned = align_face(frame, landmarks)
    assert aligned.shape == (224, 224, 3)
    for k, (tx, ty) in enumerate(ALIGNMENT_TEMPLATE):
        y0, x0 = int(ty) - 8, int(tx) - 8
        window = aligned[y0 : y0 + 17, x0 : x0 + 17, k % 3].astype(float)
        ys, xs = np.mgrid[y0 : y0 + 17, x0 : x0 + 17]
        cy, cx = (window * ys).sum() / window.sum(), (window * xs).sum() / window.sum()
        assert abs(cx - tx) < 1.0 and abs(cy - ty) < 1.0


def test_similarity_transform_rejects_mismatched_points():
    with pytest.raises(ValueError, match="equal shape"):
        similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))
