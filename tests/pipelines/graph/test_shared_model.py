"""The scoring steps of a job share one loaded model per worker process."""

import pickle
from pathlib import Path

import pytest

from classifiers import model_io
from pipelines.graph.scoring_steps import SharedModel


def test_copies_of_one_shared_model_load_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[Path] = []
    monkeypatch.setattr(model_io, "load_model", lambda folder: loads.append(folder) or object())
    model = SharedModel(str(tmp_path))
    # Beam pickles each step with its own copy: the scores, the window and track rows, the adaptive judge.
    steps = [pickle.loads(pickle.dumps(model)) for _ in range(3)]
    held = [step.load() for step in steps]
    assert loads == [tmp_path] and held[0] is held[1] is held[2]
    assert SharedModel(str(tmp_path)).load() is not held[0] and len(loads) == 2  # another job's model: its own load
