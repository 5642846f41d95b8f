"""Probability calibration and threshold selection, as functions over arrays.

``logits[N, K]`` are raw model outputs; ``y_true[N, K]`` 0/1. Per label, on a held-out
calibration split, either temperature scaling (``sigmoid(z / T)``, one scalar) or Platt scaling
(``sigmoid(z / T + b)``, a scale and a bias) is fitted; thresholds are then chosen on the
*calibrated* probabilities, so that serving (which applies the same map through
``qingfin.serve.scoring``) reproduces them exactly.

Platt is the default because a temperature cannot move a shifted score distribution: a student
distilled from soft targets or trained with ``pos_weight`` can be both under-confident and
biased, which only the bias term corrects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qingfin.models.metrics import best_f1_thresholds, precision_recall_curve
from qingfin.serve.scoring import calibrated_probs, sigmoid

# Search range for log-temperature: T in [e^-3, e^3] covers every sane over/under-confidence.
_LOG_T_RANGE = (-3.0, 3.0)
CALIBRATION_METHODS = ("platt", "temperature")
NEVER = 1.0  # a block threshold of 1.0 means "no auto-block": the precision target was unreachable


def _bce(z: np.ndarray, y: np.ndarray, a: float, b: float = 0.0) -> float:
    """Mean binary cross-entropy of ``sigmoid(a z + b)``, computed stably: log(1 + e^s) - y s."""
    s = a * z + b
    return float(np.mean(np.logaddexp(0.0, s) - y * s))


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
    fa, fb = _bce(logits, y, np.exp(-a)), _bce(logits, y, np.exp(-b))
    for _ in range(iterations):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = _bce(logits, y, np.exp(-a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = _bce(logits, y, np.exp(-b))
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


def fit_platt(logits: np.ndarray, y_true: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """``(temperature, bias)`` minimising binary cross-entropy of ``sigmoid(logits / T + b)``.

    Newton's method on the scale ``a = 1 / T`` and ``b`` (the loss is convex in them) with a
    backtracking line search. ``T`` is kept in the temperature search range, so the map stays
    increasing and finite even on separable data; ``b`` is then refitted for the kept ``T``.

    >>> t, b = fit_platt(np.array([2.0, 3.0, 4.0, 5.0, 6.0, 7.0]), np.array([0, 0, 1, 0, 1, 1]))
    >>> 0 < t < 20 and b < 0
    True
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.float64)
    ridge = 1e-6  # keeps the Hessian invertible when the data are separable
    low, high = np.exp(-_LOG_T_RANGE[1]), np.exp(-_LOG_T_RANGE[0])  # bounds on a = 1/T
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = sigmoid(a * z + b)
        r, w = p - y, p * (1.0 - p)
        gradient = np.array([np.mean(r * z) + ridge * a, np.mean(r) + ridge * b])
        hessian = np.array([[np.mean(w * z * z) + ridge, np.mean(w * z)], [np.mean(w * z), np.mean(w) + ridge]])
        step = np.linalg.solve(hessian, gradient)
        before, t = _bce(z, y, a, b), 1.0
        while t > 1e-6 and _bce(z, y, a - t * step[0], b - t * step[1]) > before:
            t /= 2
        a, b = a - t * step[0], b - t * step[1]
        if abs(t * step).max() < 1e-9 or a > 10 * high:
            break
    if not low <= a <= high:
        a = float(np.clip(a, low, high))
        # b alone for the kept scale: mean(sigmoid(a z + b)) = mean(y) is increasing in b.
        b_low, b_high = -60.0, 60.0
        for _ in range(80):
            b = (b_low + b_high) / 2
            if np.mean(sigmoid(a * z + b)) < np.mean(y):
                b_low = b
            else:
                b_high = b
    return float(1.0 / a), float(b)


