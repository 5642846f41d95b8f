import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qingfin.models.calibration import (
    NEVER,
    ThresholdPolicy,
    choose_thresholds,
    fit_temperature,
    lowest_threshold_for_precision,
)
from qingfin.models.metrics import precision_recall_f1
from qingfin.serve.scoring import calibrated_probs, decide, most_severe


def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-true_logits))).astype(float)
    # The model is 3x overconfident: its logits are 3x the true ones.
    assert fit_temperature(3 * true_logits, y) == pytest.approx(3.0, rel=0.1)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.2, 5.0), st.integers(0, 1000))
def test_temperature_preserves_ranking(temperature, seed):
    logits = np.random.default_rng(seed).normal(size=(20, 2))
    probs = calibrated_probs(logits, np.array([temperature, 1.0]))
    assert (np.argsort(probs[:, 0], kind="stable") == np.argsort(logits[:, 0], kind="stable")).all()


def test_lowest_threshold_for_precision_and_unreachable():
    actual = np.array([1, 1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert lowest_threshold_for_precision(actual, scores, 0.75) == 0.6  # 3 of 4 flagged are right
    assert lowest_threshold_for_precision(actual, scores, 1.0) == 0.8
    assert lowest_threshold_for_precision(np.array([0, 1]), np.array([0.9, 0.1]), 0.9) is None


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.5, 0.99))
def test_chosen_block_threshold_meets_its_precision_or_is_disabled(seed, target):
    rng = np.random.default_rng(seed)
    y = (rng.random((60, 2)) < 0.3).astype(float)
    probs = np.clip(y * 0.4 + rng.random((60, 2)) * 0.6, 0, 1)
    chosen = choose_thresholds(y, probs, ["a", "b"], ThresholdPolicy(block_precision=target))
    for k, label in enumerate(["a", "b"]):
        block = chosen[label]["block"]
        assert block >= chosen[label]["review"]
        if block < NEVER and not chosen[label]["notes"]:
            precision = precision_recall_f1(y[:, k : k + 1], probs[:, k : k + 1], [block])["precision"][0]
            assert precision >= target - 1e-9


def test_unreachable_targets_are_recorded():
    y = np.array([[0], [1], [0], [1]], dtype=float)
    probs = np.array([[0.9], [0.8], [0.7], [0.1]])
    chosen = choose_thresholds(y, probs, ["a"], ThresholdPolicy(review_min_precision=0.99, block_precision=0.99))
    assert chosen["a"]["block"] == NEVER
    assert any("unreachable" in note for note in chosen["a"]["notes"])
    assert chosen["a"]["review_method"] == "best_f1"


def test_decisions():
    assert decide(0.2, 0.5, 0.9) == "pass"
    assert decide(0.5, 0.5, 0.9) == "review"
    assert decide(0.95, 0.5, 0.9) == "block"
    assert most_severe(["pass", "block", "review"]) == "block"
    assert most_severe([]) == "pass"
