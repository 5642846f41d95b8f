"""``zh_fin.v1``: the evasion-robust normalizer for Chinese financial content.

Violators hide contact details and finance slang from keyword filters: ``加 V❤ x1a0 wang``,
``扣扣：玖捌柒陆伍肆叁贰``, ``莪們這裏芣看蒸信``, ``威🌟信：k🍀z🍀8🍀8``. This module removes those
disguises before the model (or the contact extractor, or the lexicon) sees the text, and keeps
an offset map from every normalized character back to the original text.

Steps, in order:

1. per character (one cached ``str.translate`` table, so plain text costs one C call):
   NFKC (full-width → half-width, circled digits, ``℡`` → ``tel``), lower case, Latin
   diacritics stripped, zero-width / bidi / variation selectors / decorative combining marks
   removed, dingbat digits (``❶➀⓵``) → digits, traditional → simplified (OpenCC ``t2s``, one
   character at a time so lengths and offsets stay exact), 火星文 characters (``莪`` → ``我``);
2. whitespace folded (runs → one space, ends stripped), exactly as ``zh_basic.v1`` does
   (re-implemented with regexes for speed; a test checks they agree);
3. repeated until nothing changes (so the result is idempotent by construction):
   a. separators *inside* a word or handle removed: symbols/emoji between letters or digits
      (``k🍀z🍀8``), a separator repeated between single characters (``加🌟微🌟信``, ``1 3 8``),
      or one that splits a known word (``微🌟信``, ``征 信``); an emoji standing alone stays;
   b. the curated variant table (``resources/zh_fin_v1_variants.tsv``): ``薇信``/``vx``/``v❤``
      → ``微信``, ``扣扣`` → ``qq``, ``蒸信`` → ``征信``...; ambiguous forms (``薇``, ``威信``,
      ``企鹅``, ``q``) only next to a contact cue or a handle, so ``张薇`` stays a name;
   c. Chinese numerals (``玖捌柒``, ``一三八``) → ASCII digits, one for one, only in runs that look
      like a handle or number (5+ digits, or 3+ beside a handle, a cue or formal numerals),
      never in words such as ``一起`` or ``三个月``.

The name ``zh_fin.v1`` is published: its behaviour (and the variant table, whose sha256 is in
:meth:`ZhFinV1.settings`) never changes. A change is ``zh_fin.v2``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import ahocorasick
import opencc

from qingfin.data.normalize import ZERO_WIDTH, Normalized, Normalizer

__all__ = [
    "VARIANTS_FILE",
    "VARIANTS_SHA256",
    "VARIANTS_VERSION",
    "Variant",
    "ZhFinV1",
    "bench_normalizer",
    "load_variants",
]

logger = logging.getLogger(__name__)

VARIANTS_FILE = "zh_fin_v1_variants.tsv"
VARIANTS_VERSION = "zh_fin_v1_variants.2026-11-28"
# Guards the "never redefined" promise: a test fails if the published table is edited.
VARIANTS_SHA256 = "e13abc27838d73dad9a9e78f98cf7b7c6cf9843c7ea955f416fbb134245047f8"

# --------------------------------------------------------------------------------------------
# Character classes (hard-coded ranges, so the behaviour does not drift with Python's Unicode
# database more than NFKC itself does).

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = "a-z0-9" + _CJK  # characters a word or handle is made of, after folding
# Symbols and emoji that decorate or split words. ➕ is excluded: it is a contact cue itself.
_DECOR = (
    "\u00b7\u2022\u2027\u203b\u2219\u22c5\u30fb\u4e36"  # bullets, middle dots, ※, 丶
    "\u2190-\u21ff\u2300-\u23ff\u2500-\u2794\u2798-\u27bf\u2b00-\u2bff\u3030\u303d"
    "\U0001f000-\U0001f0ff\U0001f1e6-\U0001faff"
)
# ASCII punctuation that splits Chinese words (微.信, 征-信) but belongs to Latin text (abc.com).
_ASCII_SEPARATORS = "-_.*/|\\~^`'\""
_CN_DIGIT = {
    "零": "0", "〇": "0", "一": "1", "二": "2", "三": "3", "四": "4", "五": "5", "六": "6",
    "七": "7", "八": "8", "九": "9", "两": "2", "幺": "1", "壹": "1", "贰": "2", "叁": "3",
    "肆": "4", "伍": "5", "陆": "6", "柒": "7", "捌": "8", "玖": "9",
}
_FORMAL_DIGITS = frozenset("壹贰叁肆伍陆柒捌玖")
_NUMERAL_CHARS = "".join(_CN_DIGIT)

# Characters removed outright: invisible, bidi controls, variation selectors, tags, fillers and
# the combining-mark blocks used for zalgo / strike-through decoration (not script vowel signs).
_DELETE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0300, 0x036F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x20D0, 0x20FF),
    (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFE20, 0xFE2F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0),
    (0xFFF9, 0xFFFB), (0xE0000, 0xE007F), (0xE0100, 0xE01EF),
)
_DELETE = frozenset(ZERO_WIDTH) | frozenset(
    chr(c) for low, high in _DELETE_RANGES for c in range(low, high + 1)
)


def _special_characters() -> dict[str, str]:
    """Dingbat digits and enclosed letters that NFKC leaves alone (❶ ➀ ⓵ ⓫ ⓿ 🅐 🅰)."""
    table: dict[str, str] = {"\u24ff": "0", "\U0001f10b": "0", "\U0001f10c": "0"}
    for first in (0x2776, 0x2780, 0x278A, 0x24F5):  # runs of 1..10
        for i in range(10):
            table[chr(first + i)] = str(i + 1)
    for i in range(10):  # ⓫..⓴ = 11..20
        table[chr(0x24EB + i)] = str(11 + i)
    for first in (0x1F150, 0x1F170):  # negative circled / squared Latin letters 🅐 🅰
        for i in range(26):
            table[chr(first + i)] = chr(ord("a") + i)
    return table


_SPECIAL = _special_characters()

# --------------------------------------------------------------------------------------------
# The variant table.


@dataclass(frozen=True)
class Variant:
    """One row of the variant table, already folded (lower case, simplified, NFKC)."""

    variant: str
    canonical: str
    context: str  # char | any | cue | loan | vocab
    kind: str
    note: str


_CONTEXTS = frozenset({"char", "any", "cue", "loan", "vocab"})


def _read_resource(name: str) -> bytes:
    return importlib.resources.files("qingfin.data").joinpath("resources", name).read_bytes()


def _parse_variants(raw: str) -> list[tuple[str, str, str, str, str]]:
    """Rows of the TSV (comments and the header skipped), unfolded."""
    rows = []
    lines = [line for line in raw.splitlines() if line.strip() and not line.startswith("#")]
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 5 or fields[2] not in _CONTEXTS:
            raise ValueError(f"{VARIANTS_FILE}: bad row {number}: {line!r}")
        rows.append(tuple(fields))
    return rows


@functools.cache
def _variants_bytes() -> bytes:
    raw = _read_resource(VARIANTS_FILE)
    if hashlib.sha256(raw).hexdigest() != VARIANTS_SHA256:
        # A published table must never change; settings() records the real hash either way.
        logger.warning("%s differs from the table published with zh_fin.v1", VARIANTS_FILE)
    return raw


@functools.cache
def load_variants() -> tuple[Variant, ...]:
    """The published variant table, folded by the character step of ``zh_fin.v1``.

    >>> next(v for v in load_variants() if v.variant == "蒸信").canonical
    '征信'
    """
    raw = _parse_variants(_variants_bytes().decode("utf-8"))
    chars = {v: c for v, c, context, _, _ in raw if context == "char"}
    fold = functools.partial(_fold_string, char_variants=chars)
    return tuple(
        # a 火星文 row keeps its own character (folding would turn 莪 into 我)
        Variant(v if context == "char" else _fold_spaces(fold(v)), _fold_spaces(fold(c)),
                context, kind, note)
        for v, c, context, kind, note in raw
    )


def _fold_spaces(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------
# Step 1: the per-character fold.

_T2S = opencc.OpenCC("t2s")


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return 0x3400 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x2FA1F


def _strip_latin_diacritic(char: str) -> str:
    """``é`` → ``e``, ``ǐ`` → ``i``: pinyin tone marks and accents are decoration here."""
    if not ("\u00c0" <= char <= "\u024f" or "\u1e00" <= char <= "\u1eff"):
        return char
    base = unicodedata.normalize("NFD", char)[0]
    return base if base.isascii() and base.isalpha() else char


def _fold_char_once(char: str, char_variants: dict[str, str]) -> str:
    """One round of the character fold; may return 0, 1 or several characters."""
    if char in _DELETE:
        return ""
    if char in _SPECIAL:
        return _SPECIAL[char]
    nfkc = unicodedata.normalize("NFKC", char)
    if nfkc != char:
        return nfkc
    char = _strip_latin_diacritic(char)
    lower = char.lower()
    if len(lower) == 1:
        char = lower
    if _is_cjk(char):
        try:
            simplified = _T2S.convert(char)
        except (UnicodeError, RuntimeError, ValueError):  # never raise: keep the character
            simplified = char
        if len(simplified) == 1:
            char = simplified
    return char_variants.get(char, char)


def _fold_string(text: str, char_variants: dict[str, str]) -> str:
    """Fold every character until nothing changes (bounded), so each output is a fixed point."""
    for _ in range(6):
        folded = "".join(_fold_char_once(char, char_variants) for char in text)
        if folded == text:
            break
        text = folded
    return text


class _FoldTable(dict):
    """``str.translate`` table filled lazily: ``ord(char)`` → folded character.

    Characters whose fold is not exactly one character ("irregular": deletions, ``…`` →
    ``...``) map to themselves here and are handled afterwards with offsets.
    """

    def __init__(self, char_variants: dict[str, str], irregular: dict[str, str]):
        super().__init__()
        self.char_variants = char_variants
        self.irregular = irregular

    def __missing__(self, code: int) -> str:
        char = chr(code)
        folded = char if char in self.irregular else _fold_string(char, self.char_variants)
        value = folded if len(folded) == 1 else char
        self[code] = value
        return value


def _irregular_chars(char_variants: dict[str, str]) -> dict[str, str]:
    """Every character whose fold is not one character, with its fold (found by a scan)."""
    candidates = set(_DELETE) | set(_SPECIAL)
    for code in range(0x30000):
        char = chr(code)
        if unicodedata.decomposition(char) and len(unicodedata.normalize("NFKC", char)) != 1:
            candidates.add(char)
    folds = {char: _fold_string(char, char_variants) for char in candidates}
    return {char: folded for char, folded in folds.items() if len(folded) != 1}


def _char_class(chars: Iterable[str]) -> str:
    """A regex character class body for ``chars``, as compact ranges."""
    codes = sorted({ord(c) for c in chars})
    parts: list[str] = []
    start = previous = None
    for code in codes + [None]:
        if previous is not None and code == previous + 1:
            previous = code
            continue
        if start is not None:
            parts.append(re.escape(chr(start)) if start == previous
                         else f"{re.escape(chr(start))}-{re.escape(chr(previous))}")
        start = previous = code
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# Offsets and edits.

Edit = tuple[int, int, str]  # replace text[start:end] by the string


def _apply_edits(text: str, offsets: list[int], edits: Sequence[Edit]) -> tuple[str, list[int]]:
    """Apply sorted, non-overlapping edits; replacement characters spread over their source.

    The first replacement character maps to the first source character and the last to the
    last one, so a span over the replacement maps back over everything it replaced.

    >>> _apply_edits("加wei xin", [0, 1, 2, 3, 4, 5, 6, 7], [(1, 8, "微信")])
    ('加微信', [0, 1, 7])
    """
    pieces: list[str] = []
    new_offsets: list[int] = []
    position = 0
    for start, end, replacement in edits:
        pieces.append(text[position:start])
        new_offsets.extend(offsets[position:start])
        pieces.append(replacement)
        length, source = len(replacement), end - start
        if length == 1 or source == 1:
            new_offsets.extend([offsets[start]] * length)
        elif length:
            new_offsets.extend(offsets[start + (j * (source - 1)) // (length - 1)]
                               for j in range(length))
        position = end
    pieces.append(text[position:])
    new_offsets.extend(offsets[position:])
    return "".join(pieces), new_offsets


# --------------------------------------------------------------------------------------------
# Context tests shared by the variant and numeral steps (on folded text).

# A contact cue just before a variant: 加 / 添加 / ➕ / + / 私 / 联系 / 滴滴 ... (+ 我/个 ...).
_CUE_BEFORE = re.compile(
    r"(?:添加|加|➕|(?<![a-z0-9])\+|私信|私聊|私|联系|找|滴滴|dd|扫码|扫|搜索|搜|戳|咨询|关注)"
    r"(?:我|个|下|一下|我的|的)?[ :=]*$"
)
# 进 is a cue for groups only (进裙): before other forms it is an ordinary verb (进口口罩).
_GROUP_CUE_BEFORE = re.compile(r"(?:加入|加|拉你进|进|入)(?:我的|个|的)?[ :=]*$")
# What may follow a single-character variant that had a cue before it.
_AFTER_WORDS = re.compile(r"(?:号|群|详聊|私聊|聊|详谈|好友|了解|咨询|领取|备注|联系|拉你|id)")
# A handle announced by 号 / id / a colon: enough on its own (薇：abc123, 企鹅号).
_MARKED_HANDLE_AFTER = re.compile(
    rf"[ ]?(?:号|id\b|:[ ]?(?:[a-z0-9@][a-z0-9_\-]{{2}}|[{_NUMERAL_CHARS}]{{3}}))"
)
# Loan wording around x款 / d款 (当天x款, 秒x款, x款成功), which are otherwise "model x".
_LOAN_BEFORE = re.compile(r"(?:秒|当天|当日|今天|包|必|快速|极速|马上|立即|已|就|能|可|不|没|难|稳|轻松)$")
_LOAN_AFTER = re.compile(r"(?:了|快|成功|啦|秒到|到账|额度|率)")
# A handle glued on: counts only after a cue (+我威yy146), not after a name (@威威wilco).
_BARE_HANDLE_AFTER = re.compile(rf"[ ]?(?:[a-z0-9][a-z0-9_\-]{{2}}|[{_NUMERAL_CHARS}]{{3}})")
_CJK_CHAR = re.compile(f"[{_CJK}]")
# Just before a numeral run: a platform word or a 号 / colon.
_NUMERAL_CUE = re.compile(r"(?:qq|微信|电话|手机|tel|群|号|码|:|=)[ :=]*$")


def _has_cue_before(text: str, start: int, kind: str) -> bool:
    cue = _GROUP_CUE_BEFORE if kind == "group" else _CUE_BEFORE
    return cue.search(text, max(0, start - 8), start) is not None


def _cue_context_ok(text: str, start: int, end: int, kind: str) -> bool:
    """Is an ambiguous variant at ``text[start:end]`` used as a contact word here?"""
    cue = _has_cue_before(text, start, kind)
    if not cue and end - start == 1 and start > 0 and _CJK_CHAR.match(text, start - 1):
        return False  # the tail of a word or name: 折扣：/ 张薇：
    if _MARKED_HANDLE_AFTER.match(text, end):
        return True
    if not cue:
        return False
    if end - start > 1 or _BARE_HANDLE_AFTER.match(text, end):
        return True  # 加卫星 / 加企鹅 / +我威yy146: a cue plus a longer form or a handle
    return end >= len(text) or not _CJK_CHAR.match(text, end) or bool(_AFTER_WORDS.match(text, end))


def _loan_context_ok(text: str, start: int, end: int) -> bool:
    return bool(_LOAN_BEFORE.search(text, max(0, start - 2), start) or _LOAN_AFTER.match(text, end))


def _ascii_boundary_ok(text: str, start: int, end: int, key: str) -> bool:
    """A form with a Latin/digit edge must not be glued to more Latin/digits (``vxworks``)
    nor sit inside a URL (``watch?v=``)."""
    if key[0].isascii() and key[0].isalnum() and start > 0:
        before = text[start - 1]
        if (before.isascii() and before.isalnum()) or before in "/?&=.#%_-@":
            return False
    if key[-1].isascii() and key[-1].isalnum() and end < len(text):
        after = text[end]
        if after.isascii() and after.isalnum():
            return False
    return True


# --------------------------------------------------------------------------------------------
# The compiled tables (built on first use: ~50 ms).


@dataclass(frozen=True)
class _Tables:
    fold: _FoldTable
    irregular: dict[str, str]
    irregular_re: re.Pattern
    automaton: ahocorasick.Automaton
    vocab: frozenset[str]
    vocab_max: int
    vocab_heads: frozenset[str]  # characters that can end the left part of a split word
    vocab_tails: frozenset[str]  # characters that can start its right part


@functools.cache
def _tables() -> _Tables:
    variants = load_variants()
    raw = _parse_variants(_variants_bytes().decode("utf-8"))
    char_variants = {v: c for v, c, context, _, _ in raw if context == "char"}
    irregular = _irregular_chars(char_variants)
    automaton = ahocorasick.Automaton()
    vocab: set[str] = set()
    for row in variants:
        if row.context == "char":
            continue
        automaton.add_word(row.variant, (row.variant, row.canonical, row.context, row.kind))
        for word in (row.variant, row.canonical):
            if len(word) > 1 and " " not in word:
                vocab.add(word)
    automaton.make_automaton()
    return _Tables(
        fold=_FoldTable(char_variants, irregular),
        irregular=irregular,
        irregular_re=re.compile(f"[{_char_class(irregular)}]"),
        automaton=automaton,
        vocab=frozenset(vocab),
        vocab_max=max(len(w) for w in vocab),
        vocab_heads=frozenset(c for w in vocab for c in w[:-1]),
        vocab_tails=frozenset(c for w in vocab for c in w[1:]),
    )


# --------------------------------------------------------------------------------------------
# Steps.

_WHITESPACE_TO_FOLD = re.compile(r"[^\S ]|\s{2,}|^\s|\s$")
_WHITESPACE_RUN = re.compile(r"\s+")


def _fold_whitespace_edits(text: str) -> list[Edit]:
    """Whitespace runs → one space (mapped to the run's first character); ends stripped."""
    if not _WHITESPACE_TO_FOLD.search(text):
        return []
    edits = []
    for match in _WHITESPACE_RUN.finditer(text):
        start, end = match.span()
        at_edge = start == 0 or end == len(text)
        if at_edge:
            edits.append((start, end, ""))
        elif match.group() != " ":
            edits.append((start, end, " "))
    return edits


_SEPARATOR = re.compile(
    rf"(?<=[{_WORD}_\-])(?:[{_DECOR}]+|[ ]|[{re.escape(_ASCII_SEPARATORS)}])(?=[{_WORD}_\-])"
)
_HANDLE_PUNCT = "_-"  # legal inside WeChat/Telegram handles: abc_1🌟2
_WORD_CHAR = re.compile(f"[{_WORD}]")


def _is_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _singles(text: str, index: int, separator: str, step: int) -> int:
    """How many single characters, each followed (step=1) or preceded (step=-1) by
    ``separator`` and then a word character, start at ``index``: ``z🍀8🍀8`` → 2."""
    width, count = len(separator), 0
    while 0 <= index < len(text) and _WORD_CHAR.match(text, index):
        if step > 0:
            sep_start, next_char = index + 1, index + 1 + width
        else:
            sep_start, next_char = index - width, index - width - 1
        if next_char < 0 or text[sep_start:sep_start + width] != separator:
            break
        if not _WORD_CHAR.match(text, next_char):
            break
        count += 1
        index = next_char
    return count


def _next_to_same_separator(text: str, start: int, end: int) -> bool:
    """Cheap pre-test for :func:`_in_chain`: the same separator two characters away."""
    width = end - start
    separator = text[start:end]
    after = text[end + 1:end + 1 + width]
    return after == separator or text[start - 1 - width:start - 1] == separator


def _in_chain(text: str, start: int, end: int) -> bool:
    """Is ``text[start:end]`` one of a separator repeated between single characters?

    A space between Latin letters needs two singles (``a b c``), so English (``am a good``)
    keeps its spaces; everything else needs one (``k🍀z🍀8``, ``加 微 信``, ``1 3 8``).
    """
    separator = text[start:end]
    singles = _singles(text, end, separator, 1) + _singles(text, start - 1, separator, -1)
    if separator == " " and (text[start - 1].isalpha() or text[end].isalpha()):
        letters = text[start - 1].isascii() or text[end].isascii()
        return singles >= (2 if letters else 1)
    return singles >= 1


def _joins_vocab(text: str, start: int, end: int, tables: _Tables) -> bool:
    """Does removing ``text[start:end]`` rejoin a known word (``微🌟信``, ``征 信``)?"""
    if text[start - 1] not in tables.vocab_heads or text[end] not in tables.vocab_tails:
        return False  # fast exit: most spaces sit between ordinary words
    longest = tables.vocab_max
    left = text[max(0, start - longest + 1):start]
    right = text[end:end + longest - 1]
    for i in range(1, len(left) + 1):
        for j in range(1, min(len(right), longest - i) + 1):
            if left[-i:] + right[:j] in tables.vocab:
                return True
    return False


_LATIN_TOKEN_END = re.compile(r"[a-z0-9]+$")
_LATIN_TOKEN_START = re.compile(r"[a-z0-9]+")


def _joins_latin_vocab(text: str, start: int, end: int, tables: _Tables) -> bool:
    """Between Latin tokens only whole tokens may join (``q q`` → ``qq``, not ``iraq qatar``)."""
    left = _LATIN_TOKEN_END.search(text, max(0, start - tables.vocab_max), start)
    right = _LATIN_TOKEN_START.match(text, end)
    if left is None or right is None or left.start() == max(0, start - tables.vocab_max) > 0:
        return False
    return left.group() + right.group() in tables.vocab


def _separator_edits(text: str, tables: _Tables) -> list[Edit]:
    """Edits removing decoration inserted inside words and handles (see the module doc)."""
    edits: list[Edit] = []
    for match in _SEPARATOR.finditer(text):
        start, end = match.span()
        left, right, separator = text[start - 1], text[end], match.group()
        both_alnum = _is_alnum(left) and _is_alnum(right)
        is_decor = separator != " " and separator[0] not in _ASCII_SEPARATORS
        if left in _HANDLE_PUNCT or right in _HANDLE_PUNCT:
            remove = is_decor and (_is_alnum(left) or left in _HANDLE_PUNCT) and (
                _is_alnum(right) or right in _HANDLE_PUNCT)
        elif is_decor and both_alnum:
            remove = True
        elif not is_decor and separator != " " and (_is_alnum(left) or _is_alnum(right)):
            remove = False  # abc.com, 5-10, a_b: ASCII punctuation belongs to Latin text
        elif _next_to_same_separator(text, start, end) and _in_chain(text, start, end):
            remove = True
        elif both_alnum:
            remove = _joins_latin_vocab(text, start, end, tables)
        else:
            remove = _joins_vocab(text, start, end, tables)
        if remove:
            edits.append((start, end, ""))
    return edits


def _variant_edits(text: str, tables: _Tables) -> list[Edit]:
    """Edits replacing disguised forms by their canonical word, longest match first."""
    edits: list[Edit] = []
    for last, (key, canonical, context, kind) in tables.automaton.iter_long(text):
        if key == canonical:
            continue
        start, end = last + 1 - len(key), last + 1
        if not _ascii_boundary_ok(text, start, end, key):
            continue
        if context == "cue" and not _cue_context_ok(text, start, end, kind):
            continue
        if context == "loan" and not _loan_context_ok(text, start, end):
            continue
        if text.startswith(canonical, end):
            continue  # 扣QQ / 薇微信: the canonical word follows already
        edits.append((start, end, canonical))
    return edits


_NUMERAL_RUN = re.compile(rf"[{_NUMERAL_CHARS}0-9](?:[ ]?[{_NUMERAL_CHARS}0-9]){{2,}}")


def _numeral_run_converts(text: str, start: int, end: int, run: str) -> bool:
    digits = sum(1 for char in run if char != " ")
    if digits >= 5:
        return True
    if sum(1 for char in run if char in _FORMAL_DIGITS) >= 2:
        return True
    beside_handle = (start > 0 and _is_alnum(text[start - 1])) or (
        end < len(text) and _is_alnum(text[end])
    )
    return beside_handle or _NUMERAL_CUE.search(text, max(0, start - 6), start) is not None


def _numeral_edits(text: str) -> list[Edit]:
    """One-for-one edits turning Chinese numerals into digits inside number-like runs."""
    edits: list[Edit] = []
    for match in _NUMERAL_RUN.finditer(text):
        run = match.group()
        if run.isascii() or not _numeral_run_converts(text, *match.span(), run):
            continue
        for index, char in enumerate(run, start=match.start()):
            if char in _CN_DIGIT:
                edits.append((index, index + 1, _CN_DIGIT[char]))
    return edits


_MAX_PASSES = 8


class ZhFinV1:
    """``zh_fin.v1``: evasion-robust normalization with an offset map to the original text.

    >>> ZhFinV1()("威🌟信：k🍀z🍀8🍀8，扣扣：玖捌柒陆伍肆叁贰，莪們這裏芣看蒸信")
    '微信:kz88,qq:98765432,我们这里不看征信'
    """

    name = "zh_fin.v1"

    def __init__(self) -> None:
        self._tables = _tables()
        self._steps: tuple[Callable[[str], list[Edit]], ...] = (
            functools.partial(_separator_edits, tables=self._tables),
            functools.partial(_variant_edits, tables=self._tables),
            _numeral_edits,
        )

    def __call__(self, text: str) -> str:
        return self.normalize(text).text

    def normalize(self, text: str) -> Normalized:
        """Normalize ``text``; ``offsets[i]`` is the original index of normalized char ``i``.

        >>> n = ZhFinV1().normalize("加 V❤️ x1a0 wang")
        >>> n.text, n.offsets[:3]
        ('加 微信 x1a0 wang', (0, 1, 2))
        """
        tables = self._tables
        folded = text.translate(tables.fold)
        offsets: list[int] | None = None
        for step in (self._irregular_edits, _fold_whitespace_edits):
            edits = step(folded)
            if edits:
                offsets = offsets if offsets is not None else list(range(len(folded)))
                folded, offsets = _apply_edits(folded, offsets, edits)
        folded, offsets = self._rewrite(folded, offsets)
        return Normalized(folded, tuple(offsets if offsets is not None else range(len(folded))))

    def _irregular_edits(self, text: str) -> list[Edit]:
        irregular = self._tables.irregular
        return [(m.start(), m.end(), irregular[m.group()])
                for m in self._tables.irregular_re.finditer(text)]

    def _rewrite(self, text: str, offsets: list[int] | None) -> tuple[str, list[int] | None]:
        """Steps 3a–3c until a fixed point (they can enable each other: 威🌟信 → 威信 → 微信)."""
        steps = self._steps
        for _ in range(_MAX_PASSES):
            changed = False
            for step in steps:
                edits = step(text)
                if edits:
                    offsets = offsets if offsets is not None else list(range(len(text)))
                    text, offsets = _apply_edits(text, offsets, edits)
                    changed = True
            if not changed:
                break
        return text, offsets

    def settings(self) -> dict:
        """What ``normalizer.json`` in a bundle records: name, table version and hash, engines."""
        return {
            "name": self.name,
            "variants": {
                "file": VARIANTS_FILE,
                "version": VARIANTS_VERSION,
                "sha256": hashlib.sha256(_variants_bytes()).hexdigest(),
                "rows": len(load_variants()),
            },
            "nfkc": True,
            "unicode_version": unicodedata.unidata_version,
            "case": "lower",
            "latin_diacritics": "stripped",
            "zero_width": "removed",
            "whitespace": "folded",
            "traditional_to_simplified": {
                "engine": "opencc",
                "config": "t2s",
                "granularity": "character",
                "opencc_version": getattr(opencc, "__version__", "unknown"),
            },
            "separators_inside_words": "removed",
            "numerals": "digits in handle-like runs",
        }


def bench_normalizer(
    texts: Sequence[str], seconds: float = 2.0, normalizer: Normalizer | None = None
) -> dict:
    """Throughput of ``normalizer.normalize`` (offsets included) on one core.

    Runs one untimed warm-up pass (fills the character cache), then cycles through ``texts``
    for about ``seconds``.

    >>> bench_normalizer(["加薇：abc123"], seconds=0.01)["posts"] > 0
    True
    """
    normalizer = normalizer or ZhFinV1()
    texts = [t for t in texts if isinstance(t, str)]
    if not texts:
        raise ValueError("bench_normalizer needs at least one text")
    for text in texts:
        normalizer.normalize(text)
    posts = chars = 0
    started = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        for text in texts:
            normalizer.normalize(text)
        posts += len(texts)
        chars += sum(len(t) for t in texts)
        elapsed = time.perf_counter() - started
    return {
        "normalizer": normalizer.name,
        "texts": len(texts),
        "posts": posts,
        "seconds": round(elapsed, 3),
        "posts_per_s": round(posts / elapsed, 1),
        "chars_per_s": round(chars / elapsed, 1),
        "mean_chars": round(chars / posts, 1),
    }
