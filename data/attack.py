"""An obfuscation attack suite: seeded, label-preserving disguises of positive examples.

Each attack kind imitates a disguise that violators use (see ``zh_fin``): homophone/variant
swaps, emoji or space splitting, full-width forms, traditional characters, numeral styles,
pinyin contact words, zero-width characters, and combinations. Attacks only *disguise*: they
never delete a handle's digits or a key term, so labels are kept, and ``zh_fin.v1`` recovers
most of the contact vocabulary from the attacked text. Used for robustness evaluation and
for training augmentation (``qingfin attack --data FILE.jsonl --out FILE.jsonl``).
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import opencc

from qingfin.data.lexicon import load_lexicon
from qingfin.data.zh_fin import _loan_context_ok, load_variants

__all__ = ["ATTACK_KINDS", "attack_file", "attack_rows", "attack_text"]

ATTACK_KINDS: tuple[str, ...] = (
    "homophone",
    "pinyin",
    "numerals",
    "emoji_split",
    "space_split",
    "traditional",
    "fullwidth",
    "zero_width",
    "combo",
)
_BASE_KINDS = ATTACK_KINDS[:-1]
# The order in which a combination applies its parts: words first, invisible characters last.
_COMBO_ORDER = _BASE_KINDS

_SPLIT_EMOJI = ("🌟", "🍀", "❤️", "✨", "💰", "🔥", "⭐", "🌸", "♥", "★", "·")
_ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
_CONTACT_CUE = re.compile(r"(?:加|添加|➕|\+|私|联系|滴滴|进|拉)(?:我|个)?[\s:：]*$")
_NUMERAL_STYLES: dict[str, str] = {
    "chinese": "〇一二三四五六七八九",
    "formal": "零壹贰叁肆伍陆柒捌玖",
    "circled": "⓪①②③④⑤⑥⑦⑧⑨",
    "dingbat": "⓿❶❷❸❹❺❻❼❽❾",
    "fullwidth": "０１２３４５６７８９",
}
# Digit runs worth disguising: 5+ digits (phones, QQ), or digits inside a Latin handle.
_DIGIT_RUN = re.compile(r"[0-9]{5,}|(?<=[A-Za-z])[0-9]{3,}|[0-9]{3,}(?=[A-Za-z])")
_HANDLE = re.compile(r"(?<![A-Za-z0-9_\-])[A-Za-z0-9][A-Za-z0-9_\-]{3,}(?![A-Za-z0-9_\-])")


# --------------------------------------------------------------------------------------------
# Vocabulary, from the published variant table and the lexicon.


@functools.cache
def _variants_by_canonical() -> dict[str, dict[str, tuple[str, ...]]]:
    """canonical word → {"homophone": ..., "cue": ..., "pinyin": ..., "char": ...} variants."""
    table: dict[str, dict[str, list[str]]] = {}
    for row in load_variants():
        if row.context == "vocab" or row.variant == row.canonical:
            continue
        if row.context == "char":
            group = "char"
        elif re.fullmatch(r"[a-z ]+", row.variant):
            group = "pinyin"
        else:
            group = row.context if row.context in ("cue", "loan") else "homophone"
        table.setdefault(row.canonical, {}).setdefault(group, []).append(row.variant)
    return {c: {g: tuple(v) for g, v in groups.items()} for c, groups in table.items()}


@functools.cache
def _contact_word_pattern() -> re.Pattern:
    words = sorted((c for c, g in _variants_by_canonical().items() if "char" not in g),
                   key=len, reverse=True)
    return re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)


@functools.cache
def _key_terms() -> tuple[str, ...]:
    terms = {e.term for e in load_lexicon() if len(e.term) >= 2}
    return tuple(sorted(terms, key=len, reverse=True))


def _target_spans(text: str) -> list[tuple[int, int]]:
    """Non-overlapping spans worth splitting: contact words, lexicon terms, handles."""
    spans = [m.span() for m in _contact_word_pattern().finditer(text)]
    for term in _key_terms():
        start = text.find(term)
        while start >= 0:
            spans.append((start, start + len(term)))
            start = text.find(term, start + 1)
    spans += [m.span() for m in _HANDLE.finditer(text)]
    kept: list[tuple[int, int]] = []
    for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
        if end - start >= 2 and (not kept or start >= kept[-1][1]):
            kept.append((start, end))
    return kept


def _rewrite_spans(
    text: str, spans: Iterable[tuple[int, int]], rewrite: Callable[[str], str]
) -> str:
    pieces, position = [], 0
    for start, end in spans:
        pieces += [text[position:start], rewrite(text[start:end])]
        position = end
    return "".join(pieces) + text[position:]


# --------------------------------------------------------------------------------------------
# The attacks. Each takes (text, rng) and returns the disguised text.


def _swap_words(text: str, rng: random.Random, groups: Sequence[str]) -> str:
    """Replace contact words by a variant from ``groups`` (``cue`` forms only after a cue)."""
    pieces, position = [], 0
    table = _variants_by_canonical()
    for match in _contact_word_pattern().finditer(text):
        options: list[str] = []
        entry = table.get(match.group().lower(), {})
        for group in groups:
            if group == "cue" and not _CONTACT_CUE.search(text, 0, match.start()):
                continue
            # the normalizer's own test: a swapped x款 is one zh_fin.v1 reads back as 下款
            if group == "loan" and not _loan_context_ok(text, match.start(), match.end()):
                continue
            options += entry.get(group, ())
        if not options:
            continue
        choice = rng.choice(options)
        before = text[match.start() - 1] if match.start() else ""
        after = text[match.end()] if match.end() < len(text) else ""
        if choice[0].isascii() and before.isascii() and before.isalnum():
            choice = " " + choice  # keep a Latin variant from gluing onto a handle
        if choice[-1].isascii() and after.isascii() and after.isalnum():
            choice += " "
        pieces += [text[position:match.start()], choice]
        position = match.end()
    return "".join(pieces) + text[position:]


def _homophone(text: str, rng: random.Random) -> str:
    """Variant words (薇信, 扣扣, 蒸信 ...) and, for half of the eligible characters, 火星文."""
    text = _swap_words(text, rng, ("homophone", "cue", "loan"))
    huoxing = {c: g["char"] for c, g in _variants_by_canonical().items() if "char" in g}
    return "".join(
        rng.choice(huoxing[c]) if c in huoxing and rng.random() < 0.5 else c for c in text
    )


def _pinyin(text: str, rng: random.Random) -> str:
    return _swap_words(text, rng, ("pinyin",))


def _split_with(text: str, separator: Callable[[], str]) -> str:
    return _rewrite_spans(text, _target_spans(text),
                          lambda word: "".join(c + separator() for c in word[:-1]) + word[-1])


def _emoji_split(text: str, rng: random.Random) -> str:
    emoji = rng.choice(_SPLIT_EMOJI)  # one symbol per text, as violators do
    return _split_with(text, lambda: emoji)


def _space_split(text: str, rng: random.Random) -> str:
    return _split_with(text, lambda: " ")


def _zero_width(text: str, rng: random.Random) -> str:
    text = _split_with(text, lambda: rng.choice(_ZERO_WIDTH))
    return "".join(c + rng.choice(_ZERO_WIDTH) if rng.random() < 0.1 else c for c in text)


@functools.cache
def _s2t() -> opencc.OpenCC:
    return opencc.OpenCC("s2t")


def _traditional(text: str, rng: random.Random) -> str:
    return _s2t().convert(text)


def _fullwidth(text: str, rng: random.Random) -> str:
    def wide(char: str) -> str:
        if "!" <= char <= "~":
            return chr(ord(char) + 0xFEE0)
        return "\u3000" if char == " " else char

    return "".join(wide(c) for c in text)


def _numerals(text: str, rng: random.Random) -> str:
    def restyle(run: str) -> str:
        digits = _NUMERAL_STYLES[rng.choice(sorted(_NUMERAL_STYLES))]
        return "".join(digits[int(d)] for d in run)

    return _rewrite_spans(text, [m.span() for m in _DIGIT_RUN.finditer(text)], restyle)


def _combo(text: str, rng: random.Random) -> str:
    kinds = rng.sample(_BASE_KINDS, rng.choice((2, 3)))
    if "homophone" in kinds and "pinyin" in kinds:  # both rewrite the same words
        kinds.remove(rng.choice(("homophone", "pinyin")))
    if "emoji_split" in kinds and "space_split" in kinds:
        kinds.remove(rng.choice(("emoji_split", "space_split")))
    for kind in sorted(kinds, key=_COMBO_ORDER.index):
        text = _ATTACKS[kind](text, rng)
    return text


_ATTACKS: dict[str, Callable[[str, random.Random], str]] = {
    "homophone": _homophone,
    "pinyin": _pinyin,
    "numerals": _numerals,
    "emoji_split": _emoji_split,
    "space_split": _space_split,
    "traditional": _traditional,
    "fullwidth": _fullwidth,
    "zero_width": _zero_width,
    "combo": _combo,
}


def attack_text(text: str, kind: str, rng: random.Random) -> str:
    """Disguise ``text`` with one attack ``kind`` (one of :data:`ATTACK_KINDS`).

    Deterministic for a given ``rng`` state; the text is unchanged when the attack finds
    nothing to disguise (e.g. ``numerals`` on a text without numbers).

    >>> attack_text("加微信：abc12345", "space_split", random.Random(0))
    '加 微 信：a b c 1 2 3 4 5'
    """
    if kind not in _ATTACKS:
        raise ValueError(f"unknown attack kind {kind!r}; known: {', '.join(ATTACK_KINDS)}")
    return _ATTACKS[kind](text, rng)


# --------------------------------------------------------------------------------------------
# Rows and files.


def _row_rng(seed: int, row_id: str, kind: str) -> random.Random:
    # str seeds hash with sha512 inside random: stable across processes, unlike hash().
    return random.Random(f"{seed}:{row_id}:{kind}")


def attack_rows(
    rows: Iterable[dict],
    kinds: Sequence[str] | None = None,
    seed: int = 0,
    positives_only: bool = True,
) -> Iterator[dict]:
    """Attacked copies of ``rows`` (lazy, input order; for each row, kinds in given order).

    Each copy keeps every field (labels included), gets ``id`` = ``"<id>:<kind>"``,
    ``attack`` = the kind and ``attack_of`` = the original id. Rows without labels are skipped
    when ``positives_only``; an attack that changes nothing yields no copy.

    >>> rows = [{"id": "r1", "text": "加微信：abc12345", "labels": ["traffic_diversion"]}]
    >>> [(r["id"], r["labels"]) for r in attack_rows(rows, ["fullwidth"])]
    [('r1:fullwidth', ['traffic_diversion'])]
    """
    kinds = tuple(kinds) if kinds else ATTACK_KINDS
    unknown = [k for k in kinds if k not in _ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack kinds {unknown}; known: {', '.join(ATTACK_KINDS)}")
    for index, row in enumerate(rows):
        text = row.get("text")
        if not isinstance(text, str) or (positives_only and not row.get("labels")):
            continue
        row_id = str(row.get("id", f"row{index}"))
        for kind in kinds:
            attacked = attack_text(text, kind, _row_rng(seed, row_id, kind))
            if attacked != text:
                yield {**row, "id": f"{row_id}:{kind}", "text": attacked, "attack": kind,
                       "attack_of": row_id}


def _read_jsonl(path: Path, counts: Counter) -> Iterator[dict]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                counts["rows_in"] += 1
                row = json.loads(line)
                if not row.get("labels"):
                    counts["negatives"] += 1
                yield row


def attack_file(
    input_path: str | Path,
    output_path: str | Path,
    kinds: Sequence[str] | None = None,
    seed: int = 0,
    positives_only: bool = True,
) -> dict:
    """Write attacked copies of a JSONL file's rows; return counts.

    Returns ``{"rows_in", "negatives", "written", "by_kind": {kind: n}, "seed", "kinds"}``
    (``negatives`` are rows without labels, skipped when ``positives_only``).
    """
    counts: Counter = Counter()
    by_kind: Counter = Counter()
    output = Path(output_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    rows = _read_jsonl(Path(input_path), counts)
    with output.open("w", encoding="utf-8") as handle:
        for row in attack_rows(rows, kinds, seed, positives_only):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            by_kind[row["attack"]] += 1
    return {
        "rows_in": counts["rows_in"],
        "negatives": counts["negatives"],
        "written": sum(by_kind.values()),
        "by_kind": dict(by_kind),
        "seed": seed,
        "kinds": list(kinds) if kinds else list(ATTACK_KINDS),
    }
