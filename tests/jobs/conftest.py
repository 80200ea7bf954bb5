"""Fixtures of the job tests: the scoring tests' model, trained once per test process, and a spy on what
each scoring run describes."""

from __future__ import annotations

from pathlib import Path

import pytest
from scoring_helpers import train_two_clip_model

from pipelines.graph.scoring_steps import run_scoring_pipeline
from pipelines.scoring import scoring_run


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LinearSVC trained on one Happy and one Neutral sample clip; tests copy it before changing it."""
    return train_two_clip_model(tmp_path_factory.mktemp("afew"))


@pytest.fixture
def described(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The keys each run of the job sent to the Beam pipeline, one sorted list per call."""
    calls: list[list[str]] = []

    def spy(refs, *args, **kwargs):
        calls.append(sorted(r.clip_id for r in refs))
        return run_scoring_pipeline(refs, *args, **kwargs)

    monkeypatch.setattr(scoring_run, "run_scoring_pipeline", spy)
    return calls
