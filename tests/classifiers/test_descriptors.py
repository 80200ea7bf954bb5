from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_tables import CLASSES, clip_row, provenance, separable_rows, standard_rows, write_table

from classifiers.descriptors import check_same_identity, encode_labels, load_descriptors, select_split
from common.errors import DatasetLayoutError, IncompatibleArtifactsError


@pytest.fixture
def table_path(tmp_path: Path) -> Path:
    """A one-file AFEW-like table with separable classes, faceless clips and failed clips."""
    return write_table(tmp_path / "features" / "afew_synthetic.parquet", standard_rows())


def test_load_one_file_gives_float32_matrix_and_flags(table_path: Path) -> None:
    d = load_descriptors(table_path)
    rows = standard_rows()
    assert len(d) == len(rows)
    assert d.X.dtype == np.float32 and d.X.shape == (len(rows), 8)
    assert d.featurizer == "synthetic_b0" and d.dataset == "afew"
    assert d.classes == CLASSES
    assert d.sources == (str(table_path),)
    i = list(d.clip_ids).index("train_faceless_0")
    assert not d.has_face[i] and d.status[i] == "faceless" and not d.X[i].any()
    assert list(d.status).count("error") == 2
    j = list(d.clip_ids).index(rows[4]["clip_id"])
    np.testing.assert_array_equal(d.X[j], np.asarray(rows[4]["descriptor"], np.float32))


def test_load_folder_concatenates_files_ordered_by_clip_id(tmp_path: Path) -> None:
    write_table(tmp_path / "b.parquet", separable_rows("val", 2, prefix="b"))
    write_table(tmp_path / "a.parquet", separable_rows("train", 3, prefix="a"))
    write_table(tmp_path / ".a.parquet.tmp.parquet", separable_rows("train", 3, prefix="a"))  # in-flight write
    d = load_descriptors(tmp_path)
    assert len(d) == 3 * 3 + 3 * 2
    assert d.clip_ids.tolist() == sorted(d.clip_ids.tolist())
    assert d.clip_ids[0].startswith("atrain") and d.clip_ids[-1].startswith("bval")
    assert [Path(s).name for s in d.sources] == ["a.parquet", "b.parquet"]


def test_folder_mixing_featurizers_is_refused_naming_both(tmp_path: Path) -> None:
    write_table(tmp_path / "a.parquet", separable_rows("train", 2, prefix="a"))
    write_table(tmp_path / "b.parquet", separable_rows("train", 2, prefix="b"),
                provenance(featurizer="other_b2"))
    with pytest.raises(IncompatibleArtifactsError, match="synthetic_b0.*other_b2") as info:
        load_descriptors(tmp_path)
    assert "a.parquet" in str(info.value) and "b.parquet" in str(info.value)


def test_folder_mixing_layouts_is_refused(tmp_path: Path) -> None:
    write_table(tmp_path / "a.parquet", separable_rows("train", 2, prefix="a"))
    write_table(tmp_path / "b.parquet", separable_rows("train", 2, prefix="b", feature_dim=3),
                provenance(feature_dim=3))
    with pytest.raises(IncompatibleArtifactsError, match=r"afew x 2 = 8.*afew x 3 = 12.*layout"):
        load_descriptors(tmp_path)


def test_identity_check_names_weights_difference() -> None:
    a, b = provenance(weights_sha256="aa" * 32), provenance(weights_sha256="bb" * 32)
    with pytest.raises(IncompatibleArtifactsError, match="weights_sha256"):
        check_same_identity(a, b, expected_what="model m", found_what="descriptors d", hint="retrain")
    check_same_identity(a, provenance(weights_sha256=None), expected_what="m", found_what="d", hint="")


def test_empty_folder_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="no \\*.parquet"):
        load_descriptors(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        load_descriptors(tmp_path / "nope.parquet")


def test_repeated_clip_ids_are_refused(tmp_path: Path) -> None:
    write_table(tmp_path / "a.parquet", separable_rows("train", 2))
    write_table(tmp_path / "b.parquet", separable_rows("train", 2))
    with pytest.raises(DatasetLayoutError, match="more than once"):
        load_descriptors(tmp_path)


def test_select_split_and_unknown_split(table_path: Path) -> None:
    d = load_descriptors(table_path)
    assert set(select_split(d, "val").splits) == {"val"}
    assert len(select_split(d, "all")) == len(d)
    with pytest.raises(DatasetLayoutError, match=r"'test'.*\['train', 'val'\]"):
        select_split(d, "test")


def test_table_without_provenance_falls_back_to_its_columns(tmp_path: Path) -> None:
    frame = pd.DataFrame([clip_row("c1", "train", "Angry", np.ones(8)), clip_row("c2", "train", "Sad", np.ones(8))])
    frame.to_parquet(tmp_path / "plain.parquet")
    d = load_descriptors(tmp_path / "plain.parquet")
    assert d.featurizer == "synthetic_b0"
    assert d.provenance["layout"] == {"length": 8}
    assert d.X.shape == (2, 8)
    assert d.classes == ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")


def test_encode_labels_uses_class_order_and_refuses_unknown_names() -> None:
    assert encode_labels(np.array(["Sad", "Angry"], dtype=object), CLASSES).tolist() == [2, 0]
    with pytest.raises(DatasetLayoutError, match="Bored"):
        encode_labels(np.array(["Bored"], dtype=object), CLASSES)


def test_runtime_differences_name_each_library_and_the_backend(caplog: pytest.LogCaptureFixture) -> None:
    from classifiers.descriptors import runtime_differences, warn_if_runtimes_differ

    trained = {"featurizer_backend": "openvino", "libraries": {"pillow": "12.3.0", "torch": "2.14.1",
                                                               "openvino": "2026.4.1"}}
    same = {"featurizer_backend": "openvino", "libraries": dict(trained["libraries"])}
    assert runtime_differences(trained, same) == []
    moved = {"featurizer_backend": "onnx", "libraries": {"pillow": "13.0.0", "torch": "2.14.1", "onnxruntime": "1.32.0"}}
    assert runtime_differences(trained, moved) == [
        "featurizer backend openvino -> onnx", "onnxruntime not used -> 1.32.0", "openvino 2026.4.1 -> not used",
        "pillow 12.3.0 -> 13.0.0"]
    assert runtime_differences({"featurizer_backend": "auto"}, moved) == []  # older tables: nothing to compare
    detector_moved = {**same, "detector_backend": "torch"}
    assert runtime_differences({**trained, "detector_backend": "openvino"}, detector_moved) == [
        "detector backend openvino -> torch"]
    assert runtime_differences(trained, detector_moved) == []  # made before the detector's backend was recorded
    with caplog.at_level(logging.WARNING):
        warn_if_runtimes_differ(trained, moved, trained_what="model m", found_what="descriptors d")
    assert "model m was trained on descriptors made with other versions or settings than descriptors d" in caplog.text
    assert "pillow 12.3.0 -> 13.0.0" in caplog.text


def test_descriptors_made_in_another_detection_mode_are_named_like_another_backend() -> None:
    from classifiers.descriptors import runtime_differences

    exact = {"detection_mode": {"mode": "exact", "detect_every": 1, "max_side": None}}
    faster = {"detection_mode": {"mode": "every-5", "detect_every": 5, "max_side": None}}
    assert runtime_differences(exact, faster) == ["face detection exact -> every-5"]
    assert runtime_differences({}, faster) == ["face detection exact -> every-5"]  # made before modes: exact
    assert runtime_differences({}, exact) == []
