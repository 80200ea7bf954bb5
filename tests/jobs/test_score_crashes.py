"""Scoring runs paused past their lock's stale time and taken over, and commits killed (SIGKILL) at each step."""

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

pytestmark = pytest.mark.slow


COMMIT_KILL_POINTS = ("commit.intent_written", "commit.history_written", "commit.latest_file@1",
                      "commit.timeline_file@2", "commit.before_manifest")
"""Where a commit is killed in turn: once its intent is whole, then at each step of writing what the
intent names. (Killed before its intent is whole, a run is one stopped midway: the next run adopts its
staged rows, as in the test below; tests/pipelines/scoring/test_commit_intent.py checks that such an
intent is ignored.)"""


def test_a_stalled_run_is_taken_over_without_its_clips_described_again_and_a_commit_killed_anywhere_is_finished(
        model: Path, tmp_path: Path, described: list[list[str]], caplog: pytest.LogCaptureFixture) -> None:
    """A run paused (SIGSTOP) past its stale time mid-way is taken over by the next run, which adopts the rows it
    had finished and describes only the others; resumed, the paused run learns it lost the lock and stops before
    its commit with exit 3. Then commits are killed (SIGKILL) at each of their steps in turn.
    (A holder whose process is gone is taken over without waiting: tests/pipelines/scoring/test_run_lock.py.)"""
    archive, output = tmp_path / "archive", tmp_path / "scores"
    archive.mkdir()
    n_clips = 8  # paused after 2 staged clips: some are left to describe after it
    for i in range(n_clips):
        shutil.copy((HAPPY, NEUTRAL)[i % 2], archive / f"{i:02d}.avi")
    argv = ["--model", str(model), "--input", str(archive), "--output", str(output), "--lock-stale-minutes", "0.02"]
    log_file = tmp_path / "job.log"  # a file, not a pipe: the job's log must never block it
    with log_file.open("w") as log:
        job = subprocess.Popen([sys.executable, "-m", "jobs.score", *argv, "--flush-clips", "1"],
                               cwd=Path(__file__).resolve().parents[2], stdout=log, stderr=log)
    deadline = time.monotonic() + 300
    try:
        while len(list(output.glob("scores/run=*/_staged/part-*.parquet"))) < 2:
            assert job.poll() is None, "the job ended before it could be paused"
            assert time.monotonic() < deadline, "the job wrote no staged rows in time"
            time.sleep(0.05)
        job.send_signal(signal.SIGSTOP)
        stalled_run = next(output.glob("scores/run=*"))
        finished = set(pd.read_parquet(stalled_run / "_staged")["key"])
        assert 2 <= len(finished) < n_clips
        time.sleep(1.6)  # past the 1.2 s stale time: its heartbeat has stopped

        caplog.set_level(logging.INFO)
        assert score.run(argv) == 0  # takes the lock over, adopts the paused run's rows, commits
        job.send_signal(signal.SIGCONT)
        assert job.wait(timeout=300) == 3
    finally:
        job.kill()
        job.wait()
    assert described == [sorted({f"{i:02d}.avi" for i in range(n_clips)} - finished)]  # nothing described twice
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"reused {len(finished)} clips they had finished" in m for m in messages)
    assert any("took over the lock" in m and "heartbeat" in m for m in messages)
    latest = latest_view(output)  # one row per video: nothing lost, nothing twice
    assert len(latest) == n_clips and (latest.status == "ok").all()
    assert set(latest.index[latest.run_id == stalled_run.name.removeprefix("run=")]) == finished
    taker_run = (set(latest.run_id) - {stalled_run.name.removeprefix("run=")}).pop()
    err = log_file.read_text()
    assert f"taken over by run {taker_run}" in err and "stopped before its commit" in err
    assert not (stalled_run / "_manifest.json").exists()  # the resumed run committed nothing
    lock = json.loads((output / "_lock.json").read_text())
    assert lock["run_id"] == taker_run and lock["released"]  # and left the taker's released lock alone
    # One window (2 s clips, 10 s windows) and one track each, from the run that scored the video's latest row.
    for table in (windows_view(output), tracks_view(output)):
        assert table.key.is_unique and len(table) == n_clips
        assert (table.set_index("key").run_id == latest.run_id[table.key]).all()
    assert latest.loc["00.avi", "predicted_label"] == "Happy" and latest.loc["01.avi", "predicted_label"] == "Neutral"

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
