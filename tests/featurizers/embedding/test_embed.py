from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from common.errors import CheckpointFormatError, WeightsNotFoundError
from featurizers.embedding.checkpoints import load_hsemotion_model
from featurizers.embedding.embed import FaceEmbedder, load_network, preprocess_face, preprocess_faces, select_device
from featurizers.embedding.registry import (
    FEATURIZERS,
    HSEMOTION_PUBLISHED_AT,
    get_featurizer_spec,
    resolve_weights_path,
)


def test_registry_describes_b0_and_b2():
    b0, b2 = get_featurizer_spec("enet_b0_8_best_afew"), get_featurizer_spec("enet_b2_7")
    assert (b0.input_size, b0.feature_dim, b0.architecture) == (224, 1280, "tf_efficientnet_b0")
    assert (b2.input_size, b2.feature_dim, b2.architecture) == (260, 1408, "tf_efficientnet_b2")
    assert len(b0.emotion_classes) == 8 and "Contempt" not in b2.emotion_classes
    assert get_featurizer_spec("enet_b0_8_va_mtl").head_outputs[-2:] == ("Valence", "Arousal")


def test_unknown_featurizer_lists_the_known_ones():
    with pytest.raises(ValueError, match="enet_b0_8_best_afew"):
        get_featurizer_spec("resnet")


def test_preprocess_squashes_to_the_input_size_and_normalises(lite0_spec):
    face = np.full((37, 81, 3), 255, np.uint8)  # any aspect ratio becomes S x S
    x = preprocess_face(face, lite0_spec)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    expected = [(1 - m) / s for m, s in zip(lite0_spec.mean, lite0_spec.std)]
    assert x[:, 100, 100] == pytest.approx(expected, rel=1e-6)
    assert preprocess_faces([], lite0_spec).shape == (0, 3, 224, 224)


def test_b2_input_is_260(lite0_spec):
    face = np.zeros((224, 224, 3), np.uint8)
    assert preprocess_face(face, FEATURIZERS["enet_b2_8"]).shape == (3, 260, 260)


def test_offline_lite0_weights_load_and_recognise_a_cat(lite0_embedder, lite0_spec):
    import skimage.data

    batch = preprocess_faces([skimage.data.chelsea()], lite0_spec)
    out = lite0_embedder.embed(batch)
    assert out.features.shape == (1, 1280) and out.head_scores is None
    logits = lite0_embedder.model(torch.from_numpy(batch))
    assert int(logits.argmax()) in (281, 282, 285)  # ImageNet tabby / tiger / Egyptian cat


def test_batched_features_equal_one_at_a_time(lite0_embedder, lite0_spec, astronaut):
    faces = [astronaut[50:200, 150:280], astronaut[0:100, 0:100], astronaut[300:500, 200:400]]
    batched = lite0_embedder.embed(preprocess_faces(faces, lite0_spec)).features
    single = np.concatenate([lite0_embedder.embed(preprocess_faces([f], lite0_spec)).features for f in faces])
    assert np.allclose(batched, single, atol=1e-4)


