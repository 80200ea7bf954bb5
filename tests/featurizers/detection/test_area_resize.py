"""The compiled area resize against torch's ``interpolate(mode="area")``, bit for bit."""

import numpy as np
import pytest
import torch

from featurizers.detection import area_resize
from featurizers.detection.area_resize import area_pyramid, area_resize_boxes


def torch_area(frames: np.ndarray, frame: int, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    top, bottom, left, right = box
    planar = torch.from_numpy(frames[frame:frame + 1, top:bottom, left:right]).permute(0, 3, 1, 2).float()
    return torch.nn.functional.interpolate(planar, size=size, mode="area")[0].permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 57, 83, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [(24, 24), (48, 48), (20, 31)])
def test_boxes_of_any_shape_equal_torch_interpolate_area(frames, size):
    rng = np.random.default_rng(1)
    boxes = []
    for _ in range(40):  # shrinking, enlarging (boxes smaller than the output) and odd ratios
        top, left = int(rng.integers(0, 50)), int(rng.integers(0, 75))
        boxes.append((int(rng.integers(0, 3)), top, int(rng.integers(top + 1, 58)), left, int(rng.integers(left + 1, 84))))
    index, top, bottom, left, right = (np.array(v) for v in zip(*boxes))
    got = area_resize_boxes(frames, index, top, bottom, left, right, *size)
    expected = np.stack([torch_area(frames, f, (t, b, l, r), size) for f, t, b, l, r in boxes])
    np.testing.assert_array_equal(got, expected)


def test_whole_frames_give_torchs_pyramid_level(frames):
    n, height, width = frames.shape[:3]
    got = area_resize_boxes(frames, np.arange(n), np.zeros(n), np.full(n, height), np.zeros(n), np.full(n, width), 22, 32)
    planar = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    expected = torch.nn.functional.interpolate(planar, size=(22, 32), mode="area").permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(got, expected)


def test_no_boxes_gives_an_empty_batch(frames):
    empty = np.zeros(0, np.int64)
    assert area_resize_boxes(frames, empty, empty, empty, empty, empty, 24, 24).shape == (0, 24, 24, 3)


@pytest.mark.parametrize("box", [(0, 0, 58, 0, 10), (0, 5, 5, 0, 10), (3, 0, 10, 0, 10), (0, -1, 10, 0, 10)])
def test_boxes_outside_their_frame_are_refused(frames, box):
    with pytest.raises(ValueError, match="inside its frame"):
        area_resize_boxes(frames, *(np.array([v]) for v in box), 24, 24)


def test_frames_must_be_rgb_uint8(frames):
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\) uint8"):
        area_resize_boxes(frames.astype(np.float32), *(np.array([v]) for v in (0, 0, 5, 0, 5)), 24, 24)


def test_input_scaling_is_torchs_float32_arithmetic_on_the_means(frames):
    box = (1, 3, 50, 2, 77)
    got = area_resize_boxes(frames, *(np.array([v]) for v in box), 24, 24, offset=127.5, scale=0.0078125)[0]
    means = torch.from_numpy(torch_area(frames, box[0], box[1:], (24, 24)))
    np.testing.assert_array_equal(got, ((means - 127.5) * 0.0078125).numpy())


def test_the_result_does_not_depend_on_the_thread_count(frames):
    n, height, width = frames.shape[:3]
    whole = (np.arange(n), np.zeros(n), np.full(n, height), np.zeros(n), np.full(n, width))
    one = area_resize_boxes(frames, *whole, 17, 25, threads=1)
    np.testing.assert_array_equal(one, area_resize_boxes(frames, *whole, 17, 25, threads=2))


@pytest.mark.parametrize("ratio", [0.0, float("inf")])
def test_boxes_from_a_summed_area_table_or_summed_one_by_one_equal_torch(frames, monkeypatch, ratio):
    monkeypatch.setattr(area_resize, "TABLE_AREA_RATIO", ratio)  # 0: every frame gets a table; inf: none does
    rng = np.random.default_rng(2)
    boxes = []
    for _ in range(30):
        top, left = int(rng.integers(0, 50)), int(rng.integers(0, 75))
        boxes.append((int(rng.integers(0, 3)), top, int(rng.integers(top + 1, 58)), left, int(rng.integers(left + 1, 84))))
    index, top, bottom, left, right = (np.array(v) for v in zip(*boxes))
    got = area_resize_boxes(frames, index, top, bottom, left, right, 24, 24)
    np.testing.assert_array_equal(got, np.stack([torch_area(frames, f, (t, b, l, r), (24, 24)) for f, t, b, l, r in boxes]))


@pytest.mark.parametrize("table_pixels", [area_resize.INT32_TABLE_PIXELS, 100])  # 100: int64 tables
def test_pyramid_levels_equal_torchs_interpolate_area(frames, monkeypatch, table_pixels):
    monkeypatch.setattr(area_resize, "INT32_TABLE_PIXELS", table_pixels)
    sizes = [(22, 32), (12, 17), (57, 83), (70, 90)]  # smaller, the same size, larger than the frame
    levels = area_pyramid(frames, sizes, offset=127.5, scale=0.0078125, threads=2)
    planar = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    for level, size in zip(levels, sizes):
        expected = torch.nn.functional.interpolate(planar, size=size, mode="area").permute(0, 2, 3, 1)
        np.testing.assert_array_equal(level, ((expected - 127.5) * 0.0078125).numpy())


def test_a_pyramid_level_without_pixels_is_refused(frames):
    with pytest.raises(ValueError, match="at least one pixel"):
        area_pyramid(frames, [(10, 0)])
