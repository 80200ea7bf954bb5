"""Fine-tuning learns a facial change that ImageNet features miss: the synthetic task of
scripts/synthetic_faces.py, held-out identities, the real Lite0 ImageNet base.

The one test with a real network: at 64 px instead of 224 (the spec's input size replaced)
and on 96 training faces, so that it stays CI-sized; the whole chain at full size is
benchmarks/benchmark_finetune.py.
"""

import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestCentroid
from sklearn.preprocessing import normalize

from featurizers.embed import load_network, preprocess_faces
from featurizers.finetuning.image_folders import class_weights, list_image_folder, load_rgb, split_by_group
from featurizers.finetuning.training import FinetuneSettings, attach_new_head, finetune
from videos import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from synthetic_faces import CLASSES, face_folder, make_identities  # noqa: E402

pytestmark = pytest.mark.slow


def _features(model, spec, images):
    batch = torch.from_numpy(preprocess_faces([load_rgb(i.path) for i in images], spec))
    with torch.inference_mode():
        model.eval()
        return normalize(model.forward_head(model.forward_features(batch), pre_logits=True).numpy())


def _held_out_accuracy(model, spec, train, test):
    """Nearest class centroid of L2-normalised features: no hyperparameter to tune for either side."""
    probe = NearestCentroid().fit(_features(model, spec, train), [i.label for i in train])
    return probe.score(_features(model, spec, test), [i.label for i in test])


def test_finetuned_features_beat_the_base_on_held_out_identities(tmp_path, lite0_spec):
    spec = replace(lite0_spec, input_size=64)
    train = list_image_folder(face_folder(tmp_path / "train", make_identities(8, 0, "tr"), 4, seed=0)).images
    test = list_image_folder(face_folder(tmp_path / "test", make_identities(4, 1, "te"), 4, seed=1)).images
    assert not {i.group.split("/")[1][:2] for i in train} & {i.group.split("/")[1][:2] for i in test}
    base_accuracy = _held_out_accuracy(load_network(spec), spec, train, test)

    fit, val = split_by_group(train, 0.1, seed=0)
    settings = FinetuneSettings(head_epochs=1, full_epochs=6, full_lr=1e-3, batch_size=16)
    model = attach_new_head(load_network(spec), len(CLASSES), settings.seed)
    result = finetune(model, spec, fit, val, class_weights([i.label for i in fit], len(CLASSES)), settings,
                      torch.device("cpu"))
    losses = [r.train_loss for r in result.history]
    assert losses[-1] < 0.5 * losses[0]
    finetuned_accuracy = _held_out_accuracy(result.model, spec, train, test)
    print(f"held-out nearest-centroid accuracy: base {base_accuracy:.3f}, fine-tuned {finetuned_accuracy:.3f}; "
          f"losses {[round(v, 3) for v in losses]}")
    assert finetuned_accuracy > base_accuracy + 0.1, (base_accuracy, finetuned_accuracy)
    assert np.isfinite([r.val_loss for r in result.history]).all()
