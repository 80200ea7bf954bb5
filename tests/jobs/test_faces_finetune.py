"""End to end on small inputs: jobs.faces on the AFEW sample, jobs.finetune from a tiny base folder,
and the fine-tuned folder used by jobs.extract, with the identity checks of train/evaluate."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image
from videos import SAMPLES

from classifiers.descriptors import check_same_identity
from common.errors import IncompatibleArtifactsError
from common.tables.schema import read_provenance
from featurizers.embedding.finetuned import FinetunedDescription, save_featurizer_folder
from jobs import extract, faces, finetune

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample_faces(tmp_path_factory):
    """The AFEW sample's faces, every 10th frame, plus a clip that is not a video."""
    root = tmp_path_factory.mktemp("afew")
    data = shutil.copytree(SAMPLES / "afew", root / "afew")
    (data / "Train_AFEW" / "Sad" / "broken.avi").write_bytes(b"RIFF not really a video")
    out = root / "faces"
    code = faces.run(["--dataset", "afew", "--data-root", str(data), "--split", "all", "--frame-step", "10",
                      "--output", str(out)])
    return code, out


def test_faces_writes_an_image_folder_and_a_manifest_row_per_image(sample_faces):
    code, out = sample_faces
    assert code == 1  # the broken clip failed, and says so
    manifest = pd.read_parquet(out / "manifest.parquet")
    images = manifest[manifest.status == "ok"]
    assert set(images.label) == {"Happy", "Neutral", "Sad", "Surprise", "Fear"}
    assert (images.groupby("clip_id").size() == 5).all()  # 50 frames, every 10th, one face each
    for row in images.itertuples():
        assert row.path == f"{row.label}/{row.clip_id}_{int(row.frame_index)}.png"
        with Image.open(out / row.path) as image:
            assert image.format == "PNG" and image.mode == "RGB"
        assert len(row.box) == 4
    broken = manifest.set_index("clip_id").loc["broken"]
    assert broken.status == "error" and "broken.avi" in broken.error
    assert manifest.set_index("clip_id").loc["000006006"].status == "faceless"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(set(images.label))


def test_faces_writes_its_image_folder_to_a_bucket(bucket, tmp_path):
    import fsspec

    clip = SAMPLES / "afew" / "Train_AFEW" / "Happy" / "000001001.avi"
    data = tmp_path / "afew" / "Train_AFEW" / "Happy"
    data.mkdir(parents=True)
    shutil.copy(clip, data / clip.name)
    out = f"{bucket}/faces"
    assert faces.run(["--dataset", "afew", "--data-root", str(tmp_path / "afew"), "--frame-step", "10",
                      "--output", out]) == 0
    manifest = pd.read_parquet(f"{out}/manifest.parquet")
    assert list(manifest.status) == ["ok"] * 5
    fs = fsspec.filesystem("s3")
    for path in manifest.path:
        with fs.open(f"{out}/{path}", "rb") as file, Image.open(file) as image:
            assert image.format == "PNG"
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(out, refresh=True)) == ["Happy", "_SUCCESS", "_summary.json",
                                                                            "manifest.parquet"]


