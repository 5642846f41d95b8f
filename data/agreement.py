"""Inter-annotator agreement between two labeling passes (Cohen's kappa and F1 per label)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from qingfin.data.schema import LABELS, labels_matrix


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two binary annotation vectors ``[N]`` (1.0 when both are constant and equal).

    >>> cohen_kappa(np.array([1, 0, 1, 0]), np.array([1, 0, 0, 0]))
    0.5
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    observed = float((a == b).mean())
    p_a, p_b = a.mean(), b.mean()
    expected = float(p_a * p_b + (1 - p_a) * (1 - p_b))
    return 1.0 if expected == 1.0 else (observed - expected) / (1 - expected)


def agreement(first: Mapping[str, Sequence[str]], second: Mapping[str, Sequence[str]]) -> dict:
    """Per-label kappa, F1 between passes, positives per pass, over ids labeled by both."""
    ids = sorted(set(first) & set(second))
    a = labels_matrix([first[i] for i in ids])
    b = labels_matrix([second[i] for i in ids])
    per_label = {}
    for k, label in enumerate(LABELS):
        both = float((a[:, k] * b[:, k]).sum())
        total = float(a[:, k].sum() + b[:, k].sum())
        per_label[label] = {"kappa": cohen_kappa(a[:, k], b[:, k]), "f1": 2 * both / total if total else 1.0,
                            "first_positives": int(a[:, k].sum()), "second_positives": int(b[:, k].sum())}
    exact = float((a == b).all(1).mean()) if ids else 0.0
    return {"rows": len(ids), "exact_match": exact, "per_label": per_label,
            "disagreements": [i for i, x, y in zip(ids, a, b) if not (x == y).all()]}
