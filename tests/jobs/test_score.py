"""End to end: train on two sample clips, then score an archive folder night after night."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scoring_helpers import HAPPY, NEUTRAL, latest_view, tracks_view, windows_view
from videos import SAMPLES

from classifiers.descriptors import load_descriptors
from classifiers.model_io import load_model
from classifiers.scoring import SCORING_KEY, predict_clips
from common.tables.schema import read_provenance
from jobs import extract, score, train
from pipelines.scoring import night_plan, run_lock

pytestmark = pytest.mark.slow


def _archive(root: Path) -> tuple[Path, Path, Path]:
    happy, neutral, broken = root / "2024" / "a.avi", root / "2024" / "05" / "b.mp4", root / "broken.mkv"
    neutral.parent.mkdir(parents=True)
    shutil.copy(HAPPY, happy)
    shutil.copy(NEUTRAL, neutral)
    broken.write_bytes(b"not a video")
    return happy, neutral, broken


def test_nightly_runs_score_only_new_changed_and_failed_videos(model: Path, tmp_path: Path,
                                                             described: list[list[str]],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    archive, output = tmp_path / "archive", tmp_path / "scores"
    happy, neutral, broken = _archive(archive)
    argv = ["--model", str(model), "--input", str(archive), "--output", str(output), "--max-attempts", "2",
            "--window-seconds", "1"]

    assert score.run(argv) == 1  # the broken file failed
    first = latest_view(output)
    windows, tracks = windows_view(output), tracks_view(output)
    assert windows.groupby("key").size().to_dict() == {"2024/05/b.mp4": 2, "2024/a.avi": 2}  # none for the failure
    assert windows.start_s.tolist() == [0.0, 1.0] * 2 and windows.end_s.tolist() == [1.0, 2.0] * 2
    assert windows.has_face.all() and set(windows.run_id) == set(first.run_id)
    assert windows.set_index("key").predicted_label.groupby(level=0).first().to_dict() == \
        {"2024/05/b.mp4": "Neutral", "2024/a.avi": "Happy"}
    assert tracks.key.tolist() == ["2024/05/b.mp4", "2024/a.avi"] and (tracks.track_id == 0).all()
    # One person, seen in every face frame: the track's descriptor is the clip's, and so are its scores.
    assert tracks.set_index("key").n_frames.to_dict() == first.n_face_frames[tracks.key].to_dict()
    np.testing.assert_allclose(tracks.score_Happy, first.score_Happy[tracks.key], rtol=1e-5)
    windows_files = {p.name: p.stat().st_mtime_ns for p in (output / "windows").iterdir()}
    assert sorted(first.index) == ["2024/05/b.mp4", "2024/a.avi", "broken.mkv"]  # relative to --input
    assert first.loc["2024/a.avi", "path"] == str(happy)
    assert first.loc["2024/a.avi", "predicted_label"] == "Happy"  # the clips it was trained on
    assert first.loc["2024/05/b.mp4", "predicted_label"] == "Neutral"
    assert [c for c in first.columns if c.startswith("score_")] == ["score_Happy", "score_Neutral"]
    assert first.loc["2024/a.avi", "score_Happy"] > first.loc["2024/a.avi", "score_Neutral"]
    assert (first.loc["broken.mkv", "status"], first.loc["broken.mkv", "attempts"]) == ("error", 1)
    assert pd.isna(first.loc["broken.mkv", "predicted_label"]) and pd.isna(first.loc["broken.mkv", "score_Happy"])
    assert str(broken) in first.loc["broken.mkv", "error"]
    assert first.loc["2024/a.avi", "size_bytes"] == happy.stat().st_size
    assert first.loc["2024/a.avi", "mtime_ns"] == happy.stat().st_mtime_ns
    assert (first.n_face_frames[first.status == "ok"] > 0).all()
    assert "3 new, 0 rescored, 0 reused, 0 skipped, 1 failed, 0 permanently failed" in capsys.readouterr().out
    schema = pq.read_schema(next((output / "latest").glob("part-*.parquet")))
    extraction, scoring = read_provenance(schema), json.loads(schema.metadata[SCORING_KEY])
    assert extraction["frames"]["step"] == 10 and extraction["detector"]["min_face_size"] == 32  # as trained
    assert scoring["score_kind"] == "decision_function" and scoring["model_sha256"] == first.model_sha256.iloc[0]

    assert score.run(argv) == 1  # only the failed video is tried again, and given up on
    assert described[-1] == ["broken.mkv"]
    second = latest_view(output)
    assert second.loc["2024/a.avi", "scored_at"] == first.loc["2024/a.avi", "scored_at"]
    assert (second.loc["broken.mkv", "status"], second.loc["broken.mkv", "attempts"]) == ("failed_permanently", 2)
    assert {p.name: p.stat().st_mtime_ns for p in (output / "windows").iterdir()} == windows_files  # untouched
    assert "0 new, 1 rescored, 0 reused, 2 skipped, 1 failed, 1 permanently failed" in capsys.readouterr().out

    assert score.run(argv) == 0  # nothing changed: nothing described, and no failure is new
    assert len(described) == 2
    assert "0 new, 0 rescored, 0 reused, 2 skipped, 0 failed, 1 permanently failed" in capsys.readouterr().out

    stat = happy.stat()
    os.utime(happy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file was replaced
    broken.unlink()
    assert score.run(argv) == 0
    assert described[-1] == ["2024/a.avi"]
    third = latest_view(output)
    assert sorted(third.index) == ["2024/05/b.mp4", "2024/a.avi"]
    assert third.loc["2024/a.avi", "mtime_ns"] == stat.st_mtime_ns + 10**9
    assert third.loc["2024/05/b.mp4", "scored_at"] == first.loc["2024/05/b.mp4", "scored_at"]
    assert "1 removed" in capsys.readouterr().out
    latest_windows = windows_view(output).groupby("key").run_id.unique().map(list).to_dict()
    assert latest_windows == {"2024/05/b.mp4": list(first.run_id[["2024/05/b.mp4"]]),
                              "2024/a.avi": list(third.run_id[["2024/a.avi"]])}  # only the changed video's
    track_runs = tracks_view(output).groupby("key").run_id.first().to_dict()
    assert track_runs == third.run_id[["2024/05/b.mp4", "2024/a.avi"]].to_dict()

    window_history = pd.read_parquet(output / "windows_history")  # every run's window rows
    assert window_history.groupby("key").size().to_dict() == {"2024/05/b.mp4": 2, "2024/a.avi": 4}
    history = pd.read_parquet(output / "scores")  # every run's rows, none rewritten
    assert sorted(history.groupby("key").size().items()) == [("2024/05/b.mp4", 1), ("2024/a.avi", 2),
                                                              ("broken.mkv", 2)]
    assert history["run"].nunique() == 3  # the unchanged night scored nothing and added no rows
    runs = sorted((output / "scores").iterdir())
    assert len(runs) == 4 and all((r / "_manifest.json").exists() for r in runs)
    assert json.loads((output / "_lock.json").read_text())["released"] is True  # the last run let it go


def test_scores_made_on_the_workers_equal_a_batch_prediction_on_the_extracted_table(model: Path,
                                                                                      tmp_path: Path) -> None:
    """What the job predicted on the driver before (extract, load the table, predict) is what it writes now."""
    archive, output, features = tmp_path / "archive", tmp_path / "scores", tmp_path / "features"
    _archive(archive)
    (archive / "broken.mkv").unlink()
    assert score.run(["--model", str(model), "--input", str(archive), "--output", str(output)]) == 0
    assert extract.run(["--dataset", "folder", "--data-root", str(archive), "--frame-step", "10",
                        "--output", str(features)]) == 0
    descriptors, trained = load_descriptors(features), load_model(model)
    usable = (descriptors.status == "ok") & descriptors.has_face
    labels, scores = predict_clips(trained.pipeline, trained.provenance.classes, descriptors.X, usable)
    latest = latest_view(output)
    latest.index = [Path(k).stem for k in latest.index]  # the folder table's clip ids are file stems
    latest = latest.loc[list(descriptors.clip_ids)]
    assert latest["predicted_label"].tolist() == labels.tolist()
    for name, values in scores.items():
        np.testing.assert_allclose(latest[f"score_{name}"].to_numpy(), values, rtol=1e-6)


def test_the_same_archive_under_another_mount_is_recognised(model: Path, tmp_path: Path,
                                                            described: list[list[str]]) -> None:
    archive, output = tmp_path / "archive", tmp_path / "scores"
    _archive(archive)
    (archive / "broken.mkv").unlink()
    assert score.run(["--model", str(model), "--input", str(archive), "--output", str(output)]) == 0
    moved = tmp_path / "mnt" / "videos"
    moved.parent.mkdir()
    shutil.copytree(archive, moved, copy_function=shutil.copy2)  # same sizes and modification times
    assert score.run(["--model", str(model), "--input", str(moved), "--output", str(output)]) == 0
    assert len(described) == 1


def test_a_second_run_on_a_locked_output_exits_3_at_once(model: Path, tmp_path: Path, described: list[list[str]],
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "scores"
    holder = run_lock.acquire(str(output), "the-first-run")  # held by this (live) process
    listed: list[str] = []
    monkeypatch.setattr(night_plan.storage, "list_files", lambda root, *a: listed.append(root) or [])
    assert score.run(["--model", str(model), "--input", str(HAPPY.parent), "--output", str(output)]) == 3
    assert listed == [] and described == [] and not (output / "scores").exists()  # refused before any work
    err = capsys.readouterr().err
    assert "another run the-first-run (pid" in err and "Traceback" not in err
    holder.release()


def _edited_model(model: Path, folder: Path, **changes: object) -> Path:
    shutil.copytree(model, folder)
    data = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**data, **changes}))
    return folder


@pytest.mark.parametrize("changes, message", [
    ({"weights_sha256": "00" * 32}, "weights_sha256"),
    ({"featurizer": "enet_b0_7"}, "featurizer"),
    ({"featurizer": "no_such_featurizer"}, "unknown featurizer"),
])
def test_a_model_of_another_featurizer_is_refused(model: Path, tmp_path: Path, changes: dict, message: str,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(model / "model.skops", weights / "enet_b0_7.pt")  # any file: its checksum is what differs
    monkeypatch.setenv("EMOTIW_WEIGHTS_DIR", str(weights))
    edited = _edited_model(model, tmp_path / "model", **changes)
    output = tmp_path / "scores"
    assert score.run(["--model", str(edited), "--input", str(HAPPY.parent), "--output", str(output)]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_a_model_trained_on_descriptors_of_other_library_versions_is_used_with_a_warning(
        model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    described = json.loads((model / "model.json").read_text())["descriptor_provenance"]
    assert described["featurizer_backend"] == "openvino" and described["libraries"]["pillow"]
    older = {**described, "libraries": {**described["libraries"], "pillow": "11.0.0"}}
    edited = _edited_model(model, tmp_path / "model", descriptor_provenance=older)
    with caplog.at_level("WARNING"):
        code = score.run(["--model", str(edited), "--input", str(HAPPY.parent), "--output", str(tmp_path / "s")])
    assert code == 0 and len(latest_view(tmp_path / "s")) == 1
    assert f"pillow 11.0.0 -> {described['libraries']['pillow']}" in caplog.text


def test_weights_other_than_the_models_are_refused(model: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.pt"
    other.write_bytes(b"other weights")
    argv = ["--model", str(model), "--input", str(HAPPY.parent), "--output", str(tmp_path / "s"),
            "--weights", str(other)]
    assert score.run(argv) == 2
    err = capsys.readouterr().err
    assert "weights_sha256" in err and "--weights" in err


def test_a_missing_or_empty_archive_is_a_usage_error(model: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    for missing in (tmp_path / "absent", tmp_path):
        assert score.run(["--model", str(model), "--input", str(missing), "--output", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "no videos under" in err


_IDLE_NIGHT = """
import json, sys
from jobs import score
code = score.run(sys.argv[1:])
heavy = sorted(m for m in ("torch", "apache_beam", "sklearn", "skops", "openvino", "timm", "av") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


def test_a_night_with_nothing_new_loads_no_model_network_or_beam_and_writes_only_its_manifest(
        model: Path, tmp_path: Path) -> None:
    archive, output = tmp_path / "archive", tmp_path / "scores"
    archive.mkdir()
    shutil.copy(HAPPY, archive / "a.avi")
    argv = ["--model", str(model), "--input", str(archive), "--output", str(output)]
    assert score.run(argv) == 0
    latest_before = {p: p.stat().st_mtime_ns for p in (output / "latest").rglob("*")}
    done = subprocess.run([sys.executable, "-c", _IDLE_NIGHT, *argv], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}, done.stderr
    assert "0 new, 0 rescored, 0 reused, 1 skipped" in done.stdout
    assert {p: p.stat().st_mtime_ns for p in (output / "latest").rglob("*")} == latest_before
    idle_run = sorted(output.glob("scores/run=*"))[-1]
    assert sorted(p.name for p in idle_run.iterdir()) == ["_manifest.json"]
    assert json.loads((idle_run / "_manifest.json").read_text())["counts"]["skipped"] == 1
    run_lock.acquire(str(output), "the-next-run").release()  # and the lock was released


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_a_lock_stale_time_that_is_not_a_positive_number_is_a_usage_error(value: str, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--model", str(tmp_path / "no-model"), "--input", str(HAPPY.parent), "--output", str(tmp_path / "s"),
            "--lock-stale-minutes", value]
    assert score.run(argv) == 2  # checked before the model is even read
    assert f"--lock-stale-minutes must be a positive number, got {float(value)}" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("flags, message", [
    (["--adaptive", "9,18,1"], "--adaptive steps must decrease"),
    (["--adaptive", "18,x"], "--adaptive must be comma-separated frame steps"),
    (["--adaptive", "18,9,1", "--adaptive-threshold", "-1"], "--adaptive-threshold must be a finite margin >= 0"),
    (["--adaptive-threshold", "0.5"], "--adaptive-threshold applies to adaptive scoring only"),
])
def test_malformed_adaptive_flags_are_a_usage_error_before_the_model_is_read(
        flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--model", str(tmp_path / "no-model"), "--input", str(HAPPY.parent), "--output", str(tmp_path / "s")]
    assert score.run(argv + flags) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_adaptive_scoring_records_each_windows_step_and_frames_and_densified_equals_exact(
        model: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copy(HAPPY, archive / "a.avi")  # 2 s at 25 fps; the model samples every 10th frame: 0, 10, ..., 40

    def run(name: str, *flags: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        output = tmp_path / name
        assert score.run(["--model", str(model), "--input", str(archive), "--output", str(output),
                          "--window-seconds", "1", *flags]) == 0
        return latest_view(output), windows_view(output)

    exact, exact_windows = run("exact")
    assert exact.frame_step.isna().all() and exact_windows.n_frames_available.isna().all()  # exact: no adaptive
    # Threshold 0: every window with a face is done on the coarse grid, every 2nd sampled frame (0, 20 | 40).
    coarse, coarse_windows = run("coarse", "--adaptive", "2,1", "--adaptive-threshold", "0")
    assert coarse_windows.frame_step.tolist() == [2, 2]
    assert coarse_windows.n_frames.tolist() == [2, 1] and coarse_windows.n_frames_available.tolist() == [3, 2]
    assert (coarse.loc["a.avi", "frame_step"], coarse.loc["a.avi", "n_frames"],
            coarse.loc["a.avi", "n_frames_available"]) == (2, 3, 5)
    assert coarse.loc["a.avi", "predicted_label"] == "Happy"
    provenance = read_provenance(pq.read_schema(next((tmp_path / "coarse" / "windows").glob("*.parquet"))))
    assert provenance["adaptive"] == {"schedule": [2, 1], "threshold": 0.0}
    # A threshold no margin reaches: every window ends on every frame, and scores as exact mode does.
    dense, dense_windows = run("dense", "--adaptive", "2,1", "--adaptive-threshold", "1e9")
    assert dense_windows.frame_step.tolist() == [1, 1]
    assert dense_windows.n_frames.tolist() == exact_windows.n_frames.tolist() == [3, 2]
    assert dense_windows.predicted_label.tolist() == exact_windows.predicted_label.tolist()
    for column in ("score_Happy", "score_Neutral"):
        np.testing.assert_allclose(dense_windows[column], exact_windows[column], rtol=1e-5)
        np.testing.assert_allclose(dense[column], exact[column], rtol=1e-5)


def test_videos_split_into_segments_are_scored_as_when_whole(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Split clips take the other branch of the graph (grouped, merged, then scored): same rows."""
    root = tmp_path / "afew"
    for clip in (HAPPY, NEUTRAL):
        target = root / "Train_AFEW" / clip.parent.name / clip.name
        target.parent.mkdir(parents=True)
        shutil.copy(clip, target)
    assert extract.run(["--dataset", "afew", "--data-root", str(root), "--output", str(tmp_path / "f")]) == 0
    assert train.run(["--features", str(tmp_path / "f"), "--output", str(tmp_path / "m")]) == 0
    argv = ["--model", str(tmp_path / "m"), "--input", str(root), "--window-seconds", "1"]  # [1, 2) spans frame 32
    assert score.run([*argv, "--output", str(tmp_path / "whole"), "--segment-frames", "0"]) == 0
    with caplog.at_level(logging.INFO, logger="pipelines.graph.describe_steps"):
        assert score.run([*argv, "--output", str(tmp_path / "split"), "--segment-frames", "32"]) == 0
    assert caplog.text.count("50 frames in 2 segments") == 2  # both 50-frame clips were split
    whole, split = latest_view(tmp_path / "whole"), latest_view(tmp_path / "split")
    columns = ["status", "predicted_label", "n_frames", "n_faces"]
    assert split[columns].equals(whole[columns]) and (split.n_frames == 50).all()
    for name in ("score_Happy", "score_Neutral"):
        np.testing.assert_allclose(split[name].to_numpy(), whole[name].to_numpy(), rtol=1e-6)
    for read in (windows_view, tracks_view):  # windows cut by a segment boundary merged exactly; tracks stitched
        a, b = read(tmp_path / "whole"), read(tmp_path / "split")
        assert len(a) == (4 if read is windows_view else 2)
        same = [c for c in a.columns if c not in ("scored_at", "run_id") and not c.startswith("score_")]
        assert a[same].equals(b[same])
        np.testing.assert_allclose(a.score_Happy, b.score_Happy, rtol=1e-5)


def _without_frame_rate(path: Path, source: Path) -> Path:
    """The frames of ``source`` as VP8 in an IVF container: a real video whose stream states no frame rate."""
    import av

    from featurizers.decoding.decode import iter_frame_chunks

    frames = [frame for chunk in iter_frame_chunks(source) for frame in chunk.frames]
    with av.open(str(path), "w", format="ivf") as container:
        stream = container.add_stream("libvpx", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    with av.open(str(path)) as check:
        assert check.streams.video[0].average_rate is None
    return path


def test_faceless_windows_have_no_scores_and_a_video_without_a_frame_rate_gets_a_window_error_row(
        model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs import report

    archive, output = tmp_path / "archive", tmp_path / "scores"
    archive.mkdir()
    shutil.copy(HAPPY, archive / "a.avi")
    shutil.copy(SAMPLES / "afew" / "Val_AFEW" / "Angry" / "000006006.avi", archive / "nobody.avi")
    _without_frame_rate(archive / "no_rate.webm", HAPPY)  # FFmpeg reads the IVF inside whatever the name
    argv = ["--model", str(model), "--input", str(archive), "--output", str(output), "--window-seconds", "0.5"]
    for flag, value in (("--window-seconds", "-1"), ("--min-track-seconds", "-1")):
        assert score.run([*argv, flag, value]) == 2
        assert f"{flag} must be a number of seconds >= 0" in capsys.readouterr().err
    assert not output.exists()

    assert score.run(argv) == 0  # the video is described and scored; only its windows cannot be placed in time
    latest, windows, tracks = latest_view(output), windows_view(output), tracks_view(output)
    assert latest.loc["no_rate.webm", "status"] == "ok" and latest.loc["no_rate.webm", "predicted_label"] == "Happy"
    (error_row,) = windows[windows.key == "no_rate.webm"].itertuples()
    assert pd.isna(error_row.start_s) and pd.isna(error_row.predicted_label) and not error_row.has_face
    assert "FrameRateError" in error_row.error and "no usable frame rate" in error_row.error
    nobody = windows[windows.key == "nobody.avi"]
    assert len(nobody) == 4 and not nobody.has_face.any() and nobody.predicted_label.isna().all()
    assert nobody[[c for c in windows.columns if c.startswith("score_")]].isna().all().all()
    assert windows[windows.key == "a.avi"].start_s.tolist() == [0.0, 0.5, 1.0, 1.5]
    assert tracks.key.tolist() == ["a.avi"]  # a track needs times; the faceless video has none

    assert report.run(["--scores", str(output), "--output", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert page.count('<section class="video"') == 3 and "no usable frame rate" in page
