"""A fine-tuned featurizer folder is a featurizer: spec, weights check, every backend, provenance."""

import json

import numpy as np
import pytest
import timm
import torch

from common.errors import CheckpointFormatError
from common.tables.schema import frame_table_schema
from featurizers.embedding.embed import FaceEmbedder, load_network, preprocess_faces
from featurizers.embedding.finetuned import FinetunedDescription, save_featurizer_folder
from featurizers.embedding.registry import canonical_featurizer, get_featurizer_spec, resolve_weights_path
from pipelines.extraction.settings import ExtractionConfig

CLASSES = ("Happy", "Neutral", "Surprise")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A small input size keeps the three backends quick; the network is Lite0 with random weights."""
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=len(CLASSES))
    description = FinetunedDescription(
        architecture="tf_efficientnet_lite0", global_pool="avg", input_size=64, mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25), feature_dim=1280, classes=CLASSES, base_featurizer="effnet_lite0_imagenet",
        base_weights_sha256="0" * 64, weights_sha256="", training={"best_epoch": 1})
    return save_featurizer_folder(tmp_path_factory.mktemp("ft") / "ft_demo", model, description), model


def test_folder_resolves_to_a_spec_named_by_its_absolute_path(folder, monkeypatch):
    path, _ = folder
    monkeypatch.chdir(path.parent)
    spec = get_featurizer_spec("ft_demo")
    assert spec.name == str(path) and spec.source == "finetuned" and spec.short_name == "ft_demo"
    assert (spec.input_size, spec.feature_dim, spec.mean) == (64, 1280, (0.5, 0.5, 0.5))
    assert spec.head_outputs == CLASSES and spec.emotion_classes == CLASSES
    assert canonical_featurizer("ft_demo") == str(path)
    assert resolve_weights_path(spec).name == "weights.safetensors"
    assert [f.name for f in frame_table_schema(spec.head_outputs)][-3:] == ["p_happy", "p_neutral", "p_surprise"]


def test_folder_holds_no_pickle_and_records_the_weights_hash(folder):
    path, _ = folder
    description = json.loads((path / "featurizer.json").read_text())
    assert sorted(p.name for p in path.iterdir()) == ["featurizer.json", "weights.safetensors"]
    assert description["base"] == {"featurizer": "effnet_lite0_imagenet", "weights_sha256": "0" * 64}
    assert len(description["weights_sha256"]) == 64 and description["interpolation"] == "bilinear"


def test_provenance_names_the_folder_and_its_weights(folder):
    path, _ = folder
    from featurizers.embedding.checkpoints import checkpoint_sha256

    config = ExtractionConfig(dataset="afew", featurizer=str(path))
    sha = checkpoint_sha256(resolve_weights_path(config.spec))
    provenance = config.provenance(sha)
    assert provenance["featurizer"] == str(path) and provenance["weights_sha256"] == sha
    assert config.layout.feature_dim == 1280


def test_every_backend_gives_the_same_features_and_class_probabilities(folder, astronaut):
    path, original = folder
    spec = get_featurizer_spec(str(path))
    model = load_network(spec)
    batch = preprocess_faces([astronaut[50:200, 150:280], astronaut[300:450, 0:200]], spec)
    with torch.no_grad():
        expected = original.eval()(torch.from_numpy(batch)).softmax(1).numpy()
    outputs = {b: FaceEmbedder(spec, model, torch.device("cpu"), b).embed(batch) for b in ("torch", "onnx", "openvino")}
    for backend, out in outputs.items():
        assert out.features.shape == (2, 1280)
        assert np.allclose(out.features, outputs["torch"].features, atol=1e-4), backend
        assert np.allclose(out.head_scores, expected, atol=1e-5), backend


def test_changed_weights_are_refused(folder, tmp_path):
    import shutil

    path, _ = folder
    copy = shutil.copytree(path, tmp_path / "copy")
    data = bytearray((copy / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointFormatError, match="SHA-256"):
        load_network(get_featurizer_spec(str(copy)))


def test_weights_flag_cannot_swap_a_folder_weights(folder, tmp_path):
    path, _ = folder
    with pytest.raises(ValueError, match="drop --weights"):
        resolve_weights_path(get_featurizer_spec(str(path)), tmp_path / "other.pt")


def test_neither_name_nor_folder_says_both(tmp_path):
    with pytest.raises(ValueError, match="effnet_lite0_imagenet.*featurizer.json"):
        get_featurizer_spec(str(tmp_path))


def test_pooling_of_the_base_is_kept(tmp_path):
    """HSEmotion B2 checkpoints pool by max; a folder fine-tuned from one must rebuild that pooling."""
    torch.manual_seed(1)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=2, global_pool="max").eval()
    description = FinetunedDescription("tf_efficientnet_lite0", model.global_pool.pool_type, 32, (0.5,) * 3,
                                       (0.25,) * 3, 1280, ("a", "b"), "enet_b2_8", "1" * 64, "", {})
    path = save_featurizer_folder(tmp_path / "b2like", model, description)
    loaded = load_network(get_featurizer_spec(str(path)))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert loaded.global_pool.pool_type == "max"
        assert torch.allclose(loaded(x), model(x), atol=1e-6)
