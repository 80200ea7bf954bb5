"""One probe per clip gives the frame index that every segment shares: split equals unsplit, numbered as decord."""

import numpy as np
import pytest
from videos import panning_frames, write_vfr_video, write_video

from common.stores.ranged_file import RangedFile
from featurizers.decoding.decode import FrameSampling, iter_frame_chunks, probe_video
from featurizers.decoding.frame_index import FrameIndex, index_of_packets


def test_the_index_ranks_frames_by_timestamp_and_a_window_starts_at_the_keyframe_before_it():
    # file (decode) order with B-frames: I0 P3 B1 B2 I4 P6 B5; pts in units of 10
    packets = [(0, -10, True), (30, 0, False), (10, 10, False), (20, 20, False), (40, 30, True), (60, 40, False),
               (50, 50, False)]
    index = index_of_packets(packets, fps=25.0, declared_frames=7)
    assert index.timestamps.tolist() == [0, 10, 20, 30, 40, 50, 60] and index.keyframes.tolist() == [0, 4]
    assert [index.rank(t) for t in (0, 30, 60, 35, 70)] == [0, 3, 6, None, None]
    window = index.window(5, 6)
    assert (window.first, window.stop, window.timestamps.tolist(), window.keyframes.tolist()) == (4, 6, [40, 50], [4])
    assert window.keyframe_at_or_before(5) == 4 and window.timestamp(5) == 50
    assert window.rank(60) == 6  # past the window: after every frame it numbers, so the decoder stops there
    assert window.rank(30) is None  # before it (a frame the seek passed on the way): not one of ours
    assert index.window(2, 3).first == 0 and index.window(0, 99).stop == 7
    assert index_of_packets([(None, None, True), (None, None, False)], 25.0).timestamps.tolist() == [0, 1]


def _h264(tmp_path, astronaut):
    return write_video(tmp_path / "bframes.mp4", panning_frames(astronaut, 36, (48, 64)), codec="libx264",
                       options={"g": "10", "bf": "2"})


def _mpeg4_avi(tmp_path, astronaut):
    return write_video(tmp_path / "mpeg4.avi", panning_frames(astronaut, 36, (48, 64)))


def _variable_rate(tmp_path, astronaut):
    steps = np.random.default_rng(0).choice([20, 40, 100], 36)
    return write_vfr_video(tmp_path / "vfr.mp4", panning_frames(astronaut, 36, (48, 64)),
                           [int(t) for t in np.cumsum(steps) - steps[0]])


@pytest.mark.parametrize("make", [_h264, _mpeg4_avi, _variable_rate], ids=["h264-bframes", "mpeg4-avi", "vfr"])
def test_segments_sharing_one_probes_index_give_exactly_the_unsplit_frames_numbered_as_decord(make, tmp_path,
                                                                                           astronaut):
    import decord

    path = make(tmp_path, astronaut)
    sampling = FrameSampling(step=2, chunk_size=4)
    info = probe_video(path, sampling)
    assert info.index is not None and info.n_frames == 36 and info.bytes_read > 0
    whole = list(iter_frame_chunks(path, sampling))
    parts = [c for a, b in [(0, 7), (7, 16), (16, 17), (17, 30), (30, 36)]  # cut mid-GOP, one frame wide
             for c in iter_frame_chunks(path, sampling, (a, b), index=info.index.window(a, b))]
    indices = np.concatenate([c.frame_indices for c in whole])
    assert indices.tolist() == list(range(0, 36, 2))
    assert np.concatenate([c.frame_indices for c in parts]).tolist() == indices.tolist()
    assert np.array_equal(np.concatenate([c.frames for c in parts]), np.concatenate([c.frames for c in whole]))
    assert np.array_equal(np.concatenate([c.times_s for c in parts]), np.concatenate([c.times_s for c in whole]))
    reader = decord.VideoReader(str(path))
    assert len(reader) == info.n_frames
    oracle = reader.get_batch(indices.tolist()).asnumpy()
    ours = np.concatenate([c.frames for c in parts])
    if path.suffix == ".mp4":  # H.264: RGB equal to the bit
        assert np.array_equal(ours, oracle)
    else:  # MPEG-4 part 2: the same frames, decoders may round a level apart
        assert np.abs(ours.astype(int) - oracle.astype(int)).mean() < 1.0


