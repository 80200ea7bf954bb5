"""Scoring runs killed (SIGKILL midway, at each step of a commit) or paused past their lock's stale time."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from scoring_helpers import HAPPY, NEUTRAL, latest_view, tracks_view, windows_view

from jobs import score
from pipelines.scoring import run_lock

pytestmark = pytest.mark.slow


COMMIT_KILL_POINTS = ("commit.intent_written", "commit.history_written", "commit.latest_file@1",
                      "commit.timeline_file@2", "commit.before_manifest")
"""Where a commit is killed in turn: once its intent is whole, then at each step of writing what the
intent names. (Killed before its intent is whole, a run is one killed midway: the next run adopts its
staged rows, as in the test below; tests/pipelines/scoring/test_commit_intent.py checks that such an intent is ignored.)"""


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
    latest = latest_view(output)  # one row per video: nothing lost, nothing twice
    assert len(latest) == n_clips and (latest.status == "ok").all()
    assert set(latest.index[latest.run_id == killed_run.name.removeprefix("run=")]) == finished
    # One window (2 s clips, 10 s windows) and one track each, from the run that scored the video's latest row.
    for table in (windows_view(output), tracks_view(output)):
        assert table.key.is_unique and len(table) == n_clips
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
        assert len(latest_view(output)) == n_clips, point
    rescoring = sorted(output.glob("scores/run=*"))[-1]  # the others were killed before they planned
    assert (rescoring / "_commit.json").exists() and not (rescoring / "_manifest.json").exists()
    caplog.clear()
    assert score.run(argv) == 0 and len(described) == 1  # finishes the commit, then nothing is left to do
    run_id = rescoring.name.removeprefix("run=")
    assert any(f"run {run_id} was killed during its commit" in r.getMessage() for r in caplog.records)
    latest = latest_view(output)
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


