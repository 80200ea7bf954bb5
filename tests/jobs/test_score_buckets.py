"""Scoring an archive in a bucket into the bucket, and extraction tables written to buckets (S3 and GCS)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import boto3
import fsspec
import pandas as pd
import pytest
from scoring_helpers import HAPPY, NEUTRAL

from common.tables.shards import written_at
from jobs import extract, score

pytestmark = pytest.mark.slow


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
    assert latest.loc["2024/a.avi", "predicted_label"] == "Happy"
    assert latest.loc["b.avi", "predicted_label"] == "Neutral"
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


