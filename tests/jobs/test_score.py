"""End to end: train on two sample clips, then score an archive folder night after night."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from videos import SAMPLES
from classifiers.scoring import SCORING_KEY
from jobs import extract, score, train
from pipelines.extraction_run import run_extraction
from pipelines.schema import read_provenance

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
def extracted(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The paths each run of the job sent to extraction, one list per call."""
    calls: list[list[str]] = []

    def spy(refs, *args, **kwargs):
        calls.append(sorted(r.path for r in refs))
        return run_extraction(refs, *args, **kwargs)

    monkeypatch.setattr(score, "run_extraction", spy)
    return calls


def _scores(output: Path) -> pd.DataFrame:
    return pd.read_parquet(output / "scores.parquet").set_index("path")


def test_nightly_runs_score_only_new_changed_and_failed_videos(model: Path, tmp_path: Path,
                                                             extracted: list[list[str]],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    archive, output = tmp_path / "archive", tmp_path / "scores"
    happy, neutral, broken = archive / "2024" / "a.avi", archive / "2024" / "05" / "b.mp4", archive / "broken.mkv"
    neutral.parent.mkdir(parents=True)
    shutil.copy(HAPPY, happy)
    shutil.copy(NEUTRAL, neutral)
    broken.write_bytes(b"not a video")
    argv = ["--model", str(model), "--input", str(archive), "--output", str(output)]

    assert score.run(argv) == 1  # the broken file failed
    first = _scores(output)
    assert sorted(first.index) == sorted(map(str, (happy, neutral, broken)))
    assert first.loc[str(happy), "predicted_label"] == "Happy"  # the clips it was trained on
    assert first.loc[str(neutral), "predicted_label"] == "Neutral"
    assert [c for c in first.columns if c.startswith("score_")] == ["score_Happy", "score_Neutral"]
    assert first.loc[str(happy), "score_Happy"] > first.loc[str(happy), "score_Neutral"]
    assert (first.loc[str(broken), "status"], first.loc[str(broken), "has_face"]) == ("error", False)
    assert pd.isna(first.loc[str(broken), "predicted_label"]) and pd.isna(first.loc[str(broken), "score_Happy"])
    assert str(broken) in first.loc[str(broken), "error"]
    assert first.loc[str(happy), "size_bytes"] == happy.stat().st_size
    assert first.loc[str(happy), "mtime_ns"] == happy.stat().st_mtime_ns
    assert (first.status == "ok").sum() == 2 and (first.n_face_frames[first.status == "ok"] > 0).all()
    assert [p.name for p in output.iterdir()] == ["scores.parquet"]  # scratch descriptors cleaned up
    schema = pq.read_schema(output / "scores.parquet")
    extraction, scoring = read_provenance(schema), json.loads(schema.metadata[SCORING_KEY])
    assert extraction["frames"]["step"] == 10 and extraction["detector"]["min_face_size"] == 32  # as trained
    assert scoring["score_kind"] == "decision_function" and scoring["model_sha256"] == first.model_sha256.iloc[0]

    assert score.run(argv) == 1  # only the failed video is tried again
    assert extracted[-1] == [str(broken)]
    second = _scores(output)
    assert (second.loc[str(happy), "scored_at"] == first.loc[str(happy), "scored_at"])
    assert "3 videos: 2 already scored (skipped), 1 scored now, 1 failed" in capsys.readouterr().out

    stat = happy.stat()
    os.utime(happy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file was replaced
    broken.unlink()
    assert score.run(argv) == 0
    assert extracted[-1] == [str(happy)]
    third = _scores(output)
    assert sorted(third.index) == sorted(map(str, (happy, neutral)))
    assert third.loc[str(happy), "mtime_ns"] == stat.st_mtime_ns + 10**9
    assert third.loc[str(happy), "predicted_label"] == "Happy"
    assert third.loc[str(neutral), "scored_at"] == first.loc[str(neutral), "scored_at"]
    assert "1 rows of removed videos dropped" in capsys.readouterr().out
    assert len(extracted) == 3


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
    assert code == 0 and len(_scores(tmp_path / "s")) == 1
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
