import numpy as np
import pytest

from videos import SAMPLES, panning_frames, write_video
from featurizers.decode import FrameSampling, iter_frame_chunks, riff_shortfall
from featurizers.errors import VideoDecodeError


@pytest.fixture(scope="module")
def counting_clip(tmp_path_factory):
    """A 30-frame clip whose frame k is a flat grey of level 8*k, so frames can be identified."""
    frames = [np.full((48, 64, 3), 8 * k, np.uint8) for k in range(30)]
    return write_video(tmp_path_factory.mktemp("decode") / "count.avi", frames, fps=10)


def test_chunks_cover_every_frame_in_order(counting_clip):
    chunks = list(iter_frame_chunks(counting_clip, FrameSampling(chunk_size=8)))
    assert [len(c.frames) for c in chunks] == [8, 8, 8, 6]
    indices = np.concatenate([c.frame_indices for c in chunks])
    assert indices.tolist() == list(range(30))
    levels = np.concatenate([c.frames[:, 24, 32, 0] for c in chunks]).astype(int)
    assert np.all(np.diff(levels) > 0)  # in order, none repeated or skipped
    assert np.all(np.abs(levels - 8 * indices) <= 6)  # lossy codec
    assert chunks[1].times_s[0] == pytest.approx(0.8)
    assert chunks[0].frames.dtype == np.uint8 and chunks[0].frames.shape[1:] == (48, 64, 3)


def test_frame_step_and_target_fps(counting_clip):
    stepped = np.concatenate([c.frame_indices for c in iter_frame_chunks(counting_clip, FrameSampling(step=4))])
    assert stepped.tolist() == [0, 4, 8, 12, 16, 20, 24, 28]
    by_rate = np.concatenate([c.frame_indices for c in iter_frame_chunks(counting_clip, FrameSampling(target_fps=2.5))])
    assert by_rate.tolist() == [0, 4, 8, 12, 16, 20, 24, 28]  # 10 fps / 2.5 fps -> every 4th


def test_bad_sampling_is_rejected():
    with pytest.raises(ValueError):
        FrameSampling(step=0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: p.write_bytes(b"this is not a video" * 50), "cannot open as a video"),
        (lambda p: None, "no such file"),
    ],
)
def test_unreadable_inputs_raise_a_decode_error_naming_the_file(tmp_path, make, message):
    path = tmp_path / "clip.mp4"
    make(path)
    with pytest.raises(VideoDecodeError, match=message) as caught:
        list(iter_frame_chunks(path))
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, OSError)


def test_truncated_mp4_fails_with_a_decode_error(tmp_path, astronaut):
    whole = write_video(tmp_path / "whole.mp4", panning_frames(astronaut, 40, (120, 160)), codec="libx264")
    data = whole.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(VideoDecodeError, match="truncated.mp4"):
        list(iter_frame_chunks(truncated))


def test_truncated_avi_fails_instead_of_reading_as_a_shorter_clip(tmp_path):
    whole = SAMPLES / "afew" / "Train_AFEW" / "Happy" / "000001001.avi"
    data = whole.read_bytes()
    assert riff_shortfall(whole) == 0 and len(list(iter_frame_chunks(whole))) > 0
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) * 4 // 5])  # decord alone reads this as 36 of 50 frames
    with pytest.raises(VideoDecodeError, match=r"truncated.avi: truncated: the AVI header declares \d+ more bytes"):
        list(iter_frame_chunks(truncated))


def test_riff_check_ignores_other_formats_and_unpatched_headers(tmp_path):
    assert riff_shortfall(SAMPLES / "vgaf" / "Train" / "1_1.mp4") == 0
    unpatched = tmp_path / "live.avi"
    unpatched.write_bytes(b"RIFF" + (0xFFFFFFFF).to_bytes(4, "little") + b"AVI " + b"\0" * 100)
    assert riff_shortfall(unpatched) == 0
    longer = tmp_path / "opendml.avi"  # a first RIFF chunk followed by more (AVIX) data
    longer.write_bytes(b"RIFF" + (20).to_bytes(4, "little") + b"AVI " + b"\0" * 100)
    assert riff_shortfall(longer) == 0
