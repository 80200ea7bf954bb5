"""What a featurizer is: its identity and configuration (:class:`FeaturizerSpec`), and the names of the
files a featurizer's weights come in. Below the registry, the checkpoint readers and fine-tuned folders,
which all refer to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

HSEMOTION_8_CLASSES = ("Anger", "Contempt", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise")
HSEMOTION_7_CLASSES = tuple(c for c in HSEMOTION_8_CLASSES if c != "Contempt")
HSEMOTION_MTL_OUTPUTS = HSEMOTION_8_CLASSES + ("Valence", "Arousal")

HSEMOTION_PUBLISHED_AT = (
    "https://github.com/av-savchenko/face-emotion-recognition/tree/main/models/affectnet_emotions"
)
WEIGHTS_DIR_ENV = "EMOTIW_WEIGHTS_DIR"

WeightsSource = Literal["package", "hsemotion", "finetuned"]

FINETUNED_CONFIG_FILE = "featurizer.json"
FINETUNED_WEIGHTS_FILE = "weights.safetensors"
RESIZE_INTERPOLATION = "bilinear"
"""How faces are resized to the input size (PIL's antialiased bilinear, see embed.py), for every featurizer."""
REGRESSED_OUTPUTS = ("Valence", "Arousal")


@dataclass(frozen=True)
class FeaturizerSpec:
    """A featurizer's identity and configuration; the single source of truth for it."""

    name: str
    architecture: str
    """timm architecture the weights fit (built under the timm the project installs)."""
    input_size: int
    feature_dim: int
    source: WeightsSource
    head_outputs: tuple[str, ...] = ()
    """Names of the stored classifier head's outputs when they are emotions (HSEmotion)."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    emotion_tuned: bool = True
    description: str = field(default="", compare=False)

    @property
    def weights_file_name(self) -> str:
        return FINETUNED_WEIGHTS_FILE if self.source == "finetuned" else f"{self.name}.pt"

    @property
    def emotion_classes(self) -> tuple[str, ...]:
        """The head outputs that are a softmax over classes (valence/arousal excluded)."""
        return tuple(c for c in self.head_outputs if c not in REGRESSED_OUTPUTS)

    @property
    def short_name(self) -> str:
        """The registry name, or a fine-tuned folder's own name (for default output paths)."""
        return Path(self.name).name if self.source == "finetuned" else self.name
