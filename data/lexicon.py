"""A versioned, dated finance-slang lexicon, matched with Aho-Corasick on normalized text.

Hits are evidence for a moderator, never decisions: an anti-fraud warning (「警惕征信修复骗局」)
contains the same words as the scam it warns about. Each term carries a label *hint*, the date
it was added and a short note. The table lives in ``resources/lexicon_v1.tsv``; adding terms
means a new version (``lexicon_v2.tsv``) so evidence stays reproducible.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from dataclasses import dataclass

import ahocorasick

from qingfin.data.normalize import Normalized, Normalizer, original_span
from qingfin.data.schema import LABELS

__all__ = [
    "LEXICON_DATE",
    "LEXICON_FILE",
    "LEXICON_VERSION",
    "Lexicon",
    "LexiconEntry",
    "LexiconHit",
    "find_terms",
    "lexicon_for",
    "lexicon_info",
    "load_lexicon",
]

LEXICON_VERSION = "lexicon_v1"
LEXICON_DATE = "2026-11-28"
LEXICON_FILE = "lexicon_v1.tsv"
_HEADER = ["term", "label_hint", "added", "note"]


@dataclass(frozen=True)
class LexiconEntry:
    term: str
    label_hint: str
    added: str  # ISO date the term entered the lexicon
    note: str


@dataclass(frozen=True)
class LexiconHit:
    """One lexicon term found in a text; ``start``/``end``/``text`` refer to the original."""

    entry: LexiconEntry
    start: int
    end: int
    text: str
    matched: str  # the normalized text that matched


def _resource():
    return importlib.resources.files("qingfin.data").joinpath("resources", LEXICON_FILE)


def lexicon_info() -> dict:
    """What a bundle or an evidence report records about the lexicon it used."""
    entries = load_lexicon()
    return {
        "version": LEXICON_VERSION,
        "date": LEXICON_DATE,
        "file": LEXICON_FILE,
        "sha256": hashlib.sha256(_resource().read_bytes()).hexdigest(),
        "terms": len(entries),
    }


@functools.cache
def load_lexicon() -> tuple[LexiconEntry, ...]:
    """The lexicon rows, validated (known labels, no duplicate terms).

    >>> next(e for e in load_lexicon() if e.term == "停息挂账").label_hint
    'grey_industry'
    """
    lines = [line for line in _resource().read_text("utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    if lines[0].split("\t") != _HEADER:
        raise ValueError(f"{LEXICON_FILE}: header must be {_HEADER}")
    entries: list[LexiconEntry] = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 4 or fields[1] not in LABELS or not fields[0]:
            raise ValueError(f"{LEXICON_FILE}: bad row {number}: {line!r}")
        entries.append(LexiconEntry(*fields))
    terms = [e.term for e in entries]
    if len(set(terms)) != len(terms):
        raise ValueError(f"{LEXICON_FILE}: duplicate terms")
    return tuple(entries)


def _latin_edge(char: str) -> bool:
    return char.isascii() and char.isalnum()


class Lexicon:
    """The lexicon compiled for one normalizer (terms are normalized by it, like the text).

    >>> from qingfin.data.zh_fin import ZhFinV1
    >>> [h.entry.term for h in Lexicon(ZhFinV1()).find("莪們這裏芣看蒸信")]
    ['不看征信']
    """

    def __init__(self, normalizer: Normalizer, entries: tuple[LexiconEntry, ...] | None = None):
        self.normalizer = normalizer
        self.entries = entries if entries is not None else load_lexicon()
        self._automaton = ahocorasick.Automaton()
        for entry in self.entries:
            key = normalizer(entry.term)
            if key and key not in self._automaton:
                self._automaton.add_word(key, (key, entry))
        self._automaton.make_automaton()

    def find(self, text: str) -> list[LexiconHit]:
        """Hits in ``text``, in text order, with spans in ``text``."""
        return self.find_normalized(text, self.normalizer.normalize(text))

    def find_normalized(self, original: str, normalized: Normalized) -> list[LexiconHit]:
        """Hits on an already normalized text, mapped back to ``original``, in text order.

        A hit inside a longer hit with the same label hint is dropped (停息挂账 ⊃ 挂账).
        """
        if len(self._automaton) == 0:
            return []
        text = normalized.text
        raw: list[tuple[int, int, str, LexiconEntry]] = []
        for last, (key, entry) in self._automaton.iter(text):
            start, end = last + 1 - len(key), last + 1
            if _latin_edge(key[0]) and start > 0 and _latin_edge(text[start - 1]):
                continue
            if _latin_edge(key[-1]) and end < len(text) and _latin_edge(text[end]):
                continue
            raw.append((start, end, key, entry))
        kept = [
            hit for hit in raw
            if not any(o is not hit and o[3].label_hint == hit[3].label_hint and o[0] <= hit[0]
                       and hit[1] <= o[1] and (o[1] - o[0]) > (hit[1] - hit[0]) for o in raw)
        ]
        hits = []
        for start, end, key, entry in sorted(kept, key=lambda h: (h[0], -h[1])):
            first, last = original_span(normalized, start, end, len(original))
            hits.append(LexiconHit(entry, first, last, original[first:last], key))
        return hits


@functools.cache
def _lexicon_for(name: str) -> Lexicon:
    from qingfin.data.normalize import get_normalizer

    return Lexicon(get_normalizer(name))


def lexicon_for(normalizer: Normalizer | None = None) -> Lexicon:
    """The (cached) lexicon compiled for a registered normalizer, ``zh_fin.v1`` by default.

    >>> lexicon_for().normalizer.name
    'zh_fin.v1'
    """
    name = normalizer.name if normalizer is not None else "zh_fin.v1"
    try:
        return _lexicon_for(name)
    except ValueError:  # not a registered name (a custom normalizer): compile it uncached
        return Lexicon(normalizer)


def find_terms(text: str, normalizer: Normalizer | None = None) -> list[LexiconHit]:
    """Lexicon hits in ``text`` (normalized by ``normalizer``, default ``zh_fin.v1``).

    >>> [(h.entry.term, h.text) for h in find_terms("专业停🌟息挂账，不成功不收费")]
    [('停息挂账', '停🌟息挂账'), ('不成功不收费', '不成功不收费')]
    """
    return lexicon_for(normalizer).find(text)
