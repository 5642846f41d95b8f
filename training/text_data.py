"""Reading labeled splits into normalized texts and multi-hot targets for training."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qingfin.data.normalize import get_normalizer
from qingfin.data.rows import read_rows
from qingfin.data.schema import LABELS, labels_matrix

logger = logging.getLogger(__name__)


@dataclass
class Split:
    """Rows of one split with their normalized texts ``[N]`` and targets ``y[N, K]``."""

    rows: list[dict]
    texts: list[str]
    y: np.ndarray


def load_split(path: str | Path, normalizer_name: str) -> Split:
    rows = read_rows(path)
    normalizer = get_normalizer(normalizer_name)
    return Split(
        rows,
        [normalizer(r["text"]) for r in rows],
        labels_matrix([r["labels"] for r in rows], LABELS),
    )


def augmented_rows(rows: list[dict], seed: int, copies: int) -> list[dict]:
    """Disguised copies of positive rows made with the attack suite (label-preserving).

    Each copy of a row uses one attack kind drawn per row, so augmentation adds about
    ``copies`` × positives rows rather than one per kind.
    """
    import random

    from qingfin.data.attack import ATTACK_KINDS, attack_rows

    positives = [r for r in rows if r["labels"]]
    extra: list[dict] = []
    for copy in range(copies):
        rng = random.Random(f"augment:{seed}:{copy}")
        for row in positives:
            extra.extend(attack_rows([row], [rng.choice(ATTACK_KINDS)], seed=seed + copy))
    logger.info("augmentation: %d disguised copies of %d positive rows", len(extra), len(positives))
    return extra


def pos_weights(y: np.ndarray, cap: float) -> np.ndarray:
    """Per-label ``negatives / positives`` clipped to ``[1, cap]`` (``[K]``); 1 for absent labels.

    >>> pos_weights(np.array([[1, 0], [0, 0], [0, 0], [0, 1]]), cap=10).tolist()
    [3.0, 3.0]
    """
    positives = y.sum(0)
    negatives = len(y) - positives
    weights = np.divide(
        negatives, positives, out=np.ones_like(positives, dtype=np.float64), where=positives > 0
    )
    return np.clip(weights, 1.0, cap)
