import time

import numpy as np
import pytest
from videos import SAMPLES, panning_frames, write_video

from common.errors import VideoDecodeError
from featurizers.decoding.decode import FrameSampling, iter_frame_chunks, probe_video, riff_shortfall, sampled_indices


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
    with pytest.raises(ValueError):
        FrameSampling(clip_timeout_s=0)


def test_the_default_time_limit_grows_with_the_frames_and_the_file_and_a_set_one_does_not(counting_clip):
    default, fixed = FrameSampling(), FrameSampling(clip_timeout_s=5)
    assert default.timeout_for(100_000) - default.timeout_for(0) == pytest.approx(5000)
    assert fixed.timeout_for(100_000) == fixed.open_timeout_for(counting_clip) == 5
    assert default.open_timeout_for(counting_clip) > default.timeout_for(0)  # the file is read once to open it


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


@pytest.fixture(scope="module")
def h264_clip(tmp_path_factory, astronaut):
    """A 70-frame H.264 clip with a keyframe every 16 frames and B-frames: ranges start mid-GOP."""
    return write_video(tmp_path_factory.mktemp("decode") / "pan.mp4", panning_frames(astronaut, 70, (96, 128)),
                       codec="libx264", options={"g": "16", "bf": "2"})


def test_probe_video_reads_the_declared_count_and_rate(counting_clip, tmp_path):
    info = probe_video(counting_clip)
    assert (info.n_frames, info.fps) == (30, pytest.approx(10.0))
    with pytest.raises(VideoDecodeError, match="no such file"):
        probe_video(tmp_path / "missing.mp4")


@pytest.mark.parametrize("sampling", [FrameSampling(chunk_size=8), FrameSampling(step=3, chunk_size=5),
                                      FrameSampling(target_fps=6.25, chunk_size=4)])
def test_consecutive_frame_ranges_concatenate_to_the_whole_clip(h264_clip, sampling):
    whole = list(iter_frame_chunks(h264_clip, sampling))
    bounds = [0, 7, 23, 24, 50, 70]  # ranges cut mid-GOP, one frame wide, and ending at the clip's end
    parts = [c for a, b in zip(bounds, bounds[1:]) for c in iter_frame_chunks(h264_clip, sampling, frame_range=(a, b))]
    step = sampling.step_for(25.0)
    whole_indices = np.concatenate([c.frame_indices for c in whole])
    assert whole_indices.tolist() == list(range(0, 70, step))
    assert np.concatenate([c.frame_indices for c in parts]).tolist() == whole_indices.tolist()
    assert np.array_equal(np.concatenate([c.frames for c in parts]), np.concatenate([c.frames for c in whole]))
    assert np.array_equal(np.concatenate([c.times_s for c in parts]), np.concatenate([c.times_s for c in whole]))


def test_sampled_indices_of_a_range_keep_the_anchor_at_frame_zero():
    assert sampled_indices(100, 4, (10, 30)).tolist() == [12, 16, 20, 24, 28]
    assert sampled_indices(100, 4, (30, 30)).tolist() == []
    assert sampled_indices(20, 4, (10, 500)).tolist() == [12, 16]  # a range past the end stops at the end
    with pytest.raises(ValueError):
        sampled_indices(100, 4, (30, 10))


def _decoding_rss_mib(clip) -> float:
    """Resident memory of this process and of its child decoding ``clip`` (not of a spare child)."""
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children():
        try:
            if any(f.path == str(clip) for f in child.open_files()):
                total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def test_a_slow_consumer_does_not_make_the_decoder_hold_the_clip(tmp_path, astronaut):
    # 360 frames of 640x360 are 237 MiB decoded. decord 0.6.0 read the whole file ahead and decoded
    # it into an unbounded queue while the consumer was busy: RSS grew by about the whole clip.
    frames = panning_frames(astronaut, 12, (360, 640))
    clip = write_video(tmp_path / "long.avi", [frames[i % 12] for i in range(360)])
    chunk_mib = 8 * 360 * 640 * 3 / 2**20
    chunks = iter_frame_chunks(clip, FrameSampling(chunk_size=8))
    next(chunks)
    baseline, peak, n = _decoding_rss_mib(clip), 0.0, 1
    for chunk in chunks:
        time.sleep(0.03)  # a consumer slower than the decoder, as face detection is
        peak = max(peak, _decoding_rss_mib(clip))
        n += 1
    assert n == 45
    assert peak - baseline < 8 * chunk_mib, f"RSS grew by {peak - baseline:.0f} MiB (a chunk is {chunk_mib:.1f} MiB)"


