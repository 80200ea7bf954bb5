"""Augmentation of training faces: the draws stay within their bounds and repeat under a seed, and
each change does to a known image what it says."""

import numpy as np
import pytest

from featurizers.finetuning.augment import (
    NO_JITTER,
    BatchMix,
    FaceJitter,
    draw_jitter,
    draw_mix,
    jitter_face,
    mix_batch,
)
from featurizers.finetuning.settings import FaceAugmentation


def _ramp(h=6, w=8):
    """An image whose every pixel differs: value = 10 * row + column, on three channels."""
    values = 10 * np.arange(h)[:, None] + np.arange(w)[None, :]
    return np.repeat(values[..., None], 3, axis=2).astype(np.uint8)


def test_no_jitter_leaves_the_face_as_it_is():
    face = _ramp()
    assert np.array_equal(jitter_face(face, NO_JITTER), face)


def test_flip_mirrors_left_and_right():
    face = _ramp()
    flipped = jitter_face(face, FaceJitter(True, 1.0, (0.0, 0.0), 0.0, 1.0, 1.0))
    assert flipped[0, 0, 0] == 7 and flipped[5, 7, 0] == 50
    assert np.array_equal(flipped, face[:, ::-1])


def test_shift_moves_the_face_by_a_fraction_of_its_side():
    face = np.zeros((8, 8, 3), np.uint8)
    face[3, 4] = 200
    moved = jitter_face(face, FaceJitter(False, 1.0, (0.25, -0.125), 0.0, 1.0, 1.0))
    assert moved[2, 6].tolist() == [200, 200, 200]  # 2 px right (0.25 * 8), 1 px up
    assert int(moved.sum()) == 3 * 200  # what comes in at the borders is the face's own edge, mirrored


def test_rotation_turns_about_the_centre_counter_clockwise():
    face = _ramp(8, 8)
    turned = jitter_face(face, FaceJitter(False, 1.0, (0.0, 0.0), 90.0, 1.0, 1.0))
    assert np.array_equal(turned, np.rot90(face))


def test_zoom_enlarges_about_the_centre():
    face = np.zeros((9, 9, 3), np.uint8)
    face[4, 6] = 255  # 2 px right of the centre pixel
    zoomed = jitter_face(face, FaceJitter(False, 1.5, (0.0, 0.0), 0.0, 1.0, 1.0))
    assert zoomed[4, 7, 0] == 255  # 3 px right of it after a 1.5x zoom
    assert zoomed[4, 4, 0] == 0


def test_brightness_scales_the_mean_and_contrast_the_deviations():
    face = np.full((4, 4, 3), 100, np.uint8)
    face[:2] = 140  # mean 120, deviations +-20
    brighter = jitter_face(face, FaceJitter(False, 1.0, (0.0, 0.0), 0.0, 1.25, 1.0))
    assert sorted(np.unique(brighter).tolist()) == [130, 170]  # mean 150, deviations kept
    flatter = jitter_face(face, FaceJitter(False, 1.0, (0.0, 0.0), 0.0, 1.0, 0.5))
    assert sorted(np.unique(flatter).tolist()) == [110, 130]  # mean kept, deviations halved
    saturated = jitter_face(face, FaceJitter(False, 1.0, (0.0, 0.0), 0.0, 3.0, 1.0))
    assert saturated.max() == 255 and saturated.dtype == np.uint8


def test_draws_stay_within_bounds_cover_them_and_repeat_under_a_seed():
    augmentation = FaceAugmentation(max_scale=0.1, max_shift=0.05, max_rotation=8.0, max_brightness=0.2,
                                    max_contrast=0.3)
    draws = [draw_jitter(np.random.default_rng(7), augmentation)]
    rng = np.random.default_rng(7)
    many = [draw_jitter(rng, augmentation) for _ in range(2000)]
    assert many[0] == draws[0]  # same seed, same first draw
    scales = np.array([j.scale for j in many])
    shifts = np.array([j.shift for j in many])
    rotations = np.array([j.rotation for j in many])
    brightness = np.array([j.brightness for j in many])
    contrast = np.array([j.contrast for j in many])
    for values, low, high in ((scales, 0.9, 1.1), (shifts, -0.05, 0.05), (rotations, -8, 8),
                              (brightness, 0.8, 1.2), (contrast, 0.7, 1.3)):
        assert values.min() >= low and values.max() <= high
        assert values.min() < low + 0.05 * (high - low) and values.max() > high - 0.05 * (high - low)
    assert 0.45 < np.mean([j.flip for j in many]) < 0.55
    rng_again = np.random.default_rng(7)
    assert [draw_jitter(rng_again, augmentation) for _ in range(2000)] == many
    assert draw_jitter(np.random.default_rng(8), augmentation) != many[0]


def test_flip_off_never_flips_and_draws_the_same_stream():
    on, off = FaceAugmentation(), FaceAugmentation(flip=False)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    pairs = [(draw_jitter(a, on), draw_jitter(b, off)) for _ in range(200)]
    assert not any(j.flip for _, j in pairs)
    assert all(i.rotation == j.rotation for i, j in pairs)  # the other draws do not shift


@pytest.mark.parametrize("bad", [dict(max_scale=1.0), dict(max_shift=-0.1), dict(max_rotation=90.0)])
def test_augmentation_bounds_are_checked(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        FaceAugmentation(**bad)


def test_no_mix_without_alphas_or_with_one_image():
    rng = np.random.default_rng(0)
    assert draw_mix(rng, 8, 32, 0.0, 0.0) is None
    assert draw_mix(rng, 1, 32, 0.2, 1.0) is None


def test_mixup_blends_each_image_with_its_partner():
    images = np.stack([np.full((3, 2, 2), v, np.float32) for v in (0.0, 1.0, 2.0)])
    mix = BatchMix(np.array([2, 0, 1]), 0.75, None)
    mixed = mix_batch(images, mix)
    assert mixed[:, 0, 0, 0].tolist() == pytest.approx([0.5, 0.75, 1.75])  # 0.75 own + 0.25 partner


def test_cutmix_pastes_the_partners_box_and_weighs_by_the_area_left():
    rng = np.random.default_rng(5)
    for _ in range(50):
        mix = draw_mix(rng, 4, 16, 0.0, 1.0)
        assert mix is not None and mix.box is not None and sorted(mix.partner.tolist()) == [0, 1, 2, 3]
        top, left, bottom, right = mix.box
        assert 0 <= top <= bottom <= 16 and 0 <= left <= right <= 16
        assert mix.weight == pytest.approx(1 - (bottom - top) * (right - left) / 256)
    images = np.stack([np.full((3, 16, 16), v, np.float32) for v in range(4)])
    mix = BatchMix(np.array([1, 2, 3, 0]), 0.75, (4, 4, 12, 12))
    mixed = mix_batch(images, mix)
    assert mixed[0, :, 4:12, 4:12].min() == 1 and mixed[0, :, :4].max() == 0 and mixed[3, 0, 5, 5] == 0


def test_both_alphas_choose_one_kind_per_batch():
    rng = np.random.default_rng(1)
    kinds = [draw_mix(rng, 8, 32, 0.4, 1.0).box is None for _ in range(200)]
    assert 60 < sum(kinds) < 140
