"""End to end: the extraction job on the shipped sample and on bad inputs, on Beam's runners."""

import json
import shutil

import cv2
import numpy as np
import openvino
import pandas as pd
import PIL
import pyarrow.parquet as pq
import pytest
import torch
from videos import SAMPLES, panning_frames, write_video

from common.tables.schema import read_provenance
from jobs import extract

pytestmark = pytest.mark.slow
REPO_FIXTURES = SAMPLES.parent / "tests" / "fixtures" / "checkpoints"
FAST = ["--frame-step", "5"]  # same settings on both sides of every comparison; keeps CI short


def table(folder) -> pd.DataFrame:
    return pd.read_parquet(folder).set_index("clip_id").sort_index()


@pytest.fixture(scope="module")
def afew_direct(tmp_path_factory):
    out = tmp_path_factory.mktemp("afew") / "direct"
    frames = out.parent / "frames"
    code = extract.run(["--dataset", "afew", "--output", str(out), "--frames-output", str(frames), *FAST])
    return code, out, frames


def test_sample_gives_one_row_per_clip_with_provenance(afew_direct):
    code, out, _ = afew_direct
    assert code == 0
    df = table(out)
    listed = sorted(p.stem for p in (SAMPLES / "afew").rglob("*.avi"))
    assert sorted(df.index) == listed
    assert set(df.status) == {"ok", "faceless"}
    faceless = df[df.status == "faceless"]
    assert len(faceless) == 1 and not np.stack(faceless.descriptor).any()
    ok = df[df.status == "ok"]
    assert np.stack(ok.descriptor).shape == (len(ok), 4 * 1280)
    assert (ok.n_face_frames > 0).all() and (ok.n_face_frames <= ok.n_frames).all()
    assert set(df.split) == {"train", "val"} and df.label_index.between(0, 6).all()
    provenance = read_provenance(pq.read_schema(next(out.glob("part-*.parquet"))))
    assert provenance["featurizer"] == "effnet_lite0_imagenet" and len(provenance["weights_sha256"]) == 64
    assert provenance["layout"]["blocks"]["max"] == [3840, 5120]
    assert provenance["detector"]["min_face_size"] == 32 and provenance["frames"]["step"] == 5
    assert provenance["featurizer_backend"] == "openvino"  # what `auto` ran, not `auto`
    assert provenance["detector_backend"] == "openvino"  # the detector follows --backend
    libraries = provenance["libraries"]
    assert openvino.__version__.startswith(libraries["openvino"]) and "onnxruntime" not in libraries
    assert libraries["pillow"] == PIL.__version__ and torch.__version__.startswith(libraries["torch"])
    assert libraries["opencv"].startswith(cv2.__version__) and libraries["facenet-pytorch"]
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["clips"] == len(listed) and summary["faceless"] == 1 and summary["error"] == 0


