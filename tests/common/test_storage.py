"""Local folders and a real S3 server (moto on 127.0.0.1) through the same functions; the run lock on both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from common import storage
from pipelines.extraction.datasets import VIDEO_EXTENSIONS
from pipelines.scoring import run_lock


def _put(bucket: str, key: str, data: bytes) -> None:
    boto3.client("s3").put_object(Bucket=bucket.removeprefix("s3://"), Key=key, Body=data)


def test_listing_a_bucket_gives_keys_relative_to_the_prefix_with_size_and_mtime(bucket: str) -> None:
    for key, data in [("in/2024/a.mp4", b"12345"), ("in/b.AVI", b"1"), ("in/notes.txt", b"x"),
                      ("in/.hidden/c.mp4", b"x"), ("other/d.mp4", b"x")]:
        _put(bucket, key, data)
    before = time.time_ns()
    files = storage.list_files(f"{bucket}/in", VIDEO_EXTENSIONS)
    assert [(f.key, f.url, f.size_bytes) for f in files] == [
        ("2024/a.mp4", f"{bucket}/in/2024/a.mp4", 5), ("b.AVI", f"{bucket}/in/b.AVI", 1)]
    assert all(abs(f.mtime_ns - before) < 120 * 10**9 for f in files)  # the server's Last-Modified
    with pytest.raises(FileNotFoundError, match="no such bucket or prefix"):
        storage.list_files(f"{bucket}/nothing-here", VIDEO_EXTENSIONS)


def test_listing_a_folder_matches_the_bucket_keys(tmp_path: Path) -> None:
    (tmp_path / "2024").mkdir()
    (tmp_path / "2024" / "a.mp4").write_bytes(b"12345")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.mp4").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    files = storage.list_files(tmp_path, VIDEO_EXTENSIONS)
    assert [(f.key, f.size_bytes, f.mtime_ns) for f in files] == [
        ("2024/a.mp4", 5, (tmp_path / "2024" / "a.mp4").stat().st_mtime_ns)]
    assert storage.list_files(tmp_path / "2024" / "a.mp4", VIDEO_EXTENSIONS)[0].key == "a.mp4"


def test_a_remote_video_is_copied_to_the_temp_folder_and_deleted_after(bucket: str) -> None:
    data = os.urandom(3 * storage.COPY_BLOCK_BYTES // 2)  # more than one streamed block
    _put(bucket, "in/v.mp4", data)
    with storage.local_copy(f"{bucket}/in/v.mp4") as path:
        assert Path(path).read_bytes() == data and path.endswith(".mp4")
    assert not Path(path).exists()
    with pytest.raises(RuntimeError), storage.local_copy(f"{bucket}/in/v.mp4") as path:
        raise RuntimeError("decoding failed")
    assert not Path(path).exists()
    local = Path(path).parent / "kept.mp4"
    local.write_bytes(b"x")
    with storage.local_copy(str(local)) as same:
        assert same == str(local)
    assert local.exists()  # a local video is used in place, never deleted
    local.unlink()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_an_exclusive_write_fails_when_the_file_exists(where: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    base = str(tmp_path) if where == "local" else request.getfixturevalue("bucket")
    url = storage.join(base, "out", "_lock.json")
    storage.write_bytes(url, b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        storage.write_bytes(url, b"second", exclusive=True)
    assert storage.read_bytes(url) == b"first"
    storage.write_bytes(url, b"third")
    assert storage.read_bytes(url) == b"third"
    storage.remove(url)
    storage.remove(url)  # already gone: fine
    assert not storage.exists(url)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_second_run_is_refused_while_the_first_holds_the_lock(where: str, tmp_path: Path,
                                                                request: pytest.FixtureRequest) -> None:
    output = str(tmp_path) if where == "local" else request.getfixturevalue("bucket") + "/scores"
    lock = run_lock.acquire(output, "run-1")
    with pytest.raises(run_lock.LockHeld, match="run-1"):
        run_lock.acquire(output, "run-2")
    lock.release()
    run_lock.acquire(output, "run-3").release()
    assert not storage.exists(storage.join(output, run_lock.LOCK_FILE))


def _write_lock(output: str, **owner: object) -> None:
    storage.write_bytes(storage.join(output, run_lock.LOCK_FILE), json.dumps(owner).encode())


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_lock_of_a_dead_process_or_too_old_is_taken_over_with_a_warning(where: str, tmp_path: Path,
                                                                         request: pytest.FixtureRequest,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    output = str(tmp_path) if where == "local" else request.getfixturevalue("bucket") + "/scores"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    _write_lock(output, run_id="dead", host=socket.gethostname(), pid=dead.pid, started_unix=time.time())
    run_lock.acquire(output, "run-2").release()
    _write_lock(output, run_id="old", host="elsewhere", pid=1, started_unix=time.time() - 7200)
    with pytest.raises(run_lock.LockHeld):  # another host: only its age can tell, and 2 h < 3 h
        run_lock.acquire(output, "run-3", timeout_s=3 * 3600)
    run_lock.acquire(output, "run-4", timeout_s=3600).release()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("process" in w and "is gone" in w for w in warnings)
    assert any("2.0 h old" in w for w in warnings)


def test_staleness_rules() -> None:
    alive = {"host": "h", "pid": os.getpid(), "started_unix": 1000.0}
    assert run_lock.stale_reason(alive, now=1010.0, timeout_s=60, host="h") is None
    assert "old" in run_lock.stale_reason(alive, now=2000.0, timeout_s=60, host="h")
    assert run_lock.stale_reason({}, now=0.0, timeout_s=60, host="h") == "the lock file is unreadable"
