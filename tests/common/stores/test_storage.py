"""Local folders, a real S3 server (moto) and a real GCS emulator (fake-gcs-server), on 127.0.0.1, through the same functions."""

from __future__ import annotations

import os
import time
from pathlib import Path

import boto3
import fsspec
import pytest

from common.stores import storage
from pipelines.extraction.datasets import VIDEO_EXTENSIONS


def _bucket(where: str, request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue({"s3": "bucket", "gs": "gcs_bucket"}[where])


def _put(bucket: str, key: str, data: bytes) -> None:
    """Upload with the store's own client, not through the functions under test."""
    name = bucket.split("://", 1)[1]
    if bucket.startswith("s3://"):
        boto3.client("s3").put_object(Bucket=name, Key=key, Body=data)
    else:
        fsspec.filesystem("gs").pipe_file(f"{name}/{key}", data)


@pytest.mark.parametrize("where", ["s3", "gs"])
def test_listing_a_bucket_gives_keys_relative_to_the_prefix_with_size_and_mtime(
        where: str, request: pytest.FixtureRequest) -> None:
    bucket = _bucket(where, request)
    for key, data in [("in/2024/a.mp4", b"12345"), ("in/b.AVI", b"1"), ("in/notes.txt", b"x"),
                      ("in/.hidden/c.mp4", b"x"), ("other/d.mp4", b"x")]:
        _put(bucket, key, data)
    before = time.time_ns()
    files = storage.list_files(f"{bucket}/in", VIDEO_EXTENSIONS)
    assert [(f.key, f.url, f.size_bytes) for f in files] == [
        ("2024/a.mp4", f"{bucket}/in/2024/a.mp4", 5), ("b.AVI", f"{bucket}/in/b.AVI", 1)]
    assert all(abs(f.mtime_ns - before) < 120 * 10**9 for f in files)  # the server's Last-Modified / updated
    assert storage.list_dir(f"{bucket}/in") == [".hidden", "2024", "b.AVI", "notes.txt"]
    assert storage.glob_files(f"{bucket}/in", "*.txt") == [f"{bucket}/in/notes.txt"]
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


@pytest.mark.parametrize("where", ["s3", "gs"])
def test_a_remote_video_is_copied_to_the_temp_folder_and_deleted_after(where: str,
                                                                       request: pytest.FixtureRequest) -> None:
    bucket = _bucket(where, request)
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


@pytest.mark.parametrize("where", ["local", "s3", "gs"])
def test_an_exclusive_write_fails_when_the_file_exists(where: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    base = str(tmp_path) if where == "local" else _bucket(where, request)
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