def test_frames_output_has_a_row_per_detected_face(afew_direct):
    _, out, frames = afew_direct
    faces = pd.read_parquet(frames)
    per_clip = faces.groupby("clip_id").size()
    assert per_clip.to_dict() == table(out).query("n_faces > 0").n_faces.to_dict()
    assert {"frame_index", "time_s", "box", "probability"} <= set(faces.columns)
    assert (faces.probability >= 0.9).all()
    assert np.allclose(faces.time_s, faces.frame_index / 25.0)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("bad")
    val = root / "Val_AFEW" / "Sad"
    write_video(val / "good.avi", panning_frames(astronaut, 6))
    (val / "empty.avi").write_bytes(b"")
    (val / "folder.avi").mkdir()
    (val / "text.avi").write_text("not a video\n" * 100)
    whole = write_video(root / "whole.mp4", panning_frames(astronaut, 30, (120, 160)), codec="libx264")
    (val / "truncated.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    cut = write_video(root / "whole.avi", panning_frames(astronaut, 30, (120, 160)))
    (val / "cut.avi").write_bytes(cut.read_bytes()[: cut.stat().st_size * 3 // 4])
    write_video(val / "midway.avi", panning_frames(astronaut, 40, (120, 160)))  # two 32-frame chunks
    return root


def test_bad_inputs_each_get_an_error_row_and_the_job_exits_non_zero(bad_inputs, tmp_path, monkeypatch, capsys):
    import featurizers.decoding.decode as decode

    original = decode.iter_frame_chunks

    def failing_midway(path, sampling, frame_range=None, **decoding):
        for i, chunk in enumerate(original(path, sampling, frame_range, **decoding)):
            if "midway" in str(path) and i == 1:
                raise decode.VideoDecodeError(f"{path}: corrupt packet at frame {chunk.frame_indices[0]}")
            yield chunk

    monkeypatch.setattr("pipelines.extraction.video_source.iter_frame_chunks", failing_midway)
    out = tmp_path / "out"
    code = extract.run(["--dataset", "afew", "--data-root", str(bad_inputs), "--output", str(out),
                        "--batch-size", "4"])
    assert code == 1
    df = table(out)
    assert sorted(df.index) == ["cut", "empty", "folder", "good", "midway", "text", "truncated"]
    assert df.loc["good", "status"] == "ok"
    errors = df[df.status == "error"]
    assert set(errors.index) == {"cut", "empty", "folder", "midway", "text", "truncated"}
    assert "empty file" in errors.loc["empty", "error"] and "folder" in errors.loc["folder", "error"]
    assert "corrupt packet" in errors.loc["midway", "error"]
    assert "truncated" in errors.loc["cut", "error"]
    # A clip that failed midway keeps nothing of its first chunk.
    assert errors.n_frames.eq(0).all() and not np.stack(errors.descriptor).any()
    printed = capsys.readouterr().out
    assert "7 clips: 1 ok, 0 faceless, 6 failed" in printed


def test_no_partial_output_when_the_run_is_interrupted(tmp_path, monkeypatch):
    out = tmp_path / "out"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("pipelines.extraction.clip_describer.ClipExtractor.describe", interrupted)
    with pytest.raises(Exception):
        extract.run(["--dataset", "afew", "--output", str(out)])
    assert not out.exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert all(".incomplete-" in name for name in leftovers)


def test_usage_errors_exit_2_with_a_message(tmp_path, capsys):
    assert extract.run(["--dataset", "afew", "--data-root", str(tmp_path)]) == 2
    assert "no AFEW split folder" in capsys.readouterr().err
    assert extract.run(["--dataset", "afew", "--featurizer", "enet_b0_8_best_afew",
                        "--weights", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    for flag, value, expected in (("--window-seconds", "0", "> 0"), ("--window-seconds", "nan", "> 0"),
                                  ("--min-track-seconds", "-1", ">= 0")):
        out = tmp_path / "windows"
        assert extract.run(["--dataset", "afew", "--output", str(tmp_path / "o"), "--windows-output", str(out),
                            flag, value]) == 2
        assert f"error: {flag} must be a number of seconds {expected}, got" in capsys.readouterr().err
        assert not out.exists() and not (tmp_path / "o").exists()
    (tmp_path / "a-file").write_text("x")
    assert extract.run(["--dataset", "afew", "--output", str(tmp_path / "o"), "--tracks-output",
                        str(tmp_path / "a-file" / "t")]) == 2
    assert "--tracks-output" in capsys.readouterr().err


def test_vgaf_sample_describes_every_face_and_reports_label_problems(tmp_path):
    root = tmp_path / "vgaf"
    shutil.copytree(SAMPLES / "vgaf", root)
    (root / "Val_labels.txt").write_text("Vid_name Label\n3_1 1\n4_2 7\n5_2 3\n9_9 2\n")
    out = tmp_path / "out"
    code = extract.run(["--dataset", "vgaf", "--data-root", str(root), "--output", str(out),
                        "--frame-step", "25", "--frames-output", str(tmp_path / "faces"),
                        "--tracks-output", str(tmp_path / "tracks"), "--windows-output", str(tmp_path / "windows")])
    assert code == 1  # the label problems are failures a researcher must fix
    df = table(out)
    assert sorted(df.index) == ["1_1", "2_3", "3_1", "4_2", "5_2", "9_9"]
    assert df.loc["1_1", "label"] == "Positive" and df.loc["2_3", "label_index"] == 2
    ok = df[df.status == "ok"]
    assert set(ok.index) == {"1_1", "2_3", "3_1"}
    assert (ok.max_faces_in_frame >= 3).all() and (ok.n_faces >= 2 * ok.n_face_frames).all()
    assert np.stack(ok.descriptor).shape == (3, 4 * 1280)
    assert df.loc["5_2", "status"] == "faceless"
    assert "unknown label '7'" in df.loc["4_2", "error"] and "no video named 9_9" in df.loc["9_9", "error"]
    provenance = read_provenance(pq.read_schema(next(out.glob("part-*.parquet"))))
    assert provenance["layout"]["blocks"]["std_of_frame_mean"] == [2560, 3840]
    assert provenance["detector"]["min_face_size"] == 64 and provenance["detector"]["all_faces"]
    assert provenance["classes"] == ["Positive", "Neutral", "Negative"]
    # Frames 0 and 25 (1 s apart): each person is one track, in the face rows and in the track rows.
    faces, tracks = pd.read_parquet(tmp_path / "faces"), pd.read_parquet(tmp_path / "tracks")
    assert faces.groupby("clip_id").track_id.nunique().to_dict() == ok.max_faces_in_frame.to_dict()
    assert tracks.groupby("clip_id").size().to_dict() == ok.max_faces_in_frame.to_dict()
    assert (tracks.n_frames == 2).all() and (tracks.end_s - tracks.start_s == 1.0).all()
    windows = pd.read_parquet(tmp_path / "windows").set_index("clip_id")  # one 10 s window a clip, failures none
    assert sorted(windows.index) == ["1_1", "2_3", "3_1", "5_2"] and windows.loc["5_2", "status"] == "faceless"
    assert np.allclose(np.stack(windows.loc[list(ok.index), "descriptor"]), np.stack(ok.descriptor))
    track_provenance = read_provenance(pq.read_schema(next((tmp_path / "tracks").glob("part-*.parquet"))))
    assert track_provenance["layout"]["aggregation"] == "afew" and track_provenance["tracks"]["min_track_seconds"] == 1


def test_runner_defaults_and_aliases():
    from apache_beam.options.pipeline_options import StandardOptions

    from jobs.job_setup import DASK_RUNNER, LOCAL_RUNNER, pipeline_options

    def runner(args):
        return pipeline_options(args).view_as(StandardOptions).runner

    assert runner([]) == LOCAL_RUNNER
    assert runner(["--runner", "dask"]) == runner(["--runner=Dask"]) == DASK_RUNNER
    assert runner(["--runner", "DirectRunner"]) == "DirectRunner"


def test_models_load_once_per_worker_process_not_per_clip_bundle_or_job(tmp_path, monkeypatch):
    from pipelines.extraction.clip_describer import ClipExtractor

    built = []
    original = ClipExtractor.__init__

    def counting_init(self, config):
        built.append(config.featurizer)
        original(self, config)

    monkeypatch.setattr(ClipExtractor, "__init__", counting_init)
    # A batch size no other test uses: settings this process has not loaded models for yet.
    argv = ["--dataset", "afew", "--frame-step", "25", "--batch-size", "13"]
    assert extract.run([*argv, "--output", str(tmp_path / "out")]) == 0 and len(table(tmp_path / "out")) == 6
    assert built == ["effnet_lite0_imagenet"]
    assert extract.run([*argv, "--output", str(tmp_path / "again")]) == 0  # the next job reuses them
    assert built == ["effnet_lite0_imagenet"]
    assert extract.run([*argv, "--batch-size", "11", "--output", str(tmp_path / "other")]) == 0
    assert built == ["effnet_lite0_imagenet"] * 2  # other settings, other models


def test_hsemotion_checkpoint_end_to_end_gives_emotion_traces(tmp_path, monkeypatch):
    """The HSEmotion path on a tiny timm-0.9 checkpoint: weights by --weights, emotion probabilities per face."""
    from dataclasses import replace

    from featurizers.embedding import registry
    from featurizers.embedding.checkpoints import checkpoint_sha256

    tiny = replace(registry.FEATURIZERS["enet_b0_8_best_afew"], name="tiny_b0_avg_8", feature_dim=52)
    monkeypatch.setitem(registry.FEATURIZERS, tiny.name, tiny)
    weights = REPO_FIXTURES / "tiny_b0_avg_8.pt"
    out, frames = tmp_path / "out", tmp_path / "frames"
    code = extract.run(["--dataset", "afew", "--featurizer", tiny.name, "--weights", str(weights.parent),
                        "--output", str(out), "--frames-output", str(frames), "--frame-step", "10"])
    assert code == 0
    df = table(out)
    assert np.stack(df.descriptor).shape == (6, 4 * 52)
    provenance = read_provenance(pq.read_schema(next(out.glob("part-*.parquet"))))
    assert provenance["weights_sha256"] == checkpoint_sha256(weights)
    faces = pd.read_parquet(frames)
    emotions = [f"p_{c.lower()}" for c in tiny.head_outputs]
    assert emotions[0] == "p_anger" and set(emotions) <= set(faces.columns)
    assert np.allclose(faces[emotions].sum(axis=1), 1.0, atol=1e-5)
    assert len(faces) == df.n_faces.sum()


def test_a_stuck_decoder_and_corrupt_frames_become_rows_and_the_job_goes_on(tmp_path):
    import os
    import threading

    import av

    root = tmp_path / "archive"
    good = write_video(root / "good.avi", panning_frames(__import__("skimage").data.astronaut(), 20, (120, 160)))
    # damaged: two packets of a copy of the good clip overwritten with noise
    with av.open(str(good)) as container:
        spans = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(good.read_bytes())
    for k in (8, 9):
        pos, size = spans[k]
        data[pos + 8 : pos + size] = np.random.default_rng(k).integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    (root / "damaged.avi").write_bytes(bytes(data))
    # stuck: a named pipe whose writer sends half of a real clip, then stalls
    fifo = root / "stuck.avi"
    os.mkfifo(fifo)
    release = threading.Event()

    def write() -> None:
        with open(fifo, "wb") as pipe:
            pipe.write(good.read_bytes()[: good.stat().st_size // 2])
            pipe.flush()
            release.wait()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    out = tmp_path / "out"
    try:
        code = extract.run(["--dataset", "folder", "--data-root", str(root), "--output", str(out), "--clip-timeout", "3"])
    finally:
        release.set()
    assert code == 1
    df = table(out)
    assert df.loc["good", "status"] == "ok" and df.loc["good", "n_corrupt_frames"] == 0
    assert df.loc["damaged", "status"] == "ok" and df.loc["damaged", "n_corrupt_frames"] == 2
    assert df.loc["damaged", "n_frames"] == df.loc["good", "n_frames"] - 2 == 18
    assert df.loc["stuck", "status"] == "error" and "time limit of 3 s" in df.loc["stuck", "error"]
