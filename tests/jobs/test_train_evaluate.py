"""End to end: jobs.train then jobs.evaluate on descriptor tables written with the project schema."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from classifiers.model_io import load_model
from common.tables.schema import DescriptorLayout, descriptor_table_schema
from jobs import evaluate, train

CLASSES = ("Positive", "Neutral", "Negative")
LAYOUT = DescriptorLayout("vgaf", 2)  # 8 values per clip
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _provenance(featurizer: str = "synthetic_b0") -> dict[str, Any]:
    return {"project_version": "0.1.0", "featurizer": featurizer, "weights_sha256": "cd" * 32,
            "layout": LAYOUT.to_dict(), "detector": {"min_face_size": 64}, "frames": {"step": 1},
            "dataset": "vgaf", "classes": list(CLASSES)}


def _row(clip_id: str, split: str, label: str | None, descriptor: np.ndarray | None,
         status: str | None = None) -> dict[str, Any]:
    has_face = descriptor is not None
    return {"clip_id": clip_id, "path": f"{clip_id}.mp4", "dataset": "vgaf", "split": split, "label": label,
            "label_index": None if label is None else CLASSES.index(label), "n_frames": 4,
            "n_face_frames": 4 * has_face, "n_faces": 8 * has_face, "has_face": has_face,
            "descriptor": (np.zeros(LAYOUT.length) if descriptor is None else descriptor).astype(np.float32).tolist(),
            "featurizer": "synthetic_b0", "status": status or ("ok" if has_face else "faceless"),
            "error": "boom" if status == "error" else None, "max_faces_in_frame": 2 * has_face, "fps": 25.0,
            "n_segments": 1, "n_corrupt_frames": 0}


def _clips(split: str, per_class: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for k, label in enumerate(CLASSES):
        for i in range(per_class):
            x = rng.uniform(0.0, 0.2, LAYOUT.length)
            x[np.arange(LAYOUT.length) % len(CLASSES) == k] += 4.0  # signal on many coordinates
            rows.append(_row(f"{split}_{label}_{i}", split, label, x))
    return rows


# Labels of the 4 faceless val clips: no single class holds all of them.
VAL_FACELESS_LABELS = ("Negative", "Negative", "Positive", "Neutral")


def _write(path: Path, rows: list[dict[str, Any]], featurizer: str = "synthetic_b0") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = descriptor_table_schema(LAYOUT, _provenance(featurizer))
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


@pytest.fixture
def features(tmp_path: Path) -> Path:
    """A folder of two shards: train (6 per class, 2 faceless, 1 failed) and val (4 per class, 4 faceless, 1 failed)."""
    folder = tmp_path / "out" / "vgaf_synthetic"
    _write(folder / "part-0.parquet", _clips("train", 6, seed=3)
           + [_row("train_nf_0", "train", "Neutral", None), _row("train_nf_1", "train", "Positive", None),
              _row("train_err", "train", "Negative", None, status="error")])
    _write(folder / "part-1.parquet", _clips("val", 4, seed=4)
           + [_row(f"val_nf_{i}", "val", label, None) for i, label in enumerate(VAL_FACELESS_LABELS)]
           + [_row("val_err", "val", "Neutral", None, status="error")])
    return folder


def test_train_then_evaluate_writes_model_metrics_png_and_predictions(tmp_path: Path, features: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    model_dir, report_dir = tmp_path / "models" / "m", tmp_path / "reports" / "m"
    assert train.run(["--features", str(features), "--output", str(model_dir)]) == 0
    saved = json.loads((model_dir / "model.json").read_text())
    assert saved["classifier"] == "linearsvc" and saved["hyperparameters"]["C"] == 0.5  # VGAF default
    assert saved["featurizer"] == "synthetic_b0" and saved["layout"] == json.loads(json.dumps(LAYOUT.to_dict()))
    assert saved["classes"] == list(CLASSES) and saved["dataset"] == "vgaf"
    training = saved["training"]
    assert (training["rows_used"], training["faceless_dropped"], training["errors_excluded"]) == (18, 2, 1)
    assert training["per_class"] == {"Positive": 6, "Neutral": 6, "Negative": 6}
    assert saved["cross_validation"] is None and saved["libraries"]["scikit-learn"]

    assert evaluate.run(["--model", str(model_dir), "--features", str(features), "--output", str(report_dir)]) == 0
    metrics = json.loads((report_dir / "metrics.json").read_text())
    # By hand: the 12 val clips with faces are separable, so all right. The 4 faceless clips enter as
    # zero rows, which the model assigns to one fixed class; only the faceless clips carrying that
    # label count as right. The failed clip is left out.
    zero_class = CLASSES[int(load_model(model_dir).pipeline.predict(np.zeros((1, LAYOUT.length)))[0])]
    right_faceless = VAL_FACELESS_LABELS.count(zero_class)
    assert metrics["accuracy_with_faces"] == 1.0
    assert metrics["accuracy_all"] == pytest.approx((12 + right_faceless) / 16)
    assert metrics["accuracy_all"] < metrics["accuracy_with_faces"]  # no label holds all 4 faceless clips
    assert metrics["counts"] == {"rows_in_split": 17, "errors_excluded": 1, "unlabelled_excluded": 0,
                                 "evaluated": 16, "with_face": 12, "faceless": 4}
    cm = metrics["all_clips"]["confusion_matrix"]
    assert cm["classes"] == list(CLASSES) and np.array(cm["matrix"]).sum() == 16
    assert np.trace(metrics["with_faces"]["confusion_matrix"]["matrix"]) == 12
    assert metrics["all_clips"]["classification_report"]["Negative"]["support"] == 6
    assert metrics["score_kind"] == "decision_function" and metrics["split"] == "val"
    assert (report_dir / "confusion_matrix.png").read_bytes()[:8] == PNG_MAGIC

    predictions = pd.read_parquet(report_dir / "predictions.parquet")
    assert list(predictions.columns) == ["clip_id", "label", "predicted_label", "has_face",
                                         "score_Positive", "score_Neutral", "score_Negative"]
    assert len(predictions) == 16 and "val_err" not in set(predictions.clip_id)
    faceless = predictions[~predictions.has_face]
    assert set(faceless.predicted_label) == {zero_class}
    assert "accuracy on clips with faces: 100.00 %" in capsys.readouterr().out


def test_evaluate_refuses_descriptors_from_another_featurizer(tmp_path: Path, features: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    assert train.run(["--features", str(features), "--output", str(tmp_path / "m")]) == 0
    other = _write(tmp_path / "other.parquet", _clips("val", 2, seed=9), featurizer="enet_b2_8")
    with caplog.at_level(logging.ERROR):
        code = evaluate.run(["--model", str(tmp_path / "m"), "--features", str(other), "--output", str(tmp_path / "r")])
    assert code == 1
    assert "'synthetic_b0'" in caplog.text and "'enet_b2_8'" in caplog.text
    assert not (tmp_path / "r").exists()


def test_evaluate_warns_but_runs_when_descriptor_libraries_differ_from_training(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    made_with = {"featurizer_backend": "openvino", "libraries": {"pillow": "12.3.0", "torch": "2.14.1"}}

    def write(path: Path, rows: list[dict[str, Any]], **libraries: str) -> Path:
        prov = {**_provenance(), **made_with, "libraries": {**made_with["libraries"], **libraries}}
        pq.write_table(pa.Table.from_pylist(rows, schema=descriptor_table_schema(LAYOUT, prov)), path)
        return path

    train_table = write(tmp_path / "train.parquet", _clips("train", 4, seed=1))
    assert train.run(["--features", str(train_table), "--output", str(tmp_path / "m")]) == 0
    for name, libraries, warned in (("same", {}, False), ("newer", {"pillow": "13.0.0"}, True)):
        caplog.clear()
        val = write(tmp_path / f"{name}.parquet", _clips("val", 2, seed=2), **libraries)
        with caplog.at_level(logging.WARNING):
            code = evaluate.run(["--model", str(tmp_path / "m"), "--features", str(val),
                                 "--output", str(tmp_path / f"r_{name}")])
        assert code == 0 and (tmp_path / f"r_{name}" / "metrics.json").is_file()
        assert ("pillow 12.3.0 -> 13.0.0" in caplog.text) == warned
        assert ("other versions" in caplog.text) == warned


def test_training_refuses_a_folder_with_mixed_featurizers(tmp_path: Path, features: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    _write(features / "part-2.parquet", [_row("x", "train", "Neutral", np.ones(8))],
           featurizer="enet_b0_8_best_vgaf")
    with caplog.at_level(logging.ERROR):
        assert train.run(["--features", str(features), "--output", str(tmp_path / "m")]) == 1
    assert "synthetic_b0" in caplog.text and "enet_b0_8_best_vgaf" in caplog.text


@pytest.mark.parametrize("argv", [
    ["--classifier", "randomforest", "--n-estimators", "10", "--max-depth", "3"],
    ["--classifier", "svc", "--search-C", "0.1,1,10", "--cv-folds", "3"],
])
def test_other_classifiers_end_to_end(tmp_path: Path, features: Path, argv: list[str]) -> None:
    model_dir = tmp_path / "m"
    assert train.run(["--features", str(features), "--output", str(model_dir), "--seed", "3", *argv]) == 0
    assert evaluate.run(["--model", str(model_dir), "--features", str(features), "--output", str(tmp_path / "r")]) == 0
    saved = json.loads((model_dir / "model.json").read_text())
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["accuracy_with_faces"] == 1.0 and saved["hyperparameters"]["seed"] == 3
    if "--search-C" in argv:
        cv = saved["cross_validation"]
        assert [r["C"] for r in cv["results"]] == [0.1, 1.0, 10.0] and cv["folds"] == 3
        assert saved["hyperparameters"]["C"] == cv["best_C"]
    else:
        assert saved["hyperparameters"]["n_estimators"] == 10 and metrics["score_kind"] == "probability"


def test_training_twice_gives_identical_models(tmp_path: Path, features: Path) -> None:
    for name in ("a", "b"):
        assert train.run(["--features", str(features), "--output", str(tmp_path / name)]) == 0
    a, b = load_model(tmp_path / "a").pipeline, load_model(tmp_path / "b").pipeline
    np.testing.assert_array_equal(a[-1].coef_, b[-1].coef_)
    np.testing.assert_array_equal(a[-1].intercept_, b[-1].intercept_)


def test_user_errors_give_exit_codes(tmp_path: Path, features: Path) -> None:
    assert train.run(["--features", str(features), "--output", str(tmp_path / "m"), "--split", "test"]) == 1
    assert train.run(["--features", str(tmp_path / "missing"), "--output", str(tmp_path / "m")]) == 1
    with pytest.raises(SystemExit) as exit_info:
        train.run(["--features", str(features), "--output", str(tmp_path / "m"), "--classifier", "randomforest",
                   "--C", "1"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        train.run(["--features", str(features), "--output", str(tmp_path / "m"), "--search-C", "x"])