def fit_calibration(logits: np.ndarray, y_true: np.ndarray, method: str = "platt") -> tuple[np.ndarray, np.ndarray]:
    """Per-label ``(temperatures[K], biases[K])``; labels without both classes keep the identity."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    logits = np.asarray(logits, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.float64)
    if method == "temperature":
        return fit_temperatures(logits, y_true), np.zeros(logits.shape[1])
    temperatures, biases = np.ones(logits.shape[1]), np.zeros(logits.shape[1])
    for k in range(logits.shape[1]):
        if 0 < y_true[:, k].sum() < len(y_true):
            temperatures[k], biases[k] = fit_platt(logits[:, k], y_true[:, k])
    return temperatures, biases


def wilson_lower_bound(precision: np.ndarray, flagged: np.ndarray, confidence: float) -> np.ndarray:
    """One-sided Wilson score lower bound of a precision measured on ``flagged`` rows.

    With ``confidence`` 0.9, the true precision is at least the bound in 90 % of samples of that
    size. 0.5 gives the measured precision back.

    >>> round(float(wilson_lower_bound(np.array(0.9), np.array(100), 0.95)), 4)
    0.8396
    """
    from statistics import NormalDist

    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"precision confidence must be in [0.5, 1), got {confidence}")
    z = NormalDist().inv_cdf(confidence)
    p = np.asarray(precision, dtype=np.float64)
    n = np.maximum(np.asarray(flagged, dtype=np.float64), 1.0)
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.clip((centre - spread) / (1 + z * z / n), 0.0, 1.0)


def threshold_for_precision(
    actual: np.ndarray, scores: np.ndarray, target: float, confidence: float | None = None, at_least: float | None = None
) -> float | None:
    """The threshold with the most recall whose precision is >= ``target``; among thresholds
    with that recall, the highest (the fewest false positives).

    Why not simply the lowest threshold that reaches the target: below the last positive it
    gains, lowering the threshold adds only negatives, and keeps doing so while precision stays
    above the target. Those thresholds flag more false positives for the same recall; the rule
    here flags the same positives and drops them. On a well-separated label the difference is
    large (on a perfect ranker the lowest threshold spends the whole precision budget on false
    positives and caps F1 near 0.92 at a 0.85 target).

    With ``confidence``, the precision must be >= ``target`` at that one-sided confidence
    (Wilson lower bound over the rows flagged at the threshold), not merely as measured: the
    threshold that just touches a target is the luckiest point of a noisy curve, and with ~70
    positives per label the precision on unseen data then falls a few points short.
    ``at_least`` considers only thresholds >= it. ``None`` when no threshold reaches the target.

    >>> threshold_for_precision(np.array([1, 1, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6]), 0.99)
    0.8
    >>> threshold_for_precision(np.array([1, 1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.6, 0.5]), 0.6)
    0.6
    """
    curve = precision_recall_curve(actual, scores)
    precision = curve["precision"]
    if confidence is not None:
        flagged = np.round(curve["flag_rate"] * len(np.asarray(scores)))
        precision = wilson_lower_bound(precision, flagged, confidence)
    reaching = precision >= target
    if at_least is not None:
        reaching &= curve["thresholds"] >= at_least
    if not reaching.any():
        return None
    most_recall = curve["recall"][reaching].max()
    return float(curve["thresholds"][reaching & (curve["recall"] >= most_recall)].max())


@dataclass(frozen=True)
class ThresholdPolicy:
    """How to pick thresholds: review at best F1 unless a minimum precision is given.

    ``precision_confidence`` (e.g. 0.9) makes both precision targets one-sided confidence bounds
    on the calibration rows (see :func:`threshold_for_precision`); ``None`` uses the
    measured precision.

    ``bootstrap_resamples`` > 0 chooses each threshold as the median, over that many bootstrap
    resamples of the calibration rows (seeded by ``bootstrap_seed``), of the threshold the rule
    picks on each resample. Why: every rule above puts the threshold on the score of one
    calibration row, so a single lucky row (or a 0.01 change of scores, as between an int8 graph
    and its fp32 twin) can move it far. The median over resamples keeps thresholds that many
    resamples agree on; it is the rule's answer made stable, not a different rule. Use an odd
    count so the median is a threshold some resample chose. A precision threshold is then raised
    where needed until all calibration rows meet its target (recorded in the label's notes).

    ``review_min_probability`` > 0 keeps the review threshold at or above that calibrated
    probability (raised further, if needed, until calib still meets the review target). Why:
    a precision target bounds the precision of everything flagged, not of the last row added.
    With a sharp ranker, "the most recall at precision >= 0.85" reaches down the tail to rows of
    calibrated probability 0.01, because the rows above carry the average; a reviewer would
    find such rows to be violations about once in a hundred. The floor bounds the marginal row
    instead: nothing goes to review that is not at least that likely a violation.
    """

    review_min_precision: float | None = None
    block_precision: float = 0.95
    precision_confidence: float | None = None
    bootstrap_resamples: int = 0
    bootstrap_seed: int = 0
    review_min_probability: float = 0.0

    def __post_init__(self) -> None:
        if self.precision_confidence is not None and not 0.5 <= self.precision_confidence < 1.0:
            raise ValueError(f"precision_confidence must be in [0.5, 1) or None, got {self.precision_confidence}")
        if isinstance(self.bootstrap_resamples, bool) or not isinstance(self.bootstrap_resamples, int) or self.bootstrap_resamples < 0:
            raise ValueError(f"bootstrap_resamples must be an integer >= 0, got {self.bootstrap_resamples!r}")
        if not 0.0 <= self.review_min_probability < 1.0:
            raise ValueError(f"review_min_probability must be in [0, 1), got {self.review_min_probability}")

    def document(self) -> dict:
        """The ``policy`` record of a ``thresholds.json`` document (``precision_confidence`` and
        the bootstrap fields and ``review_min_probability`` only when set, so documents written
        before those options existed stay byte-identical)."""
        record = {"review_min_precision": self.review_min_precision, "block_precision": self.block_precision}
        if self.precision_confidence is not None:
            record["precision_confidence"] = self.precision_confidence
        if self.bootstrap_resamples:
            record["bootstrap_resamples"] = self.bootstrap_resamples
            record["bootstrap_seed"] = self.bootstrap_seed
        if self.review_min_probability:
            record["review_min_probability"] = self.review_min_probability
        return record


def _best_f1_threshold(actual: np.ndarray, scores: np.ndarray) -> float:
    return float(best_f1_thresholds(actual[:, None], scores[:, None])[0][0])


def _stable(rule, actual: np.ndarray, scores: np.ndarray, resamples: np.ndarray | None) -> float | None:
    """``rule(actual, scores)`` on all rows, or its median over the row ``resamples[B, N]``.

    A resample where the rule finds no threshold counts as :data:`NEVER` (flag nothing), so the
    median is ``None`` when most resamples cannot reach the target.
    """
    if resamples is None:
        return rule(actual, scores)
    chosen = [rule(actual[rows], scores[rows]) for rows in resamples]
    median = float(np.median([NEVER if t is None else t for t in chosen]))
    return None if median >= NEVER else median


def choose_thresholds(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str], policy: ThresholdPolicy) -> dict:
    """Per-label review/block thresholds with the method, target and outcome of each choice.

    Returns ``{label: {"review", "block", "review_method", "block_method", "notes": [...]}}``.
    With ``policy.bootstrap_resamples`` each threshold is the median over resamples (the same
    resamples for every label and target); a precision threshold is then raised where needed
    until all calibration rows meet its target, so the target holds on calib either way.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    resamples = None
    if policy.bootstrap_resamples:
        rng = np.random.default_rng(policy.bootstrap_seed)
        resamples = rng.integers(0, len(y_true), size=(policy.bootstrap_resamples, len(y_true)))
    confidence = policy.precision_confidence
    at = "" if confidence is None else f" at {confidence:g} confidence"
    median_of = f", median of {policy.bootstrap_resamples} bootstrap resamples" if resamples is not None else ""
    floor = policy.review_min_probability
    at_floor = f" and probability>={floor:g}" if floor else ""

    def reaching(target: float):
        return lambda actual, scores: threshold_for_precision(actual, scores, target, confidence)

    def for_precision(target: float, actual: np.ndarray, scores: np.ndarray) -> tuple[float | None, str]:
        """The threshold for a precision target and a note: why it is ``None``, or how it was moved."""
        plain = threshold_for_precision(actual, scores, target, confidence)
        if plain is None:
            return None, f"precision >= {target}{at} unreachable on calibration data"
        if resamples is None:
            return plain, ""
        median = _stable(reaching(target), actual, scores, resamples)
        if median is None:
            return None, f"precision >= {target}{at} unreachable on most bootstrap resamples"
        # Raised where needed so that all of calib still meets the target at the threshold: the
        # contract of a precision target. Nothing at or above the median meets it only when the
        # median sits above every threshold that does; the rule on all rows then stands.
        raised = threshold_for_precision(actual, scores, target, confidence, at_least=median)
        if raised is None:
            return plain, f"precision >= {target}{at}: the bootstrap median {median:.4f} is above every threshold meeting it on calib; the rule on all calib rows is used"
        if raised > median:
            return raised, f"precision >= {target}{at}: bootstrap median {median:.4f} raised to {raised:.4f} so that all of calib meets it"
        return raised, ""

    chosen = {}
    for k, label in enumerate(labels):
        actual, scores = y_true[:, k], probs[:, k]
        notes: list[str] = []
        review, review_method = None, "best_f1"
        if policy.review_min_precision is not None:
            review, note = for_precision(policy.review_min_precision, actual, scores)
            if review is None:
                notes.append(f"review {note}; fell back to best F1")
            else:
                review_method = f"max_recall at precision>={policy.review_min_precision}{at}"
                notes += [f"review {note}"] if note else []
                if review < floor:
                    # The most recall above the floor that still meets the target on calib.
                    floored = threshold_for_precision(actual, scores, policy.review_min_precision, confidence, at_least=floor)
                    if floored is None:
                        notes.append(f"review: no threshold >= probability {floor:g} meets precision "
                                     f">= {policy.review_min_precision}{at} on calib; the floor is not applied")
                    else:
                        notes.append(f"review {review:.4f} raised to {floored:.4f}: below the probability floor {floor:g}")
                        review = floored
        if review is None:
            review = _stable(_best_f1_threshold, actual, scores, resamples)
            if review < floor:
                notes.append(f"review {review:.4f} raised to the probability floor {floor:g}")
                review = floor
        block, note = for_precision(policy.block_precision, actual, scores)
        if block is None:
            notes.append(f"block {note}; block disabled (threshold 1.0)")
            block = NEVER
        else:
            notes += [f"block {note}"] if note else []
        chosen[label] = {
            "review": review,
            "block": max(block, review),
            "review_method": review_method + at_floor + median_of,
            "block_method": f"max_recall at precision>={policy.block_precision}{at}" + median_of,
            "notes": notes,
        }
    return chosen


def calibrate(
    logits: np.ndarray, y_true: np.ndarray, labels: Sequence[str], policy: ThresholdPolicy, method: str = "platt"
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Fit the calibration map, then choose thresholds on the calibrated probabilities.

    Returns ``(temperatures[K], biases[K], thresholds)`` (see :func:`choose_thresholds`).
    """
    temperatures, biases = fit_calibration(logits, y_true, method)
    probs = calibrated_probs(logits, temperatures, biases)
    return temperatures, biases, choose_thresholds(y_true, probs, labels, policy)
