"""Long clips split into segments: the same rows, face rows, window rows and track rows as unsplit, on the
local runner and on a Dask cluster (the suite's only Dask jobs: one cluster, warmed once)."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
from videos import SAMPLES, write_video

from jobs import extract

pytestmark = pytest.mark.slow
# 100-frame clips in segments of 32 frames (one decoding chunk): 4 segments, the last of 4 frames.
SPLIT = ["--segment-frames", "32"]
UNSPLIT = ["--segment-frames", "0"]
# Windows of 1 s at 25 fps: [1, 2) holds frames 25-49, cut by the segment boundary at 32; [2, 3) is cut at 64.
TIMELINE = ["--window-seconds", "1", "--min-track-seconds", "1"]


def outputs(folder) -> list[str]:
    return ["--output", str(folder / "clips"), "--frames-output", str(folder / "faces"),
            "--windows-output", str(folder / "windows"), "--tracks-output", str(folder / "tracks"), *TIMELINE]


def windows(folder) -> pd.DataFrame:
    return pd.read_parquet(folder / "windows").sort_values(["clip_id", "start_s"]).reset_index(drop=True)


def tracks(folder) -> pd.DataFrame:
    return pd.read_parquet(folder / "tracks").sort_values(["clip_id", "track_id"]).reset_index(drop=True)


def pooled_afew(rows: pd.DataFrame, dim: int) -> np.ndarray:
    """The AFEW descriptor of a clip from its windows' (count, mean, std, min, max): what merging them gives."""
    rows = rows[rows.has_face]
    n = rows.n_faces.to_numpy(np.float64)[:, None]
    d = np.stack(rows.descriptor).astype(np.float64)
    mean, std, low, high = d[:, :dim], d[:, dim:2 * dim], d[:, 2 * dim:3 * dim], d[:, 3 * dim:]
    total_mean = (n * mean).sum(0) / n.sum()
    square = (n * (std ** 2 + mean ** 2)).sum(0) / n.sum()
    return np.concatenate([total_mean, np.sqrt(np.maximum(square - total_mean ** 2, 0)), low.min(0), high.max(0)])


def table(folder) -> pd.DataFrame:
    return pd.read_parquet(folder).set_index("clip_id").sort_index()


