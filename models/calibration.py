"""Probability calibration and threshold selection, as functions over arrays.

``logits[N, K]`` are raw model outputs; ``y_true[N, K]`` 0/1. Temperature scaling fits one
scalar per label on a held-out calibration split; thresholds are then chosen on the
*calibrated* probabilities, so that serving (which applies the same temperatures through
``qingfin.serve.scoring``) reproduces them exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qingfin.models.metrics import best_f1_thresholds, precision_recall_curve
from qingfin.serve.scoring import calibrated_probs

# Search range for log-temperature: T in [e^-3, e^3] covers every sane over/under-confidence.
_LOG_T_RANGE = (-3.0, 3.0)
NEVER = 1.0  # a block threshold of 1.0 means "no auto-block": the precision target was unreachable


def _bce(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    # log(1 + e^z) - y z, computed stably.
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray, iterations: int = 60) -> float:
    """The temperature ``T`` minimising binary cross-entropy of ``sigmoid(logits / T)`` for one label.

    Golden-section search over log T (the loss is unimodal there in practice).

    >>> round(fit_temperature(np.array([4.0, -4.0, 4.0, -4.0]), np.array([1, 0, 0, 1])), 1) > 5
    True
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.float64)
    low, high = _LOG_T_RANGE
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = _bce(logits, y, np.exp(a)), _bce(logits, y, np.exp(b))
    for _ in range(iterations):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = _bce(logits, y, np.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = _bce(logits, y, np.exp(b))
    return float(np.exp((low + high) / 2.0))


def fit_temperatures(logits: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """Per-label temperatures ``[K]``; labels without both classes keep T = 1."""
    logits = np.asarray(logits, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.float64)
    temperatures = np.ones(logits.shape[1])
    for k in range(logits.shape[1]):
        if 0 < y_true[:, k].sum() < len(y_true):
            temperatures[k] = fit_temperature(logits[:, k], y_true[:, k])
    return temperatures


def lowest_threshold_for_precision(actual: np.ndarray, scores: np.ndarray, target: float) -> float | None:
    """The lowest threshold whose precision is >= ``target`` (so recall is as high as possible).

    ``None`` when no threshold reaches the target.

    >>> lowest_threshold_for_precision(np.array([1, 1, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6]), 0.99)
    0.8
    """
    curve = precision_recall_curve(actual, scores)
    reaching = np.flatnonzero(curve["precision"] >= target)
    if reaching.size == 0:
        return None
    return float(curve["thresholds"][reaching.max()])


@dataclass(frozen=True)
class ThresholdPolicy:
    """How to pick thresholds: review at best F1 unless a minimum precision is given."""

    review_min_precision: float | None = None
    block_precision: float = 0.95


def choose_thresholds(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str], policy: ThresholdPolicy) -> dict:
    """Per-label review/block thresholds with the method, target and outcome of each choice.

    Returns ``{label: {"review", "block", "review_method", "block_method", "notes": [...]}}``.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    best_thresholds, _ = best_f1_thresholds(y_true, probs)
    chosen = {}
    for k, label in enumerate(labels):
        notes: list[str] = []
        review, review_method = float(best_thresholds[k]), "best_f1"
        if policy.review_min_precision is not None:
            found = lowest_threshold_for_precision(y_true[:, k], probs[:, k], policy.review_min_precision)
            if found is None:
                notes.append(f"review precision >= {policy.review_min_precision} unreachable on calibration data; fell back to best F1")
            else:
                review, review_method = found, f"min_precision>={policy.review_min_precision}"
        block = lowest_threshold_for_precision(y_true[:, k], probs[:, k], policy.block_precision)
        if block is None:
            notes.append(f"block precision >= {policy.block_precision} unreachable; block disabled (threshold 1.0)")
            block = NEVER
        chosen[label] = {
            "review": review,
            "block": max(block, review),
            "review_method": review_method,
            "block_method": f"min_precision>={policy.block_precision}",
            "notes": notes,
        }
    return chosen


def calibrate(logits: np.ndarray, y_true: np.ndarray, labels: Sequence[str], policy: ThresholdPolicy) -> tuple[np.ndarray, dict]:
    """Fit temperatures, then choose thresholds on the calibrated probabilities."""
    temperatures = fit_temperatures(logits, y_true)
    probs = calibrated_probs(logits, temperatures)
    return temperatures, choose_thresholds(y_true, probs, labels, policy)
