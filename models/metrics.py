"""Multi-label metrics as functions over arrays.

Conventions: ``y_true[N, K]`` is 0/1 (any numeric dtype), ``probs[N, K]`` are probabilities in
[0, 1], ``thresholds[K]`` are per-label cut-offs; a prediction is positive when
``probs >= threshold``. Per-label results are arrays ``[K]``. Undefined ratios (no predicted or
no true positives) are 0.0, like scikit-learn's ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if y_true.shape != probs.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and probs {probs.shape} must both be [N, K]")
    return y_true, probs


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64), where=denominator > 0)


def confusion_counts(y_true: np.ndarray, probs: np.ndarray, thresholds: Sequence[float]) -> dict[str, np.ndarray]:
    """Per-label ``tp, fp, fn, tn`` counts ``[K]`` at the given thresholds.

    >>> confusion_counts([[1, 0], [0, 1]], [[0.9, 0.2], [0.6, 0.4]], [0.5, 0.5])["fp"].tolist()
    [1, 0]
    """
    y_true, probs = _check(y_true, probs)
    predicted = probs >= np.asarray(thresholds, dtype=np.float64)[None, :]
    actual = y_true > 0.5
    return {
        "tp": (predicted & actual).sum(0),
        "fp": (predicted & ~actual).sum(0),
        "fn": (~predicted & actual).sum(0),
        "tn": (~predicted & ~actual).sum(0),
    }


def precision_recall_f1(y_true: np.ndarray, probs: np.ndarray, thresholds: Sequence[float]) -> dict[str, np.ndarray]:
    """Per-label precision, recall, F1 ``[K]`` and support at the thresholds."""
    counts = confusion_counts(y_true, probs, thresholds)
    tp, fp, fn = (counts[k].astype(np.float64) for k in ("tp", "fp", "fn"))
    precision = _safe_divide(tp, tp + fp)
    recall = _safe_divide(tp, tp + fn)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}


def micro_prf(y_true: np.ndarray, probs: np.ndarray, thresholds: Sequence[float]) -> dict[str, float]:
    """Micro-averaged precision, recall and F1 (counts pooled over labels)."""
    counts = confusion_counts(y_true, probs, thresholds)
    tp, fp, fn = (float(counts[k].sum()) for k in ("tp", "fp", "fn"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def average_precision(y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-label area under the precision-recall curve (step-wise average precision) ``[K]``.

    Equal to ``sklearn.metrics.average_precision_score`` per column; 0.0 for a label with no
    positives.

    >>> average_precision([[1], [0], [1]], [[0.9], [0.8], [0.7]]).round(4).tolist()
    [0.8333]
    """
    y_true, probs = _check(y_true, probs)
    result = np.zeros(y_true.shape[1])
    for k in range(y_true.shape[1]):
        result[k] = _average_precision_1d(y_true[:, k] > 0.5, probs[:, k])
    return result


def _average_precision_1d(actual: np.ndarray, scores: np.ndarray) -> float:
    positives = actual.sum()
    if positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    scores, actual = scores[order], actual[order]
    # Only the last index of each run of tied scores is a distinct threshold.
    last_of_tie = np.r_[np.diff(scores) != 0, True]
    tp = np.cumsum(actual)[last_of_tie]
    predicted = (np.arange(len(actual)) + 1)[last_of_tie]
    precision = tp / predicted
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = 10) -> np.ndarray:
    """Per-label ECE ``[K]`` with equal-width bins: sum over bins of |mean prob - positive rate| × share.

    >>> expected_calibration_error([[1], [0]], [[1.0], [0.0]]).tolist()
    [0.0]
    """
    y_true, probs = _check(y_true, probs)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds (edges[i], edges[i+1]]; probability 0 goes to the first bin.
    index = np.clip(np.searchsorted(edges, probs, side="left") - 1, 0, bins - 1)
    ece = np.zeros(y_true.shape[1])
    n = y_true.shape[0]
    for k in range(y_true.shape[1]):
        for b in range(bins):
            mask = index[:, k] == b
            if mask.any():
                ece[k] += mask.sum() / n * abs(probs[mask, k].mean() - y_true[mask, k].mean())
    return ece


