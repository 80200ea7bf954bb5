"""The adaptive frame rate's decisions and frame plans, by hand on small inputs."""

from __future__ import annotations

import numpy as np
import pytest

from classifiers.scoring import top_two_margins
from pipelines.extraction.adaptive import (
    DEFAULT_THRESHOLDS,
    AdaptivePlan,
    AdaptiveSettings,
    adaptive_from_flags,
    next_level,
    on_grid,
    parse_schedule,
)


@pytest.mark.parametrize("text, steps", [("18,9,1", (18, 9, 1)), ("12,6,3", (12, 6, 3)), ("1", (1,)),
                                         (" 4, 2 ,1", (4, 2, 1))])
def test_a_well_formed_schedule_is_read(text: str, steps: tuple[int, ...]) -> None:
    assert parse_schedule(text) == steps


@pytest.mark.parametrize("text", ["", "18,,1", "18;9;1", "18,9.5,1", "9,18,1", "18,18,1", "18,7,1", "18,9,0",
                                  "-18,-9", "0"])
def test_a_malformed_schedule_names_the_flag(text: str) -> None:
    with pytest.raises(ValueError, match="--adaptive"):
        parse_schedule(text)


@pytest.mark.parametrize("threshold", [-0.1, float("nan"), float("inf")])
def test_a_threshold_must_be_a_finite_margin_of_zero_or_more(threshold: float) -> None:
    with pytest.raises(ValueError, match="--adaptive-threshold must be a finite margin >= 0"):
        adaptive_from_flags("18,9,1", threshold)


def test_flags_give_settings_and_a_threshold_alone_is_refused() -> None:
    assert adaptive_from_flags(None, None) is None  # exact scoring, the default
    assert adaptive_from_flags("4,2,1", 0.0) == AdaptiveSettings((4, 2, 1), 0.0)
    with pytest.raises(ValueError, match="--adaptive-threshold applies to adaptive scoring only"):
        adaptive_from_flags(None, 0.5)
    default = AdaptiveSettings((18, 9, 1))
    assert default.resolved("decision_function").threshold == DEFAULT_THRESHOLDS["decision_function"]
    assert default.resolved("probability").threshold == DEFAULT_THRESHOLDS["probability"]
    with pytest.raises(ValueError, match="pass one"):
        default.resolved("votes")
    assert AdaptiveSettings((18, 9, 1), 2.0).resolved("probability").threshold == 2.0  # the user's own wins


def test_a_window_is_done_when_its_margin_reaches_the_threshold_or_at_the_last_step() -> None:
    steps = (18, 9, 1)
    assert next_level(steps, 0, 0.7, 0.5) is None  # confident at 18
    assert next_level(steps, 0, 0.5, 0.5) is None  # reaching the threshold is enough
    assert next_level(steps, 0, 0.49, 0.5) == 1  # hesitant: every 9th frame
    assert next_level(steps, 1, 0.1, 0.5) == 2
    assert next_level(steps, 0, None, 0.0) == 1  # no face, no prediction: densify, even at threshold 0
    assert next_level(steps, 2, 0.0, 0.5) is None  # every frame: done whatever the margin
    assert next_level((12, 6, 3), 2, None, 0.5) is None  # the last step need not be 1


def test_margins_are_the_top_class_score_minus_the_second() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [-1.0, 0.5, 0.25], [0.3, 0.3, -2.0]])
    np.testing.assert_allclose(top_two_margins(scores), [0.5, 0.25, 0.0])
    d = 0.4  # a binary SVM's one margin, given as (-d, d) by class_scores
    np.testing.assert_allclose(top_two_margins(np.array([[-d, d]])), [2 * d])
    with pytest.raises(ValueError, match="classes >= 2"):
        top_two_margins(np.array([[1.0]]))


def test_the_plan_densifies_only_hesitant_windows_and_never_asks_for_a_frame_twice() -> None:
    base = 2  # the model samples every 2nd native frame: 0, 2, ..., 98
    sampled = np.arange(0, 100, base)
    units = sampled // 40  # windows of 40 native frames: 0-38, 40-78, 80-98
    plan = AdaptivePlan((4, 2, 1), sampled, base, units)
    assert plan.available() == {0: 20, 1: 20, 2: 10}
    described: list[int] = []

    first = plan.wanted()
    np.testing.assert_array_equal(first, np.arange(0, 100, 8))  # every 4th sampled frame
    described += first.tolist()
    plan.settle({0: 0.9, 1: 0.1, 2: None}, threshold=0.5)  # window 0 confident; 2 has no face
    assert plan.final_step == {0: 4} and plan.open == {1, 2}

    second = plan.wanted()
    np.testing.assert_array_equal(second, [44, 52, 60, 68, 76, 84, 92])  # step 2, less the step-4 frames
    described += second.tolist()
    plan.settle({1: 0.8, 2: 0.2}, threshold=0.5)
    assert plan.final_step == {0: 4, 1: 2} and plan.open == {2}

    third = plan.wanted()
    np.testing.assert_array_equal(third, np.arange(82, 100, 4))  # the rest of window 2
    described += third.tolist()
    plan.settle({2: 0.0}, threshold=0.5)
    assert plan.finished and plan.final_step == {0: 4, 1: 2, 2: 1}
    assert plan.wanted().size == 0

    assert len(described) == len(set(described))  # no frame twice
    for unit, step in plan.final_step.items():  # each window holds exactly its frames on its final grid
        mine = sampled[(units == unit) & on_grid(sampled, base, step)]
        assert sorted(f for f in described if f // 40 == unit) == mine.tolist()


def test_a_one_step_schedule_describes_every_sampled_frame_in_one_pass() -> None:
    sampled = np.arange(0, 30, 3)
    plan = AdaptivePlan((1,), sampled, 3, np.zeros(len(sampled), np.int64))
    np.testing.assert_array_equal(plan.wanted(), sampled)
    plan.settle({0: None}, threshold=0.5)
    assert plan.finished and plan.final_step == {0: 1}
