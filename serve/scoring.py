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


def calibrated_probs(logits: np.ndarray, temperatures: np.ndarray, biases: np.ndarray | None = None) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(logits[N, K] / temperatures[K] + biases[K])``.

    Temperature scaling has ``biases = 0``; Platt scaling fits both per label. Either way each
    label's map is increasing, so the ranking of texts (and every PR curve) is the model's own.

    >>> calibrated_probs(np.array([[0.0, 2.0]]), np.array([1.0, 2.0])).astype(float).round(3).tolist()
    [[0.5, 0.731]]
    >>> calibrated_probs(np.array([[0.0]]), np.array([1.0]), np.array([-1.0])).astype(float).round(3).tolist()
    [[0.269]]
    """
    logits = np.asarray(logits, dtype=np.float64)
    temperatures = np.asarray(temperatures, dtype=np.float64)
    biases = np.zeros_like(temperatures) if biases is None else np.asarray(biases, dtype=np.float64)
    if logits.ndim != 2 or not logits.shape[1] == temperatures.shape[0] == biases.shape[0]:
        raise ValueError(
            f"logits {logits.shape} do not match {temperatures.shape[0]} temperatures / {biases.shape[0]} biases"
        )
    return sigmoid(logits / temperatures + biases).astype(np.float32)


def calibration_from_document(calibration: Mapping, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-label ``(temperatures[K], biases[K])`` from a ``calibration.json`` document.

    Method ``none`` (or absent) is the identity (T = 1, bias = 0); ``temperature`` documents
    carry no bias (0); ``platt`` documents carry both.
    """
    if calibration.get("method") in (None, "none"):
        return np.ones(len(labels)), np.zeros(len(labels))
    per_label = calibration["per_label"]
    return (
        np.array([float(per_label[label]["temperature"]) for label in labels]),
        np.array([float(per_label[label].get("bias", 0.0)) for label in labels]),
    )


def decide(score: float, review: float, block: float) -> str:
    """``block`` at or above the block threshold, ``review`` at or above review, else ``pass``."""
    if score >= block:
        return "block"
    if score >= review:
        return "review"
    return "pass"


def most_severe(decisions: Sequence[str]) -> str:
    return max(decisions, key=DECISIONS.index, default="pass")
