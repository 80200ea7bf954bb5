"""What the scoring job tests share: the sample clips they score, their trained model, and readers of the
views a run writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from videos import SAMPLES

HAPPY = SAMPLES / "afew" / "Train_AFEW" / "Happy" / "000001001.avi"
NEUTRAL = SAMPLES / "afew" / "Train_AFEW" / "Neutral" / "000002002.avi"


def train_two_clip_model(root: Path) -> Path:
    """A LinearSVC trained on the descriptors of one Happy and one Neutral sample clip (frame step 10)."""
    from jobs import extract, train

    for clip in (HAPPY, NEUTRAL):
        target = root / "Train_AFEW" / clip.parent.name / clip.name
        target.parent.mkdir(parents=True)
        shutil.copy(clip, target)
    features, folder = root / "features", root / "model"
    assert extract.run(["--dataset", "afew", "--data-root", str(root), "--frame-step", "10",
                        "--output", str(features)]) == 0
    assert train.run(["--features", str(features), "--output", str(folder)]) == 0
    return folder


def latest_view(output: Path) -> pd.DataFrame:
    latest = pd.read_parquet(output / "latest")
    assert latest.key.is_unique
    return latest.set_index("key")


def windows_view(output: Path) -> pd.DataFrame:
    return pd.read_parquet(output / "windows").sort_values(["key", "start_s"]).reset_index(drop=True)


def tracks_view(output: Path) -> pd.DataFrame:
    return pd.read_parquet(output / "tracks").sort_values(["key", "track_id"]).reset_index(drop=True)
