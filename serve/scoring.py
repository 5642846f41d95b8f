"""Turning model logits into calibrated probabilities and decisions (numpy only).

Shared by serving and by calibration fitting, so that the probabilities a threshold was chosen
on are computed exactly as in production.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DECISIONS = ("pass", "review", "block")  # in increasing severity


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, elementwise; keeps the dtype of float inputs."""
    logits = np.asarray(logits)
    out = np.empty_like(logits, dtype=np.result_type(logits.dtype, np.float32))
    positive = logits >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-logits[positive]))
    exp = np.exp(logits[~positive])
    out[~positive] = exp / (1.0 + exp)
    return out


def calibrated_probs(logits: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    """Temperature-scaled probabilities: ``sigmoid(logits[N, K] / temperatures[K])``.

    >>> calibrated_probs(np.array([[0.0, 2.0]]), np.array([1.0, 2.0])).astype(float).round(3).tolist()
    [[0.5, 0.731]]
    """
    logits = np.asarray(logits, dtype=np.float64)
    temperatures = np.asarray(temperatures, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != temperatures.shape[0]:
        raise ValueError(f"logits {logits.shape} do not match {temperatures.shape[0]} temperatures")
    return sigmoid(logits / temperatures).astype(np.float32)


def temperatures_from_document(calibration: Mapping, labels: Sequence[str]) -> np.ndarray:
    """Per-label temperatures ``[K]`` from a ``calibration.json`` document (1.0 = uncalibrated)."""
    if calibration.get("method") in (None, "none"):
        return np.ones(len(labels))
    per_label = calibration["per_label"]
    return np.array([float(per_label[label]["temperature"]) for label in labels])


def decide(score: float, review: float, block: float) -> str:
    """``block`` at or above the block threshold, ``review`` at or above review, else ``pass``."""
    if score >= block:
        return "block"
    if score >= review:
        return "review"
    return "pass"


def most_severe(decisions: Sequence[str]) -> str:
    return max(decisions, key=DECISIONS.index, default="pass")
