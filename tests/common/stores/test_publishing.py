"""Publishing whole: the atomic folder swap, a reader polling while tables are published, buckets'
``_SUCCESS`` marker, and the clean-up of what dead runs left."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import boto3
import pytest

from benchmarks.benchmark_publish_swap import publish_while_reading
from common.stores import directory_swap, storage
from common.stores.publishing import SUCCESS_FILE, publish, remove_leftovers, staging_dir


def test_exchange_swaps_two_folders_in_one_step(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("from a")
    (b / "y").write_text("from b")
    assert directory_swap.exchange(a, b)  # tmpfs and ext4 have RENAME_EXCHANGE
    assert [p.name for p in a.iterdir()] == ["y"] and [p.name for p in b.iterdir()] == ["x"]
    with pytest.raises(FileNotFoundError):
        directory_swap.exchange(a, tmp_path / "missing")  # an exchange needs both paths


def test_without_rename_exchange_the_folder_is_replaced_by_two_renames(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(directory_swap, "exchange", lambda a, b: False)  # a file system without the flag
    new, target, aside = tmp_path / "new", tmp_path / "out", tmp_path / "out.old-1"
    new.mkdir()
    target.mkdir()
    (new / "n").touch()
    (target / "o").touch()
    directory_swap.replace_directory(new, target, aside)
    assert [p.name for p in target.iterdir()] == ["n"] and [p.name for p in aside.iterdir()] == ["o"]
    assert not new.exists()


def test_a_reader_polling_while_tables_are_published_always_finds_one_whole_table(tmp_path: Path) -> None:
    output = tmp_path / "table"
    race = publish_while_reading(output, seconds=1.5)  # the reader exits non-zero on a table of two runs
    reads, missing = race["whole_reads"], race["no_table"]
    assert reads > 100 and race["publishes"] > 20
    assert missing == 0  # never a moment without the table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table"]  # no staging or aside folder left


def _age(path: Path, hours: float) -> None:
    then = time.time() - hours * 3600
    for item in [path, *path.rglob("*")]:
        os.utime(item, (then, then))


def test_leftovers_older_than_a_day_are_removed_by_the_next_run(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    output = tmp_path / "features"
    for name, hours in (("features.incomplete-dead", 30), ("features.old-dead", 25), ("features.incomplete-live", 2),
                        ("features.incompletely", 30), ("other.incomplete-x", 30)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "part-0.parquet").touch()
        _age(tmp_path / name, hours)
    (tmp_path / "features.incomplete-young-file").mkdir()  # an old folder with a file written just now
    (tmp_path / "features.incomplete-young-file" / "part-0.parquet").touch()
    _age(tmp_path / "features.incomplete-young-file", 30)
    (tmp_path / "features.incomplete-young-file" / "part-1.parquet").touch()
    caplog.set_level(logging.INFO)
    staging = staging_dir(output)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["features.incomplete-live", "features.incompletely", "other.incomplete-x",
                           "features.incomplete-young-file", Path(staging).name])
    assert sum("left by a run that did not finish" in r.getMessage() for r in caplog.records) == 2


def _bucket_keys(bucket: str, prefix: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket.removeprefix("s3://"), Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_a_bucket_table_gets_success_last_and_loses_old_files_only_after_the_new_ones(
        bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    output = f"{bucket}/features"
    first = staging_dir(output)
    for name in ("part-a", "part-b"):
        storage.write_bytes(storage.join(first, name), b"1")
    publish(first, output, {"run": 1})
    assert _bucket_keys(bucket, "features") == ["features/_SUCCESS", "features/_summary.json",
                                                "features/part-a", "features/part-b"]
    assert json.loads(storage.read_bytes(f"{output}/{SUCCESS_FILE}"))["files"] == ["_summary.json", "part-a",
                                                                                    "part-b"]
    second = staging_dir(output)
    storage.write_bytes(storage.join(second, "part-c"), b"2")
    fs, _ = storage.filesystem(output)
    seen: list[tuple[str, str, list[str]]] = []
    copy, rm_file = fs.copy, fs.rm_file

    def spy(step, real):
        def wrapped(*args, **kwargs):
            seen.append((step, str(args[0]), _bucket_keys(bucket, "features/")))
            return real(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(fs, "copy", spy("copy", copy))
    monkeypatch.setattr(fs, "rm_file", spy("rm", rm_file))
    publish(second, output)
    assert seen[0][:2] == ("rm", f"{output.removeprefix('s3://')}/_SUCCESS")  # removed first
    assert all("features/_SUCCESS" not in keys for _, _, keys in seen[1:])
    deletes = [keys for step, _, keys in seen[1:] if step == "rm"]
    assert len(deletes) == 3 and all("features/part-c" in keys for keys in deletes)  # after the new is in
    assert _bucket_keys(bucket, "features") == ["features/_SUCCESS", "features/part-c"]
    # A dead run's staging prefix older than a day is removed by the next run writing the output.
    storage.write_bytes(f"{output}.incomplete-dead/part-x", b"x")
    assert remove_leftovers(output, max_age_s=3600) == []  # written just now: it may be a live run's
    assert remove_leftovers(output, max_age_s=0) == [f"{output}.incomplete-dead"]
    assert _bucket_keys(bucket, "features.incomplete") == []