def _png_faces(root, n_per_class=6):
    """Two classes a small network can tell apart (bright vs dark faces with noise), three clips each."""
    rng = np.random.default_rng(0)
    for label, level in (("Happy", 190), ("Sad", 60)):
        (root / label).mkdir(parents=True)
        for k in range(n_per_class):
            face = np.clip(rng.normal(level, 40, (40, 36, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(face).save(root / label / f"clip{label}{k % 3}_{k}.png")
    (root / "Sad" / "clipSad9_1.png").write_bytes(b"")  # a bad image: skipped, named


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A fine-tuned folder of a random Lite0 at 32 px: a fast base, and a check that folders can be bases."""
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=2)
    description = FinetunedDescription("tf_efficientnet_lite0", "avg", 32, (0.5,) * 3, (0.25,) * 3, 1280,
                                       ("a", "b"), "effnet_lite0_imagenet", "0" * 64, "", {})
    return save_featurizer_folder(tmp_path_factory.mktemp("base") / "tiny", model, description)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, tiny_base):
    root = tmp_path_factory.mktemp("ft")
    _png_faces(root / "images")
    argv = ["--images", str(root / "images"), "--base", str(tiny_base), "--head-epochs", "2", "--full-epochs", "2",
            "--batch-size", "4", "--val-fraction", "0.3", "--head-lr", "1e-2", "--full-lr", "1e-3", "--no-augment"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is faster, and much faster on a busy machine
    try:
        codes = [finetune.run([*argv, "--output", str(root / name)]) for name in ("one", "two")]
    finally:
        torch.set_num_threads(threads)
    return codes, root / "one", root / "two"


def test_finetune_writes_a_featurizer_folder_with_history(finetuned, tiny_base):
    codes, one, _ = finetuned
    assert codes == [0, 0]
    assert sorted(p.name for p in one.iterdir()) == ["featurizer.json", "history.json", "learning_curve.png",
                                                      "weights.safetensors"]
    description = json.loads((one / "featurizer.json").read_text())
    assert description["classes"] == ["Happy", "Sad"] and description["input_size"] == 32
    assert description["base"]["featurizer"] == str(tiny_base)
    training = description["training"]
    assert training["skipped_images"] == 1 and training["class_weights"]["Happy"] == 1.0
    history = json.loads((one / "history.json").read_text())
    assert [e["phase"] for e in history["epochs"]] == ["head", "head", "full", "full"]
    assert any("clipSad9_1.png" in path for path in history["skipped"])
    epochs = history["epochs"]
    # Every epoch saw every readable training image (learning itself: tests/featurizers/finetuning).
    assert {e["images"] for e in epochs} == {training["train_images"]} and training["resumed_after_epoch"] == 0
    assert history["settings"]["augment"] is False and 0 < epochs[2]["learning_rate"] <= 1e-3
    assert history["best_epoch"] == max(range(1, 5), key=lambda e: (epochs[e - 1]["val_accuracy"], -e))


def test_finetune_is_reproducible_with_a_seed(finetuned):
    from safetensors import safe_open

    _, one, two = finetuned
    # Tensors and metadata, not bytes: safetensors writes the metadata keys in no fixed order.
    with safe_open(one / "weights.safetensors", "pt") as a, safe_open(two / "weights.safetensors", "pt") as b:
        assert a.metadata() == b.metadata() and sorted(a.keys()) == sorted(b.keys())
        for name in a.keys():
            assert a.get_tensor(name).equal(b.get_tensor(name)), name


def test_finetune_rejects_an_unknown_base(tmp_path, capsys):
    (tmp_path / "images" / "A").mkdir(parents=True)
    code = finetune.run(["--images", str(tmp_path / "images"), "--base", str(tmp_path), "--output", str(tmp_path / "o")])
    assert code == 2 and "featurizer.json" in capsys.readouterr().err


def test_extract_takes_a_finetuned_folder_and_gives_its_class_scores(finetuned, tmp_path):
    _, one, two = finetuned
    out, frames = tmp_path / "desc", tmp_path / "frames"
    code = extract.run(["--dataset", "afew", "--featurizer", str(one), "--frame-step", "10", "--backend", "onnx",
                        "--output", str(out), "--frames-output", str(frames)])
    assert code == 0
    import pyarrow.parquet as pq

    provenance = read_provenance(pq.read_schema(next(out.glob("*.parquet"))))
    assert provenance["featurizer"] == str(one) and len(provenance["weights_sha256"]) == 64
    table = pd.read_parquet(frames)
    assert np.allclose(table.p_happy + table.p_sad, 1.0, atol=1e-5)
    from featurizers.embedding.checkpoints import checkpoint_sha256
    from pipelines.extraction.settings import ExtractionConfig

    other = ExtractionConfig(dataset="afew", featurizer=str(two))
    other_provenance = other.provenance(checkpoint_sha256(two / "weights.safetensors"))
    with pytest.raises(IncompatibleArtifactsError, match="featurizer"):
        check_same_identity(provenance, other_provenance, expected_what="a", found_what="b", hint="h")