def best_f1_thresholds(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per label, the threshold maximising F1 and that F1 (``[K]``, ``[K]``).

    Candidate thresholds are the observed scores; a label with no positives gets threshold 1.0
    and F1 0.0.
    """
    y_true, probs = _check(y_true, probs)
    thresholds = np.ones(y_true.shape[1])
    best = np.zeros(y_true.shape[1])
    for k in range(y_true.shape[1]):
        curve = precision_recall_curve(y_true[:, k], probs[:, k])
        if curve["thresholds"].size == 0:
            continue
        f1 = _safe_divide(2 * curve["precision"] * curve["recall"], curve["precision"] + curve["recall"])
        i = int(np.argmax(f1))
        thresholds[k], best[k] = curve["thresholds"][i], f1[i]
    return thresholds, best


def macro_f1_difference_interval(y_true: np.ndarray, flags_a: np.ndarray, flags_b: np.ndarray, resamples: int = 2000,
                                 level: float = 0.9, seed: int = 0) -> dict[str, float]:
    """Macro-F1 of system A minus system B on the same rows, with a paired bootstrap interval.

    ``flags_a`` / ``flags_b`` are the two systems' 0/1 decisions ``[N, K]`` (thresholds already
    applied, so the interval covers the variation of the test rows, not of the thresholds).
    Resampling rows for both systems at once keeps what they share out of the spread. Returns
    ``{"difference", "low", "high", "level", "resamples"}``.

    >>> y = np.array([[1], [1], [0], [0]])
    >>> out = macro_f1_difference_interval(y, y.astype(bool), np.array([[1], [0], [0], [1]]) > 0, resamples=200)
    >>> round(out["difference"], 2), out["low"] <= out["difference"] <= out["high"]
    (0.5, True)
    """
    y = np.asarray(y_true) > 0.5
    flags = {"a": np.asarray(flags_a, dtype=bool), "b": np.asarray(flags_b, dtype=bool)}
    if not (y.shape == flags["a"].shape == flags["b"].shape):
        raise ValueError(f"shapes differ: y {y.shape}, a {flags['a'].shape}, b {flags['b'].shape}")

    def macro_f1(rows: np.ndarray, f: np.ndarray) -> np.ndarray:
        # rows: [B, N] row indices; per resample and label, F1 = 2tp / (2tp + fp + fn)
        actual, flagged = y[rows], f[rows]
        tp = (actual & flagged).sum(1)
        wrong = (actual ^ flagged).sum(1)
        return _safe_divide(2 * tp, 2 * tp + wrong).mean(-1)

    everything = np.arange(len(y))[None, :]
    difference = float(macro_f1(everything, flags["a"])[0] - macro_f1(everything, flags["b"])[0])
    rng = np.random.default_rng(seed)
    spread = []
    for start in range(0, resamples, 200):  # chunks keep memory at 200 x N x K
        rows = rng.integers(0, len(y), size=(min(200, resamples - start), len(y)))
        spread.append(macro_f1(rows, flags["a"]) - macro_f1(rows, flags["b"]))
    low, high = np.quantile(np.concatenate(spread), [(1 - level) / 2, (1 + level) / 2])
    return {"difference": difference, "low": float(low), "high": float(high), "level": level, "resamples": resamples}


def precision_recall_curve(actual: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """For one label: precision, recall and flag rate at every distinct score used as threshold.

    Arrays are ordered by decreasing threshold. Empty when there are no positives.
    """
    actual = np.asarray(actual, dtype=np.float64) > 0.5
    scores = np.asarray(scores, dtype=np.float64)
    positives = actual.sum()
    if positives == 0 or scores.size == 0:
        empty = np.zeros(0)
        return {"thresholds": empty, "precision": empty, "recall": empty, "flag_rate": empty}
    order = np.argsort(-scores, kind="mergesort")
    scores, actual = scores[order], actual[order]
    last_of_tie = np.r_[np.diff(scores) != 0, True]
    tp = np.cumsum(actual)[last_of_tie]
    predicted = (np.arange(len(actual)) + 1)[last_of_tie]
    return {
        "thresholds": scores[last_of_tie],
        "precision": tp / predicted,
        "recall": tp / positives,
        "flag_rate": predicted / len(actual),
    }


def macro_f1_at_best(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean over labels of the best achievable F1 — a threshold-free model-selection score."""
    return float(best_f1_thresholds(y_true, probs)[1].mean())


def report(y_true: np.ndarray, probs: np.ndarray, thresholds: Sequence[float], labels: Sequence[str]) -> dict:
    """All metrics at one set of thresholds: per label, micro and macro averages."""
    per = precision_recall_f1(y_true, probs, thresholds)
    ap = average_precision(y_true, probs)
    ece = expected_calibration_error(y_true, probs)
    per_label = {
        label: {
            "precision": float(per["precision"][k]),
            "recall": float(per["recall"][k]),
            "f1": float(per["f1"][k]),
            "pr_auc": float(ap[k]),
            "ece": float(ece[k]),
            "support": int(per["support"][k]),
            "threshold": float(thresholds[k]),
        }
        for k, label in enumerate(labels)
    }
    macro = {name: float(np.mean(per[name])) for name in ("precision", "recall", "f1")}
    macro["pr_auc"] = float(ap.mean())
    macro["ece"] = float(ece.mean())
    return {"per_label": per_label, "macro": macro, "micro": micro_prf(y_true, probs, thresholds), "rows": int(np.asarray(y_true).shape[0])}
