"""End to end: train on two sample clips, then score an archive folder night after night."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from videos import SAMPLES

from classifiers.descriptors import load_descriptors
from classifiers.model_io import load_model
from classifiers.scoring import SCORING_KEY, predict_clips
from common.tables.schema import read_provenance
from common.tables.shards import written_at
from jobs import extract, score, train
from pipelines.graph.scoring_steps import run_scoring_pipeline
from pipelines.scoring import night_plan, run_lock, scoring_run

pytestmark = pytest.mark.slow
HAPPY = SAMPLES / "afew" / "Train_AFEW" / "Happy" / "000001001.avi"
NEUTRAL = SAMPLES / "afew" / "Train_AFEW" / "Neutral" / "000002002.avi"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LinearSVC trained on the descriptors of one Happy and one Neutral sample clip (frame step 10)."""
    root = tmp_path_factory.mktemp("afew")
    for clip in (HAPPY, NEUTRAL):
        target = root / "Train_AFEW" / clip.parent.name / clip.name
        target.parent.mkdir(parents=True)
        shutil.copy(clip, target)
    features, folder = root / "features", root / "model"
    assert extract.run(["--dataset", "afew", "--data-root", str(root), "--frame-step", "10",
                        "--output", str(features)]) == 0
    assert train.run(["--features", str(features), "--output", str(folder)]) == 0
    return folder