def test_missing_hsemotion_weights_name_the_path_and_where_to_get_them(tmp_path, monkeypatch):
    spec = get_featurizer_spec("enet_b0_8_best_afew")
    monkeypatch.delenv("EMOTIW_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsNotFoundError, match="no --weights") as caught:
        resolve_weights_path(spec)
    assert HSEMOTION_PUBLISHED_AT in str(caught.value)
    with pytest.raises(WeightsNotFoundError, match=str(tmp_path / "enet_b0_8_best_afew.pt")):
        resolve_weights_path(spec, tmp_path)
    assert isinstance(caught.value, FileNotFoundError)


def test_weights_found_by_file_folder_or_environment(tmp_path, monkeypatch):
    spec = get_featurizer_spec("enet_b2_8")
    path = tmp_path / "enet_b2_8.pt"
    path.write_bytes(b"x")
    assert resolve_weights_path(spec, path) == path
    assert resolve_weights_path(spec, tmp_path) == path
    monkeypatch.setenv("EMOTIW_WEIGHTS_DIR", str(tmp_path))
    assert resolve_weights_path(spec) == path


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            select_device("cuda")


TINY_B0 = Path(__file__).resolve().parents[2] / "fixtures" / "checkpoints" / "tiny_b0_avg_8.pt"


def test_emotion_probabilities_come_from_the_checkpoints_own_head(astronaut):
    spec = replace(get_featurizer_spec("enet_b0_8_best_afew"), feature_dim=52)  # the tiny fixture's width
    embedder = FaceEmbedder(spec, load_hsemotion_model(TINY_B0), torch.device("cpu"))
    batch = preprocess_faces([astronaut[50:200, 150:280], astronaut[300:450, 100:250]], spec)
    out = embedder.embed(batch)
    assert out.features.shape == (2, 52) and out.head_scores.shape == (2, 8)
    with torch.no_grad():
        expected = embedder.model(torch.from_numpy(batch)).softmax(dim=1).numpy()
    assert np.allclose(out.head_scores, expected, atol=1e-6)
    assert np.allclose(out.head_scores.sum(axis=1), 1.0)


def test_a_checkpoint_of_the_wrong_width_is_refused_by_name():
    with pytest.raises(CheckpointFormatError, match="52-D features.*expects 1280-D"):
        load_network(get_featurizer_spec("enet_b0_8_best_afew"), TINY_B0)


@pytest.mark.parametrize("runtime", ["OnnxNetwork", "OpenVinoNetwork"])
@pytest.mark.parametrize("fixture", ["tiny_b0_avg_8.pt", "tiny_b2_max_7.pt"])
def test_cpu_runtimes_give_the_torch_outputs_for_tf_same_padding_and_max_pooling(fixture, runtime):
    from featurizers.runtimes import backends

    model = load_hsemotion_model(TINY_B0.parent / fixture)
    batch = np.random.default_rng(0).normal(size=(3, 3, 96, 96)).astype(np.float32)
    fast_features, fast_logits = getattr(backends, runtime)(backends.export_onnx(model, 96))(batch)
    torch_features, torch_logits = backends.TorchNetwork(model, torch.device("cpu"))(batch)
    assert fast_features.shape == torch_features.shape and fast_logits.shape == torch_logits.shape
    np.testing.assert_allclose(fast_features, torch_features, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(fast_logits, torch_logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend, runtime", [("onnx", "OnnxNetwork"), ("openvino", "OpenVinoNetwork"),
                                              ("auto", "OpenVinoNetwork")])
def test_cpu_runtimes_match_torch_on_real_faces_of_any_batch_size(lite0_spec, astronaut, backend, runtime):
    model = load_network(lite0_spec)
    eager = FaceEmbedder(lite0_spec, model, torch.device("cpu"), "torch")
    fast = FaceEmbedder(lite0_spec, model, torch.device("cpu"), backend)
    assert fast.backend == runtime
    faces = [astronaut[50:200, 150:280], astronaut[0:120, 0:90], astronaut[300:400, 100:260]]
    for n in (2, 3, 1):  # the batch size changes between calls
        batch = preprocess_faces(faces[:n], lite0_spec)
        np.testing.assert_allclose(fast.embed(batch).features, eager.embed(batch).features, atol=1e-4, rtol=1e-4)


def test_auto_takes_onnx_runtime_when_openvino_cannot_be_imported(lite0_spec, monkeypatch):
    import sys

    from featurizers.runtimes import backends
    from featurizers.runtimes.backend_choice import resolve_backend

    assert resolve_backend("auto", "cpu") == "openvino" and resolve_backend("auto", "cuda") == "torch"
    monkeypatch.setitem(sys.modules, "openvino", None)  # what a missing package looks like to import
    assert resolve_backend("auto", "cpu") == "onnx" and resolve_backend("openvino", "cpu") == "openvino"
    network = backends.make_network(load_network(lite0_spec), torch.device("cpu"), 224, "auto")
    assert type(network).__name__ == "OnnxNetwork"


def test_an_unknown_backend_is_refused_by_name(lite0_spec):
    from featurizers.runtimes.backends import make_network

    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        make_network(load_network(lite0_spec), torch.device("cpu"), 224, "tensorrt")  # type: ignore[arg-type]
