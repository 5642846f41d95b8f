"""The label schema shared by data, training and serving.

The order of ``LABELS`` is the column order of every probability matrix in the project.
A change of meaning or order is a ``SCHEMA_VERSION`` bump (and a major model version).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Label:
    id: str
    zh: str
    en: str


LABEL_INFO: tuple[Label, ...] = (
    Label("impersonation", "冒充专业身份误导公众", "Impersonating a financial professional or institution"),
    Label("traffic_diversion", "隐蔽违规引流", "Covert diversion to private channels"),
    Label("illegal_lending", "为非法存贷款中介提供推广", "Promoting illegal lending or deposit-taking"),
    Label("grey_industry", "参与“代理维权”等金融黑灰产", "Financial grey industry (rights-protection agency etc.)"),
    Label("defamation", "恶意诋毁金融机构", "Malicious defamation of a financial institution"),
    Label("economic_rumor", "散布虚假信息唱衰经济", "False information undermining economic confidence"),
)
LABELS: tuple[str, ...] = tuple(label.id for label in LABEL_INFO)
LABEL_INDEX: dict[str, int] = {label: i for i, label in enumerate(LABELS)}


class UnknownLabelError(ValueError):
    """Raised for a label name that is not in the schema."""


def to_multi_hot(labels: Iterable[str], label_order: Sequence[str] = LABELS) -> np.ndarray:
    """Encode label names as a float32 multi-hot vector of shape ``[K]``.

    >>> to_multi_hot(["defamation", "impersonation"]).tolist()
    [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    """
    index = {label: i for i, label in enumerate(label_order)}
    vector = np.zeros(len(label_order), dtype=np.float32)
    for label in labels:
        if label not in index:
            raise UnknownLabelError(f"unknown label {label!r}; known: {', '.join(label_order)}")
        vector[index[label]] = 1.0
    return vector


def from_multi_hot(vector: Sequence[float], label_order: Sequence[str] = LABELS) -> list[str]:
    """Decode a multi-hot vector ``[K]`` back to label names (entries > 0.5), in schema order.

    >>> from_multi_hot([0, 1, 0, 0, 0, 1])
    ['traffic_diversion', 'economic_rumor']
    """
    if len(vector) != len(label_order):
        raise ValueError(f"vector has {len(vector)} entries, schema has {len(label_order)} labels")
    return [label for label, value in zip(label_order, vector) if value > 0.5]


def labels_matrix(rows: Iterable[Sequence[str]], label_order: Sequence[str] = LABELS) -> np.ndarray:
    """Stack label lists into a ``[N, K]`` float32 multi-hot matrix."""
    vectors = [to_multi_hot(labels, label_order) for labels in rows]
    if not vectors:
        return np.zeros((0, len(label_order)), dtype=np.float32)
    return np.stack(vectors)


def labels_document() -> dict:
    """The ``labels.json`` document written into every model bundle."""
    return {
        "schema_version": SCHEMA_VERSION,
        "labels": [{"id": l.id, "zh": l.zh, "en": l.en} for l in LABEL_INFO],
    }