@pytest.fixture
def stalled_pipe(tmp_path):
    """A named pipe listed as a video: its writer sends the first half of a real clip, then stalls."""
    import os
    import threading

    data = (SAMPLES / "afew" / "Train_AFEW" / "Happy" / "000001001.avi").read_bytes()
    fifo = tmp_path / "stalled.avi"
    os.mkfifo(fifo)
    release = threading.Event()

    def write() -> None:
        with open(fifo, "wb") as pipe:  # blocks until the decoder opens the pipe
            pipe.write(data[: len(data) // 2])
            pipe.flush()
            release.wait()  # ... and never sends the rest while the test runs

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    yield fifo
    release.set()
    if writer.is_alive():  # the decoder never opened the pipe: open it, so the writer's open returns
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        writer.join(5)
        os.close(reader)


def test_a_stuck_decoder_fails_its_clip_within_the_time_limit_and_the_next_clip_decodes(stalled_pipe, counting_clip):
    started = time.monotonic()
    with pytest.raises(VideoDecodeError, match=r"stalled.avi: decoding stopped making progress .* time limit of 2 s"):
        list(iter_frame_chunks(stalled_pipe, FrameSampling(clip_timeout_s=2)))
    assert 2 <= time.monotonic() - started < 20
    assert sum(len(c.frames) for c in iter_frame_chunks(counting_clip, FrameSampling(clip_timeout_s=2))) == 30


def test_a_decoder_that_dies_fails_its_clip_naming_the_frames(counting_clip):
    import os
    import signal

    import psutil

    chunks = iter_frame_chunks(counting_clip, FrameSampling(chunk_size=4))
    first = next(chunks)
    assert first.frame_indices.tolist() == [0, 1, 2, 3]
    (decoder,) = [p for p in psutil.Process().children() if any(f.path == str(counting_clip) for f in p.open_files())]
    os.kill(decoder.pid, signal.SIGABRT)  # what decord does on some corrupt packets (dmlc/decord#25)
    with pytest.raises(VideoDecodeError, match=r"count.avi: the decoder process died \(signal SIGABRT\) at frames \d+-29"):
        list(chunks)  # chunks decoded ahead before the abort may still arrive; then the error
    assert len(list(iter_frame_chunks(counting_clip))) == 1  # the next clip decodes


def _corrupt_packets(clip, out, packets):
    """A copy of ``clip`` with the payload of the given video packets overwritten by noise."""
    import av

    with av.open(str(clip)) as container:
        spans = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(clip.read_bytes())
    for k in packets:
        pos, size = spans[k]
        data[pos + 8 : pos + size] = np.random.default_rng(k).integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    out.write_bytes(bytes(data))
    return out


def test_corrupt_frames_are_left_out_and_counted_not_replaced(counting_clip, tmp_path):
    damaged = _corrupt_packets(counting_clip, tmp_path / "damaged.avi", [15, 16])
    chunks = list(iter_frame_chunks(damaged, FrameSampling(chunk_size=8)))
    indices = np.concatenate([c.frame_indices for c in chunks]).tolist()
    assert indices == [k for k in range(30) if k not in (15, 16)]
    assert [c.n_corrupt for c in chunks] == [0, 1, 1, 0]
    levels = np.concatenate([c.frames[:, 24, 32, 0] for c in chunks]).astype(int)
    assert np.all(np.abs(levels - 8 * np.asarray(indices)) <= 6)  # no frame stands in for another


def test_a_clip_with_too_many_corrupt_frames_is_an_error_naming_the_range(counting_clip, tmp_path):
    damaged = _corrupt_packets(counting_clip, tmp_path / "damaged.avi", [10, 11, 12, 13])
    with pytest.raises(VideoDecodeError, match=r"damaged.avi: 4 of the 30 sampled frames in frames 0-29 are corrupt"):
        list(iter_frame_chunks(damaged))
    assert sum(c.n_corrupt for c in iter_frame_chunks(damaged, frame_range=(20, 30))) == 0


def test_a_container_declaring_more_frames_than_it_holds_is_an_error_naming_the_missing_frames(tmp_path, astronaut):
    import av

    whole = tmp_path / "faststart.mp4"  # index first, so a cut file still states the full count
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width, stream.pix_fmt = 120, 160, "yuv420p"
        for frame in panning_frames(astronaut, 40, (120, 160)):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    with pytest.raises(VideoDecodeError, match=r"cut.mp4: the container declares 40 frames but holds \d+: frames \d+-39 are missing"):
        list(iter_frame_chunks(cut))
    with pytest.raises(VideoDecodeError, match="declares 40 frames"):
        probe_video(cut)


def _decoder_pids() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children() if "featurizers.decoding.decode_child" in " ".join(p.cmdline())}


def test_one_decoder_process_serves_consecutive_clips_and_a_failed_one_is_replaced(counting_clip, tmp_path):
    def levels(sampling):  # frame k is grey 8*k, give or take the lossy codec
        return [int(f[24, 32, 0]) // 8 for c in iter_frame_chunks(counting_clip, sampling) for f in c.frames]

    def near(found, step):
        return np.all(np.abs(np.array(found) - np.arange(0, 30, step)) <= 1)

    assert near(levels(FrameSampling(step=3)), 3)
    first = _decoder_pids()
    assert probe_video(counting_clip).n_frames == 30
    for step, chunk_size in ((1, 7), (3, 4)):  # slots of other sizes, the same process
        assert near(levels(FrameSampling(step=step, chunk_size=chunk_size)), step)
    assert _decoder_pids() == first and len(first) == 1
    stopped = iter_frame_chunks(counting_clip, FrameSampling(chunk_size=4))
    next(stopped)
    stopped.close()  # the consumer stops halfway: that decoder may still be busy, so it is not kept
    with pytest.raises(VideoDecodeError):
        probe_video(tmp_path / "missing.avi")
    assert near(levels(FrameSampling()), 1)
    assert len(_decoder_pids()) == 1 and _decoder_pids() != first