@pytest.fixture
def described(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The keys each run of the job sent to the Beam pipeline, one sorted list per call."""
    calls: list[list[str]] = []

    def spy(refs, *args, **kwargs):
        calls.append(sorted(r.clip_id for r in refs))
        return run_scoring_pipeline(refs, *args, **kwargs)

    monkeypatch.setattr(scoring_run, "run_scoring_pipeline", spy)
    return calls


def _latest(output: Path) -> pd.DataFrame:
    latest = pd.read_parquet(output / "latest")
    assert latest.key.is_unique
    return latest.set_index("key")


def _windows(output: Path) -> pd.DataFrame:
    return pd.read_parquet(output / "windows").sort_values(["key", "start_s"]).reset_index(drop=True)


def _tracks(output: Path) -> pd.DataFrame:
    return pd.read_parquet(output / "tracks").sort_values(["key", "track_id"]).reset_index(drop=True)


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
    first = _latest(output)
    windows, tracks = _windows(output), _tracks(output)
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
    second = _latest(output)
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
    third = _latest(output)
    assert sorted(third.index) == ["2024/05/b.mp4", "2024/a.avi"]
    assert third.loc["2024/a.avi", "mtime_ns"] == stat.st_mtime_ns + 10**9
    assert third.loc["2024/05/b.mp4", "scored_at"] == first.loc["2024/05/b.mp4", "scored_at"]
    assert "1 removed" in capsys.readouterr().out
    latest_windows = _windows(output).groupby("key").run_id.unique().map(list).to_dict()
    assert latest_windows == {"2024/05/b.mp4": list(first.run_id[["2024/05/b.mp4"]]),
                              "2024/a.avi": list(third.run_id[["2024/a.avi"]])}  # only the changed video's
    assert _tracks(output).groupby("key").run_id.first().to_dict() == third.run_id[["2024/05/b.mp4", "2024/a.avi"]] \
        .to_dict()

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
    latest = _latest(output)
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
    assert code == 0 and len(_latest(tmp_path / "s")) == 1
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


COMMIT_KILL_POINTS = ("commit.intent_written", "commit.history_written", "commit.latest_file@1",
                      "commit.timeline_file@2", "commit.before_manifest")
"""Where a commit is killed in turn: once its intent is whole, then at each step of writing what the
intent names. (Killed before its intent is whole, a run is one killed midway: the next run adopts its
staged rows, as above; tests/pipelines/scoring/test_commit_intent.py checks that such an intent is ignored.)"""


def test_a_run_killed_midway_is_resumed_without_describing_its_finished_clips_again(
        model: Path, tmp_path: Path, described: list[list[str]], caplog: pytest.LogCaptureFixture) -> None:
    archive, output = tmp_path / "archive", tmp_path / "scores"
    archive.mkdir()
    n_clips = 8  # killed after 2 staged clips: some are left to describe after it
    for i in range(n_clips):
        shutil.copy((HAPPY, NEUTRAL)[i % 2], archive / f"{i:02d}.avi")
    argv = ["--model", str(model), "--input", str(archive), "--output", str(output)]
    job = subprocess.Popen([sys.executable, "-m", "jobs.score", *argv, "--flush-clips", "1"],
                           cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while len(list(output.glob("scores/run=*/_staged/part-*.parquet"))) < 2:
            assert job.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "the job wrote no staged rows in time"
            time.sleep(0.05)
        job.send_signal(signal.SIGKILL)
    finally:
        job.kill()
        job.wait()
    assert job.returncode == -signal.SIGKILL
    killed_run = next(output.glob("scores/run=*"))
    finished = set(pd.read_parquet(killed_run / "_staged")["key"])
    assert 2 <= len(finished) < n_clips and (output / "_lock.json").exists()
    assert not (killed_run / "_manifest.json").exists() and not (output / "latest").exists()

    caplog.set_level(logging.INFO)
    assert score.run(argv) == 0
    assert described == [sorted({f"{i:02d}.avi" for i in range(n_clips)} - finished)]  # nothing described twice
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"reused {len(finished)} clips they had finished" in m for m in messages)
    assert any("took over the lock" in m and "is gone" in m for m in messages)
    latest = _latest(output)  # one row per video: nothing lost, nothing twice
    assert len(latest) == n_clips and (latest.status == "ok").all()
    assert set(latest.index[latest.run_id == killed_run.name.removeprefix("run=")]) == finished
    for table in (_windows(output), _tracks(output)):  # one window (2 s clips, 10 s windows) and one track each,
        assert table.key.is_unique and len(table) == n_clips  # from the run that scored the video's latest row
        assert (table.set_index("key").run_id == latest.run_id[table.key]).all()
    assert latest.loc["00.avi", "predicted_label"] == "Happy" and latest.loc["01.avi", "predicted_label"] == "Neutral"
    assert score.run(argv) == 0 and len(described) == 1  # the next night finds everything done

    # Killed at each step of a commit in turn (SIGKILL at a fail point), each run finishing what the
    # one before began: the latest view always has one row per video, and no history row is written twice.
    for clip in ("00.avi", "01.avi"):  # replaced files: scored again by the first of these runs
        stat = (archive / clip).stat()
        os.utime(archive / clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    for point in COMMIT_KILL_POINTS:
        killed = subprocess.run([sys.executable, "-m", "jobs.score", *argv], cwd=Path(__file__).resolve().parents[2],
                                env={**os.environ, "EMOTIW_FAIL_POINT": point}, capture_output=True, text=True,
                                timeout=300)
        assert killed.returncode == -signal.SIGKILL and f"fail point {point}" in killed.stderr, killed.stderr[-3000:]
        assert len(_latest(output)) == n_clips, point
    rescoring = sorted(output.glob("scores/run=*"))[-1]  # the others were killed before they planned
    assert (rescoring / "_commit.json").exists() and not (rescoring / "_manifest.json").exists()
    caplog.clear()
    assert score.run(argv) == 0 and len(described) == 1  # finishes the commit, then nothing is left to do
    run_id = rescoring.name.removeprefix("run=")
    assert any(f"run {run_id} was killed during its commit" in r.getMessage() for r in caplog.records)
    latest = _latest(output)
    assert len(latest) == n_clips and set(latest.index[latest.run_id == run_id]) == {"00.avi", "01.avi"}
    history = pd.read_parquet(output / "scores")
    assert not history.duplicated(["key", "run_id"]).any() and len(history) == n_clips + 2
    for table, columns in (("windows", ["key", "start_s", "run_id"]), ("tracks", ["key", "track_id", "run_id"])):
        rows = pd.read_parquet(output / f"{table}_history")
        assert not rows.duplicated(columns).any() and len(rows) == n_clips + 2, table


def test_a_run_whose_lock_is_taken_over_while_it_scores_stops_before_its_commit_with_exit_3(
        model: Path, tmp_path: Path) -> None:
    """A run paused (SIGSTOP) past the stale time is taken over; resumed, it must not commit."""
    archive, output = tmp_path / "archive", tmp_path / "scores"
    archive.mkdir()
    for i in range(4):
        shutil.copy((HAPPY, NEUTRAL)[i % 2], archive / f"{i:02d}.avi")
    log_file = tmp_path / "job.log"  # a file, not a pipe: the job's log must never block it
    with log_file.open("w") as log:
        job = subprocess.Popen([sys.executable, "-m", "jobs.score", "--model", str(model), "--input", str(archive),
                                "--output", str(output), "--flush-clips", "1", "--lock-stale-minutes", "0.02"],
                               cwd=Path(__file__).resolve().parents[2], stdout=log, stderr=log)
    deadline = time.monotonic() + 300
    try:
        while len(list(output.glob("scores/run=*/_staged/part-*.parquet"))) < 2:
            assert job.poll() is None, "the job ended before it could be paused"
            assert time.monotonic() < deadline, "the job wrote no staged rows in time"
            time.sleep(0.05)
        job.send_signal(signal.SIGSTOP)
        time.sleep(1.6)  # past its 1.2 s stale time: its heartbeat has stopped
        taker = run_lock.acquire(str(output), "the-taker", stale_s=1.2)
        job.send_signal(signal.SIGCONT)
        assert job.wait(timeout=300) == 3
    finally:
        job.kill()
        job.wait()
    err = log_file.read_text()
    assert "taken over by run the-taker" in err and "stopped before its commit" in err
    assert not (output / "latest").exists() and not list(output.glob("scores/run=*/_manifest.json"))
    assert list(output.glob("scores/run=*/_staged/part-*.parquet"))  # its rows stay for the next run
    lock = json.loads((output / "_lock.json").read_text())
    assert lock["run_id"] == "the-taker" and "released" not in lock  # the stopped run left it alone
    taker.release()


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
        return _latest(output), _windows(output)

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


def _upload(bucket: str, key: str, source: Path | bytes) -> None:
    """With the store's own client, not through the job's storage functions."""
    body = source if isinstance(source, bytes) else source.read_bytes()
    name = bucket.split("://", 1)[1]
    if bucket.startswith("s3://"):
        boto3.client("s3").put_object(Bucket=name, Key=key, Body=body)
    else:
        fsspec.filesystem("gs").pipe_file(f"{name}/{key}", body)


def _keys(bucket: str, prefix: str) -> list[str]:
    name = bucket.split("://", 1)[1]
    if bucket.startswith("s3://"):
        listed = boto3.client("s3").list_objects_v2(Bucket=name, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))
    found = fsspec.filesystem("gs").find(f"{name}/{prefix}")
    return sorted(path.removeprefix(f"{name}/") for path in found)


@pytest.mark.parametrize("where", ["s3", "gs"])
def test_an_archive_in_a_bucket_is_scored_into_the_bucket(model: Path, where: str, tmp_path: Path,
                                                           described: list[list[str]],
                                                           request: pytest.FixtureRequest,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = request.getfixturevalue({"s3": "bucket", "gs": "gcs_bucket"}[where])
    _upload(bucket, "archive/videos/2024/a.avi", HAPPY)
    _upload(bucket, "archive/videos/b.avi", NEUTRAL)
    _upload(bucket, "archive/videos/broken.mp4", b"not a video")
    worker_tmp = tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(worker_tmp))  # where the workers stream the videos to
    argv = ["--model", str(model), "--input", f"{bucket}/archive/videos", "--output", f"{bucket}/nightly"]

    assert score.run(argv) == 1
    # pandas reads the bucket directly; through fsspec (storage_options): Arrow's own GCS client
    # ignores STORAGE_EMULATOR_HOST and would look for Google's servers
    latest = pd.read_parquet(f"{bucket}/nightly/latest", storage_options={}).set_index("key")
    assert sorted(latest.index) == ["2024/a.avi", "b.avi", "broken.mp4"]
    assert latest.loc["2024/a.avi", "path"] == f"{bucket}/archive/videos/2024/a.avi"
    assert latest.loc["2024/a.avi", "predicted_label"] == "Happy" and latest.loc["b.avi", "predicted_label"] == "Neutral"
    assert latest.loc["b.avi", "size_bytes"] == NEUTRAL.stat().st_size
    assert "cannot open as a video" in latest.loc["broken.mp4", "error"]
    assert list(worker_tmp.iterdir()) == []  # every downloaded video deleted after its clip
    objects = _keys(bucket, "nightly/")
    assert any(k.endswith("/_manifest.json") for k in objects)
    with fsspec.open(f"{bucket}/nightly/_lock.json", "rb") as lock:
        assert json.load(lock)["released"] is True  # the run let it go

    # Only the broken video is tried again, until --max-attempts (3) gives up on it.
    assert score.run(argv) == 1 and described[-1] == ["broken.mp4"]
    assert score.run(argv) == 1 and described[-1] == ["broken.mp4"]
    assert score.run(argv) == 0 and len(described) == 3  # given up after three attempts
    final = pd.read_parquet(f"{bucket}/nightly/latest", storage_options={}).set_index("key")
    assert final.loc["broken.mp4", "status"] == "failed_permanently"


def test_extract_writes_its_table_to_a_bucket(bucket: str, gcs_bucket: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "afew"
    target = root / "Train_AFEW" / "Happy" / HAPPY.name
    target.parent.mkdir(parents=True)
    shutil.copy(HAPPY, target)
    monkeypatch.chdir(tmp_path)  # where a URL taken for a path would become a folder "s3:"
    argv = ["--dataset", "afew", "--data-root", str(root), "--frame-step", "10", "--output", f"{bucket}/features"]
    assert extract.run([*argv, "--tracks-output", "s3://no-such-bucket/x"]) == 2  # checked before the first clip
    assert "--tracks-output s3://no-such-bucket/x: there is no bucket 'no-such-bucket'" in capsys.readouterr().err
    timeline = ["--frames-output", f"{gcs_bucket}/frames", "--windows-output", f"{bucket}/windows",
                "--tracks-output", f"{gcs_bucket}/tracks", "--window-seconds", "1"]
    assert extract.run([*argv, *timeline]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afew"]
    for url, rows in ((f"{gcs_bucket}/frames", 5), (f"{bucket}/windows", 2), (f"{gcs_bucket}/tracks", 1)):
        assert fsspec.open(f"{url}/_SUCCESS").fs.exists(f"{url}/_SUCCESS")
        assert len(pd.read_parquet(url, storage_options={})) == rows, url
    first = _keys(bucket, "features")
    shard = next(k for k in first if k.endswith(".parquet"))
    first_written = written_at(f"{bucket}/{shard}")
    assert extract.run(argv) == 0  # a second run replaces the table, it does not add to it
    table = pd.read_parquet(f"{bucket}/features")
    assert table.clip_id.tolist() == [HAPPY.stem] and table.status.tolist() == ["ok"]
    assert len(table.descriptor.iloc[0]) > 0
    keys = _keys(bucket, "features")
    assert "features/_summary.json" in keys and "features/_SUCCESS" in keys and len(keys) == len(first) == 3
    assert not any(".incomplete-" in k for k in keys)
    # The same clip with the same outcome keeps its shard's name; the shard itself was written again.
    assert set(keys) == set(first) and written_at(f"{bucket}/{shard}") > first_written


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
    whole, split = _latest(tmp_path / "whole"), _latest(tmp_path / "split")
    columns = ["status", "predicted_label", "n_frames", "n_faces"]
    assert split[columns].equals(whole[columns]) and (split.n_frames == 50).all()
    for name in ("score_Happy", "score_Neutral"):
        np.testing.assert_allclose(split[name].to_numpy(), whole[name].to_numpy(), rtol=1e-6)
    for read in (_windows, _tracks):  # windows cut by a segment boundary merged exactly; tracks stitched
        a, b = read(tmp_path / "whole"), read(tmp_path / "split")
        assert len(a) == (4 if read is _windows else 2)
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
    latest, windows, tracks = _latest(output), _windows(output), _tracks(output)
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
