"""Versioned text normalizers, shared by training and serving (no training/serving skew).

A normalizer is looked up by a versioned name such as ``"zh_basic.v1"``. A published name is
never redefined: changing behaviour means registering ``.v2``. Every model bundle records the
name and settings of the normalizer it was trained with, and serving refuses a name it does
not know.

Each normalizer returns the normalized text together with an offset map: ``offsets[i]`` is the
index in the *original* text of the character that produced normalized character ``i``. Spans
found on normalized text (contacts, lexicon hits) are mapped back through it, so users always
see positions in what they submitted.
"""

from __future__ import annotations

import importlib
import unicodedata
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Normalized",
    "Normalizer",
    "ZhBasicV1",
    "get_normalizer",
    "known_normalizers",
    "original_span",
]


@dataclass(frozen=True)
class Normalized:
    """Normalized text plus, per normalized character, its index in the original text."""

    text: str
    offsets: tuple[int, ...]


class Normalizer(Protocol):
    name: str

    def __call__(self, text: str) -> str: ...

    def normalize(self, text: str) -> Normalized: ...

    def settings(self) -> dict: ...


def original_span(normalized: Normalized, start: int, end: int, original_length: int) -> tuple[int, int]:
    """Map a half-open span ``[start, end)`` of normalized text to the original text.

    >>> n = ZhBasicV1().normalize("加\u200b微 信")
    >>> n.text, original_span(n, 1, 4, 5)
    ('加微 信', (2, 5))
    """
    if start >= end or not normalized.offsets:
        position = normalized.offsets[start] if start < len(normalized.offsets) else original_length
        return position, position
    first = normalized.offsets[start]
    last = normalized.offsets[end - 1]
    return first, last + 1


# Characters that render as nothing and are used to split words past keyword filters.
ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e")


def _nfkc_with_offsets(text: str) -> tuple[list[str], list[int]]:
    """NFKC per original character, keeping each output character's source index."""
    chars: list[str] = []
    offsets: list[int] = []
    for index, char in enumerate(text):
        if char in ZERO_WIDTH:
            continue
        for out in unicodedata.normalize("NFKC", char):
            chars.append(out)
            offsets.append(index)
    return chars, offsets


def _fold_whitespace(chars: list[str], offsets: list[int]) -> tuple[list[str], list[int]]:
    """Collapse runs of whitespace to one ASCII space and strip both ends."""
    out_chars: list[str] = []
    out_offsets: list[int] = []
    for char, offset in zip(chars, offsets):
        if char.isspace():
            if out_chars and out_chars[-1] != " ":
                out_chars.append(" ")
                out_offsets.append(offset)
            continue
        out_chars.append(char)
        out_offsets.append(offset)
    if out_chars and out_chars[-1] == " ":
        out_chars.pop()
        out_offsets.pop()
    return out_chars, out_offsets


class ZhBasicV1:
    """``zh_basic.v1``: NFKC (folds full-width forms), zero-width removal, whitespace folding.

    >>> ZhBasicV1()("ｆｕｌｌ\u200b  width\\n文本 ")
    'full width 文本'
    """

    name = "zh_basic.v1"

    def __call__(self, text: str) -> str:
        return self.normalize(text).text

    def normalize(self, text: str) -> Normalized:
        chars, offsets = _fold_whitespace(*_nfkc_with_offsets(text))
        return Normalized("".join(chars), tuple(offsets))

    def settings(self) -> dict:
        return {"nfkc": True, "zero_width": "removed", "whitespace": "folded"}


# name -> "module:attribute"; imported lazily so that a serving process loads only what its
# bundle names. Add a line here (never edit an existing one) to publish a new version.
_KNOWN: dict[str, str] = {
    "zh_basic.v1": "qingfin.data.normalize:ZhBasicV1",
    "zh_fin.v1": "qingfin.data.zh_fin:ZhFinV1",
}


class UnknownNormalizerError(ValueError):
    """Raised for a normalizer name that this version of qingfin does not know."""


def known_normalizers() -> tuple[str, ...]:
    return tuple(_KNOWN)


def get_normalizer(name: str) -> Normalizer:
    """Instantiate the normalizer published under ``name``.

    >>> get_normalizer("zh_basic.v1").name
    'zh_basic.v1'
    """
    if name not in _KNOWN:
        raise UnknownNormalizerError(
            f"unknown normalizer {name!r}; this qingfin knows {', '.join(_KNOWN)}"
        )
    module_name, attribute = _KNOWN[name].split(":")
    return getattr(importlib.import_module(module_name), attribute)()