def test_a_segment_ignores_its_own_corrupt_share_that_the_whole_clip_would_allow(tmp_path):
    import av

    frames = [np.full((48, 64, 3), 8 * k, np.uint8) for k in range(30)]
    clip = write_video(tmp_path / "count.avi", frames, fps=10)
    with av.open(str(clip)) as container:
        spans = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(clip.read_bytes())
    for k in (21, 22):  # 2 of 30 frames (under 10 %), 2 of the 10 of frames 20-29 (over)
        pos, size = spans[k]
        data[pos + 8 : pos + size] = np.random.default_rng(k).integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    assert sum(c.n_corrupt for c in iter_frame_chunks(damaged)) == 2  # unsplit: within the limit
    with pytest.raises(OSError, match="2 of the 10 sampled frames in frames 20-29"):
        list(iter_frame_chunks(damaged, frame_range=(20, 30)))
    assert sum(c.n_corrupt for c in iter_frame_chunks(damaged, frame_range=(20, 30), limit_corrupt=False)) == 2


def test_a_ranged_file_fetches_only_the_blocks_read_and_keeps_the_last_few(tmp_path):
    import fsspec

    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 40)  # 10,240 bytes
    ranged = RangedFile(fsspec.filesystem("file"), str(path), 10_240, block_bytes=1000, cached_blocks=2)
    ranged.seek(5000)
    assert ranged.read(10) == bytes(range(136, 146)) and ranged.bytes_fetched == 1000  # block 5
    assert len(ranged.read(990)) == 990 and ranged.bytes_fetched == 1000  # served from it
    ranged.seek(-40, 2)
    assert len(ranged.read(100)) == 40 and ranged.tell() == 10_240 and ranged.bytes_fetched == 1240  # block 10
    assert ranged.read(1) == b""
    ranged.seek(5500)
    assert ranged.read(1000) == (bytes(range(256)) * 40)[5500:6500] and ranged.bytes_fetched == 2240  # 5 kept, 6
    ranged.seek(10_100)
    ranged.read(1)
    assert ranged.bytes_fetched == 2480  # block 10 was dropped: two blocks kept


def test_a_video_in_a_bucket_is_probed_and_split_by_byte_ranges(bucket, tmp_path, astronaut):
    import fsspec

    local = _h264(tmp_path, astronaut)
    url = f"{bucket}/clips/bframes.mp4"
    fsspec.filesystem("s3").put_file(str(local), url)
    sampling = FrameSampling(chunk_size=8)
    info = probe_video(url, sampling)
    assert info.n_frames == 36 and np.array_equal(info.index.timestamps, probe_video(local).index.timestamps)
    parts = [c for a, b in [(0, 13), (13, 36)] for c in iter_frame_chunks(url, sampling, (a, b),
                                                                          index=info.index.window(a, b))]
    whole = list(iter_frame_chunks(local, sampling))
    assert np.array_equal(np.concatenate([c.frames for c in parts]), np.concatenate([c.frames for c in whole]))
    with pytest.raises(OSError, match="no such object"):
        probe_video(f"{bucket}/clips/missing.mp4")


def test_frame_index_is_compared_by_its_numbers_not_its_arrays():
    a = FrameIndex(np.arange(3), np.zeros(1, np.int64), 3, 25.0)
    assert a == FrameIndex(np.arange(3) * 2, np.zeros(1, np.int64), 3, 25.0)  # tasks stay comparable


@pytest.mark.parametrize("make", [_h264, _mpeg4_avi, _variable_rate], ids=["h264-bframes", "mpeg4-avi", "vfr"])
def test_the_containers_own_index_gives_the_frame_index_that_a_demux_pass_gives(make, tmp_path, astronaut,
                                                                              monkeypatch):
    from featurizers.decoding import video_reader

    path = str(make(tmp_path, astronaut))
    assert video_reader._sample_table(path) is not None  # read from the moov box or idx1, no media data
    video = video_reader.IndexedVideo(path)
    from_tables = video.index
    video.close()
    monkeypatch.setattr(video_reader, "_sample_table", lambda source: None)
    video = video_reader.IndexedVideo(path)
    demuxed = video.index
    video.close()
    assert np.array_equal(from_tables.timestamps, demuxed.timestamps)
    assert np.array_equal(from_tables.keyframes, demuxed.keyframes) and len(demuxed.keyframes) >= 3
    assert not np.all(np.diff(demuxed.keyframes) == 1)  # not every frame a keyframe: the flags were read
    assert from_tables == demuxed  # frame count, rate, declared count
    # A cut faststart file (tables first, samples missing) is left to the demux pass: see test_decode's
    # test_a_container_declaring_more_frames_than_it_holds_is_an_error_naming_the_missing_frames.