def faces(folder) -> pd.DataFrame:
    return pd.read_parquet(folder).sort_values(["clip_id", "frame_index", "face_index"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory):
    """Two 100-frame clips in the AFEW layout: one person (frames 0-39), no one (40-59), another person (60-99);
    and a faceless clip played twice."""
    from featurizers.decoding.decode import iter_frame_chunks

    def frames_of(clip):
        return [frame for chunk in iter_frame_chunks(SAMPLES / "afew" / clip) for frame in chunk.frames]

    root = tmp_path_factory.mktemp("long") / "afew"
    astronaut, camera = frames_of("Train_AFEW/Happy/000001001.avi"), frames_of("Train_AFEW/Neutral/000002002.avi")
    nobody = frames_of("Val_AFEW/Angry/000006006.avi")
    write_video(root / "Train_AFEW/Happy/000001001.avi", astronaut[:40] + nobody[:20] + camera[:40])
    write_video(root / "Val_AFEW/Angry/000006006.avi", nobody + nobody[::-1])
    return root


@pytest.fixture(scope="module")
def unsplit(two_clips, tmp_path_factory):
    out = tmp_path_factory.mktemp("unsplit")
    argv = ["--dataset", "afew", "--data-root", str(two_clips), *outputs(out), *UNSPLIT]
    assert extract.run(argv) == 0
    return table(out / "clips"), faces(out / "faces"), windows(out), tracks(out)


RUNNERS = {
    "direct": [],
    "dask": ["--runner", "dask", "--dask_npartitions", "2"],  # on the shared cluster, by its address
}
"""Beam's ``multi_processing`` mode of the direct runner is left out: its two worker processes cost ~18 s of
imports for a graph that the Dask cluster's worker processes already run split across processes."""


@pytest.mark.parametrize("runner", RUNNERS)
def test_split_clips_give_the_unsplit_rows_and_face_rows_on_each_runner(runner, two_clips, unsplit, tmp_path,
                                                                        caplog, request):
    caplog.set_level(logging.INFO, logger="pipelines.graph.describe_steps")
    argv = ["--dataset", "afew", "--data-root", str(two_clips), *outputs(tmp_path), *SPLIT, *RUNNERS[runner]]
    if runner == "dask":
        argv += ["--dask_client_address", request.getfixturevalue("dask_cluster").scheduler_address]
    assert extract.run(argv) == 0
    ran_on = json.loads((tmp_path / "clips" / "_summary.json").read_text())["runner"]
    assert ran_on.endswith("DaskRunner" if runner == "dask" else "FnApiRunner"), ran_on
    whole, whole_faces, whole_windows, whole_tracks = unsplit
    split = table(tmp_path / "clips")
    counts = ["status", "n_frames", "n_face_frames", "n_faces", "has_face"]
    assert split[counts].equals(whole[counts])
    assert (split.n_segments == 4).all() and (whole.n_segments == 1).all()
    assert whole.loc["000001001", "n_frames"] == 100
    assert np.allclose(np.stack(split.descriptor), np.stack(whole.descriptor), rtol=1e-6, atol=1e-7)
    split_faces = faces(tmp_path / "faces")
    assert not split_faces.duplicated(["clip_id", "frame_index", "face_index"]).any()
    assert split_faces.drop(columns="box").equals(whole_faces.drop(columns="box"))  # track_id included
    split_windows, split_tracks = windows(tmp_path), tracks(tmp_path)
    spans = ["clip_id", "start_s", "end_s", "n_frames", "n_face_frames", "n_faces", "status"]
    assert split_windows[spans].equals(whole_windows[spans])
    assert np.allclose(np.stack(split_windows.descriptor), np.stack(whole_windows.descriptor), rtol=1e-6, atol=1e-7)
    assert split_tracks.drop(columns="descriptor").equals(whole_tracks.drop(columns="descriptor"))
    assert np.allclose(np.stack(split_tracks.descriptor), np.stack(whole_tracks.descriptor), rtol=1e-6, atol=1e-7)
    if runner == "direct":  # other runners log in their worker processes
        assert "000001001: ok, 100 frames in 4 segments" in caplog.text


def test_windows_and_tracks_of_a_clip_with_two_people_one_after_the_other(unsplit):
    """The clip row is the merge of its window rows; each person is one track, and each face row says whose."""
    clips, faces_, windows_, tracks_ = unsplit
    two = windows_[windows_.clip_id == "000001001"]
    assert two[["start_s", "end_s", "n_frames"]].values.tolist() == [[0.0, 1.0, 25], [1.0, 2.0, 25],
                                                                   [2.0, 3.0, 25], [3.0, 4.0, 25]]
    clip = clips.loc["000001001"]
    for column in ("n_frames", "n_face_frames", "n_faces"):
        assert two[column].sum() == clip[column]
    dim = len(clip.descriptor) // 4
    assert np.allclose(pooled_afew(two, dim), clip.descriptor, rtol=1e-4, atol=1e-5)
    nobody = windows_[windows_.clip_id == "000006006"]
    assert len(nobody) == 4 and (nobody.status == "faceless").all() and not np.stack(nobody.descriptor).any()
    assert tracks_[["clip_id", "track_id", "n_frames"]].values.tolist() == [["000001001", 0, 40], ["000001001", 1, 40]]
    assert tracks_.start_s.tolist() == [0.0, 2.4] and tracks_.end_s.tolist() == [1.56, 3.96]
    ids = faces_.set_index("frame_index").track_id
    assert (ids[ids.index < 40] == 0).all() and (ids[ids.index >= 60] == 1).all() and len(ids) == 80


def test_a_failed_segment_makes_the_whole_clip_an_error_with_no_partial_rows(two_clips, tmp_path, monkeypatch,
                                                                             capsys):
    import featurizers.decoding.decode as decode

    original = decode.iter_frame_chunks

    def failing_in_the_third_segment(path, sampling, frame_range=None, **decoding):
        if "000001001" in str(path) and frame_range is not None and frame_range[0] == 64:
            raise decode.VideoDecodeError(f"{path}: corrupt packet at frame 33")
        yield from original(path, sampling, frame_range, **decoding)

    monkeypatch.setattr("pipelines.extraction.video_source.iter_frame_chunks", failing_in_the_third_segment)
    argv = ["--dataset", "afew", "--data-root", str(two_clips), *outputs(tmp_path), *SPLIT]
    assert extract.run(argv) == 1
    df = table(tmp_path / "clips")
    failed = df.loc["000001001"]
    assert failed.status == "error" and failed.error.startswith("segment 3 of 4 (frames 64-95): VideoDecodeError")
    assert failed.n_frames == 0 and not np.any(failed.descriptor)
    assert df.loc["000006006", "status"] == "faceless"
    for rows in ("faces", "tracks"):  # the failed clip's face and track rows are gone
        assert not list((tmp_path / rows).glob("part-*.parquet"))
    assert set(pd.read_parquet(tmp_path / "windows").clip_id) == {"000006006"}  # its window rows too
    assert "1 failed" in capsys.readouterr().out


@pytest.mark.parametrize("dataset, clip, step", [("afew", "afew/Train_AFEW/Happy/000001001.avi", 3),
                                                 ("vgaf", "vgaf/Train/1_1.mp4", 5)])
def test_segment_statistics_merge_into_the_whole_clip_for_both_aggregations(dataset, clip, step):
    from featurizers.decoding.decode import FrameSampling, probe_video
    from pipelines.extraction.clip_describer import ClipExtractor
    from pipelines.extraction.clip_records import ClipRef
    from pipelines.extraction.segments import SegmentTask, merge_segments, plan_segments, segment_ranges
    from pipelines.extraction.settings import ExtractionConfig

    sampling = FrameSampling(step=step, chunk_size=4)  # small chunks: several segments in a 50-frame clip
    config = ExtractionConfig(dataset=dataset, featurizer="effnet_lite0_imagenet",
                              detector=ExtractionConfig.default_detector(dataset), sampling=sampling)
    extractor = ClipExtractor(config)
    ref = ClipRef("c", str(SAMPLES / clip), dataset)
    whole = extractor.describe(SegmentTask(ref))
    n_frames = probe_video(ref.path).n_frames
    tasks = plan_segments(ref, segment_ranges(n_frames, step, 3, sampling.chunk_size))  # 3 -> one chunk of 4
    assert len(tasks) == -(-len(range(0, n_frames, step)) // 4) >= 3
    merged = merge_segments([extractor.describe(t) for t in tasks], config.layout)
    assert merged.error is None and whole.error is None
    a, b = merged.accumulator, whole.accumulator
    assert (a.n_frames, a.n_face_frames, a.n_faces, a.max_faces_in_frame) == \
        (b.n_frames, b.n_face_frames, b.n_faces, b.max_faces_in_frame)
    assert b.n_faces >= (2 * b.n_face_frames if dataset == "vgaf" else b.n_face_frames) > 0
    # The same faces in the same batches: only the order of float64 sums differs.
    assert np.allclose(a.descriptor(), b.descriptor(), rtol=1e-6, atol=1e-7)


def test_a_lone_clip_spreads_its_segments_over_the_workers_of_a_dask_cluster(two_clips, unsplit, tmp_path,
                                                                             dask_cluster):
    """Beam's Dask runner never repartitions its first Create: the driver lists a long clip as
    several planning elements, each its own partition, so two workers share one clip."""
    import shutil

    from dask.distributed import Client, get_task_stream

    from pipelines.extraction.clip_records import ClipRef
    from pipelines.extraction.settings import ExtractionConfig
    from pipelines.graph.planning import planning_elements

    clip = tmp_path / "lone" / "Train_AFEW" / "Happy" / "000001001.avi"
    clip.parent.mkdir(parents=True)
    shutil.copy(two_clips / "Train_AFEW" / "Happy" / "000001001.avi", clip)
    config = ExtractionConfig(dataset="afew", featurizer="effnet_lite0_imagenet", segment_frames=32)
    elements = planning_elements([ClipRef("000001001", str(clip), "afew")], config)
    assert len(elements) >= 2  # from the file size alone: ~60 kB, 500 bytes a frame, 32 frames a segment
    argv = ["--dataset", "afew", "--data-root", str(tmp_path / "lone"), "--output", str(tmp_path / "clips"), *SPLIT,
            "--runner", "dask"]
    with Client(dask_cluster) as client, get_task_stream(client) as stream:
        assert extract.run([*argv, "--dask_client_address", dask_cluster.scheduler_address]) == 0
    dofn_tasks = [t for t in stream.data if "apply_dofn_to_bundle" in str(t["key"])]
    partitions = {t["key"][1] for t in dofn_tasks if isinstance(t["key"], tuple)}
    assert partitions == set(range(len(elements))), stream.data[:3]  # one partition an element
    assert len({t["worker"] for t in dofn_tasks}) == 2
    row, whole = table(tmp_path / "clips").loc["000001001"], unsplit[0].loc["000001001"]
    assert row.status == "ok" and row.n_segments == 4 and row.n_frames == whole.n_frames == 100
    assert np.allclose(row.descriptor, whole.descriptor, rtol=1e-6, atol=1e-7)
