"""``qingfin export RUN_DIR --out BUNDLE_DIR``: a calibrated run → a verified model bundle.

Writes ``model.onnx`` (fp32) and ``model.int8.onnx`` (static int8, see :func:`quantize_int8`), the
tokenizer, labels, thresholds, calibration, normalizer, metrics, training config and a
generated model card, then the manifest with every file's sha256. Before anything is written
to ``--out``, torch and onnxruntime must agree within the configured tolerance on batch sizes
and lengths different from the export example.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from qingfin.data.normalize import get_normalizer
from qingfin.data.rows import read_rows
from qingfin.data.schema import labels_document
from qingfin.models.model_card import render_model_card
from qingfin.models.modeling import LogitsOnly, MultiLabelModel
from qingfin.serve.bundle import MODEL_FILES, write_manifest
from qingfin.training.calibrate import run_config
from qingfin.training.config import to_dict
from qingfin.training.tokenizer_loading import load_tokenizer

logger = logging.getLogger(__name__)

INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]
EXAMPLE_SHAPE = (2, 16)  # the traced example; parity is checked on other shapes
PARITY_SHAPES = ((1, 5), (3, 37), (7, 64), (4, 128))


class ParityError(RuntimeError):
    """ONNX and torch disagree beyond the tolerance: the export is not trustworthy."""


def _random_inputs(batch: int, length: int, vocab_size: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab_size, size=(batch, length), dtype=np.int64)
    mask = np.ones((batch, length), dtype=np.int64)
    for row in range(1, batch):  # ragged rows exercise the padding path
        mask[row, rng.integers(1, length + 1):] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def export_onnx(model: MultiLabelModel, path: Path, opset: int) -> None:
    """Export with the torch.export-based exporter and symbolic batch and sequence dimensions.

    (The legacy TorchScript tracer bakes transformers' mask-building shape checks into
    constants, which the parity check caught as wrong logits on other lengths.)
    """
    vocab = model.encoder.config.vocab_size
    example = _random_inputs(*EXAMPLE_SHAPE, vocab, seed=0)
    batch = torch.export.Dim("batch", min=1, max=4096)
    sequence = torch.export.Dim("sequence", min=2, max=model.encoder.config.max_position_embeddings)
    torch.onnx.export(
        LogitsOnly(model).eval(),
        tuple(torch.from_numpy(example[name]) for name in INPUT_NAMES),
        str(path),
        input_names=INPUT_NAMES,
        output_names=["logits"],
        dynamic_shapes={name: {0: batch, 1: sequence} for name in INPUT_NAMES},
        opset_version=opset,
        dynamo=True,
        external_data=False,
        verbose=False,
    )


def parity(model: MultiLabelModel, onnx_path: Path, max_length: int) -> dict:
    """Max |torch − onnxruntime| logit difference per shape (shapes capped at ``max_length``)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    vocab = model.encoder.config.vocab_size
    results = {}
    for seed, (batch, length) in enumerate(PARITY_SHAPES, start=1):
        length = min(length, max_length)
        feeds = _random_inputs(batch, length, vocab, seed)
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})["logits"].numpy()
        got = session.run(None, feeds)[0]
        # Padded positions are masked, so every row's logits must agree regardless of padding.
        results[f"{batch}x{length}"] = float(np.abs(expected - got).max())
    return results


class _Feeds(CalibrationDataReader):
    """One unpadded text at a time, so padding never widens the observed activation ranges."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def calibration_feeds(tokenizer, texts: list[str], normalizer_name: str, max_length: int) -> list[dict[str, np.ndarray]]:
    """ONNX input feeds (batch 1) for the texts that fix the int8 activation ranges."""
    normalizer = get_normalizer(normalizer_name)
    feeds = []
    for text in texts:
        encoded = tokenizer(normalizer(text), truncation=True, max_length=max_length, return_tensors="np")
        feeds.append({name: encoded[name].astype(np.int64) for name in INPUT_NAMES})
    return feeds


def _activation_matmuls(path: Path) -> list[str]:
    """MatMul nodes with no constant operand (attention's scores and context products)."""
    import onnx

    graph = onnx.load(str(path)).graph
    constants = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not any(i in constants for i in n.input)]


def fuse_for_cpu(path: Path, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Rewrite ``path`` in place with onnxruntime's BERT fusions that are exact: BiasGelu and
    SkipLayerNormalization (residual + bias + LayerNorm in one pass).

    Why: in a profile of the int8 model the matrix products were 28 % of the CPU time; the rest was
    element-wise passes (the exporter spells GELU as Div/Erf/Add/Mul/Mul, which onnxruntime's
    own session fusions do not recognise, and every bias was a separate Add). Attention and
    embedding fusions stay off: the fused Attention op would hide the Q/K/V MatMuls from the
    int8 quantizer, and the row-wise int8 embedding (:func:`quantize_embedding_rows`) needs the
    plain Gather. Returns the count of each fused operator.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_attention = False
    options.enable_embed_layer_norm = False
    options.enable_qordered_matmul = False
    # opt_level 0: only these portable graph rewrites, no machine-specific onnxruntime passes.
    optimized = optimize_model(str(path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                               optimization_options=options, opt_level=0)
    optimized.save_model_to_file(str(path))
    return {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}


def quantize_embedding_rows(model) -> list[str]:
    """Store every embedding table (a constant matrix read by ``Gather``) as int8, one scale per row.

    ``Gather(W, ids)`` becomes ``Cast(Gather(W_int8, ids)) * Gather(scale, ids)``: the lookup
    reads one byte per weight and only the looked-up rows are widened. The word embedding is
    most of the file (fp32: 64 MB of a 92 MB model). One scale per row, not one for the whole
    table: rows of rare pieces and of frequent ones differ in range by orders of magnitude, and
    a single scale cost these rows most of their resolution. Returns the tables rewritten.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    nodes, rewritten = [], []
    for node in graph.node:
        table = initializers.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or len(table.dims) != 2 or table.dims[1] < 2 or table.data_type != TensorProto.FLOAT:
            nodes.append(node)
            continue
        weights = numpy_helper.to_array(table).astype(np.float32)
        scale = np.abs(weights).max(axis=1) / 127.0
        scale[scale == 0] = 1.0  # an all-zero row (e.g. padding) stays exactly zero
        quantized = np.clip(np.rint(weights / scale[:, None]), -127, 127).astype(np.int8)
        name, ids, out = table.name, node.input[1], node.output[0]
        graph.initializer.remove(table)
        graph.initializer.extend([numpy_helper.from_array(quantized, f"{name}_int8"),
                                  numpy_helper.from_array(scale.astype(np.float32)[:, None], f"{name}_row_scale")])
        nodes += [
            helper.make_node("Gather", [f"{name}_int8", ids], [f"{out}_int8"], name=f"{node.name}_int8", axis=0),
            helper.make_node("Cast", [f"{out}_int8"], [f"{out}_widened"], name=f"{node.name}_widen", to=TensorProto.FLOAT),
            helper.make_node("Gather", [f"{name}_row_scale", ids], [f"{out}_scale"], name=f"{node.name}_row_scale", axis=0),
            helper.make_node("Mul", [f"{out}_widened", f"{out}_scale"], [out], name=f"{node.name}_dequantize"),
        ]
        rewritten.append(name)
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def quantize_int8(fp32_path: Path, int8_path: Path, feeds: list[dict[str, np.ndarray]],
                  keep_fp32: Callable[[Path], list[str]] | None = None) -> None:
    """Static int8: per-channel int8 weights, uint8 activations with ranges fixed from ``feeds``,
    and row-wise int8 embedding tables (:func:`quantize_embedding_rows`).

    Why static: dynamic quantization computes activation scales from each batch, so a text's
    scores depended on the other texts in its batch (on the release candidate, 13 of 7,152
    review decisions on the test split changed between batch 1 and batch 32, |Δp| up to 0.49).
    With fixed ranges a text scores the same in any batch. Attention's activation x activation
    products stay fp32 (cheap, and the most range-sensitive).

    Why QDQ with float MatMul outputs: onnxruntime turns each quantize → int8 MatMul pair into
    one ``MatMulIntegerToFloat`` kernel that returns float, so no output requantization (an
    extra rounding) and no separate dequantize pass. Against the earlier QOperator graph
    (``QLinearMatMul``, outputs requantized to uint8) this was 2.5x closer to fp32 on dev
    (mean |Δp| 0.0047 → 0.0016, review flips 23 → 10 of 6,870) and 1.27x faster.

    ``keep_fp32``: given the pre-processed graph, names of further MatMul nodes to leave in fp32
    (for recipe experiments: ``bench/int8_variants.py``).
    """
    import onnx

    with tempfile.TemporaryDirectory() as scratch:
        prepared, matmuls_only = Path(scratch) / "prepared.onnx", Path(scratch) / "matmuls.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(matmuls_only),
            _Feeds(feeds),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=_activation_matmuls(prepared) + (keep_fp32(prepared) if keep_fp32 else []),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"]},
        )
        model = onnx.load(str(matmuls_only))
    quantize_embedding_rows(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(int8_path))


def _versions() -> dict:
    names = ("torch", "transformers", "onnx", "onnxruntime", "tokenizers", "numpy")
    versions = {name: metadata.version(name) for name in names}
    versions["python"] = platform.python_version()
    versions["qingfin"] = metadata.version("qingfin")
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    versions["git_commit"] = commit
    return versions


def _copy_json(source: Path, target: Path) -> dict:
    if not source.is_file():
        raise FileNotFoundError(f"{source} is missing: run `qingfin calibrate {source.parent}` before exporting")
    document = json.loads(source.read_text(encoding="utf-8"))
    target.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return document


def _write_json(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _normalizer_document(name: str) -> dict:
    normalizer = get_normalizer(name)
    return {"name": normalizer.name, "settings": normalizer.settings()}


def _split_metrics(bundle_dir: Path, config) -> dict:
    """Metrics of the int8 model on every configured split that exists (for metrics.json)."""
    from qingfin.models.evaluate import evaluate_rows
    from qingfin.serve import Classifier

    classifier = Classifier.load(bundle_dir, verify=False)
    out = {}
    for split in ("dev", "calib", "test"):
        path = Path(getattr(config.data, split))
        if path.is_file():
            result = evaluate_rows(classifier, read_rows(path))
            out[split] = {"rows": result["rows"], "precision": classifier.precision, **result["metrics"]}
    return out


def calibrate_served_graph(bundle_dir: Path, run_dir: Path) -> dict:
    """Refit calibration and thresholds on the calib scores of the graph the bundle serves.

    The run's thresholds were fitted on torch scores. int8 shifts scores slightly, and a
    threshold chosen at the edge of its precision target sits on a knife edge: with the
    run's thresholds the shipped int8 graph missed the review target for impersonation (82.7
    against 85) and the block target for traffic_diversion (93.5 against 97) on the very calib
    split they were fitted on. The run's policy and method are kept; ``fitted_on.graph`` records
    which graph the documents describe. Returns ``{"calibration": ..., "thresholds": ...}``.
    """
    from qingfin.data.hashing import file_sha256
    from qingfin.data.schema import LABELS, labels_matrix
    from qingfin.models.analysis import batched_logits, policy_from_document
    from qingfin.serve import Classifier
    from qingfin.training.calibrate import calibration_documents

    run_calibration = json.loads((run_dir / "calibration.json").read_text(encoding="utf-8"))
    run_thresholds = json.loads((run_dir / "thresholds.json").read_text(encoding="utf-8"))
    calib_path = Path(run_calibration["fitted_on"]["file"])
    if file_sha256(calib_path) != run_calibration["fitted_on"]["sha256"]:
        raise ValueError(f"{calib_path} changed since the run was calibrated: run `qingfin calibrate {run_dir}` first")
    rows = read_rows(calib_path)
    classifier = Classifier.load(bundle_dir, verify=False)
    logits = batched_logits(classifier.logits, [row["text"] for row in rows]).astype(np.float64)
    calibration, thresholds = calibration_documents(
        logits, labels_matrix([row["labels"] for row in rows], LABELS), policy_from_document(run_thresholds),
        run_calibration["method"], {**run_calibration["fitted_on"], "graph": MODEL_FILES[classifier.precision]})
    _write_json(bundle_dir / "calibration.json", calibration)
    _write_json(bundle_dir / "thresholds.json", thresholds)
    return {"calibration": calibration, "thresholds": thresholds}


def export_run(run_dir: str | Path, out: str | Path, fp32: bool = True, int8: bool = True, speed: str | Path | None = None) -> Path:
    """Build the bundle for a trained and calibrated run in ``out`` (replaced atomically).

    ``speed``: a ``qingfin bench --json`` report measured on this machine, shipped as
    ``speed.json`` and summarised in the model card.
    """
    run_dir, out = Path(run_dir), Path(out)
    config = run_config(run_dir)
    model = MultiLabelModel.load(run_dir / "model")
    tokenizer = load_tokenizer(run_dir / "model" / "tokenizer", run_dir / "model" / "encoder")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Stage beside the target so the final rename is atomic (same filesystem).
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        fp32_path = staging / "model.onnx"
        export_onnx(model, fp32_path, config.export.opset)
        encoder_config = model.encoder.config
        fused = fuse_for_cpu(fp32_path, encoder_config.num_attention_heads, encoder_config.hidden_size)
        logger.info("fused operators: %s", fused)
        differences = parity(model, fp32_path, config.data.max_length)
        worst = max(differences.values())
        if worst > config.export.parity_tolerance:
            raise ParityError(f"torch vs onnxruntime max |Δlogit| {worst:.2e} > {config.export.parity_tolerance:.0e}: {differences}")
        parity_doc = {"fp32_vs_torch_max_abs_logit_diff": worst, "per_shape": differences, "tolerance": config.export.parity_tolerance}
        if int8:
            texts = [row["text"] for row in read_rows(config.data.calib)][: config.export.int8_calibration_rows]
            feeds = calibration_feeds(tokenizer, texts, config.data.normalizer, config.data.max_length)
            quantize_int8(fp32_path, staging / "model.int8.onnx", feeds)
            parity_doc["int8_vs_torch_max_abs_logit_diff"] = max(parity(model, staging / "model.int8.onnx", config.data.max_length).values())
        if not fp32:
            fp32_path.unlink()

        (staging / "tokenizer").mkdir()
        shutil.copy2(run_dir / "model" / "tokenizer" / "tokenizer.json", staging / "tokenizer" / "tokenizer.json")
        _write_json(staging / "labels.json", labels_document())
        _copy_json(run_dir / "thresholds.json", staging / "thresholds.json")
        _copy_json(run_dir / "calibration.json", staging / "calibration.json")
        _write_json(staging / "normalizer.json", _normalizer_document(config.data.normalizer))
        summary = json.loads((run_dir / "train_summary.json").read_text(encoding="utf-8"))
        _write_json(staging / "training_config.json", {"config": to_dict(config), "run": {k: v for k, v in summary.items() if k != "config"}})

        fields = {
            "name": config.export.name,
            "version": config.export.version,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "built_with": _versions(),
            "data_sha256": summary.get("data_sha256", {}),
            "base": summary.get("base_manifest"),
            "parity": parity_doc,
            "graph": {"fused_operators": fused,
                      "int8": "static QDQ: per-channel int8 MatMul weights, uint8 activations, float outputs; row-wise int8 embeddings"
                      if int8 else None},
            "inference": {"max_length": config.data.max_length, "pad_token": tokenizer.pad_token, "inputs": INPUT_NAMES, "output": "logits"},
        }
        write_manifest(staging, fields)  # provisional, so the bundle can score calib and its own splits
        calibrate_served_graph(staging, run_dir)
        write_manifest(staging, fields)
        _write_json(staging / "metrics.json", _split_metrics(staging, config))
        if speed is not None:
            _copy_json(Path(speed), staging / "speed.json")
        (staging / "README.md").write_text(render_model_card(staging), encoding="utf-8")
        write_manifest(staging, fields)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    logger.info("bundle written to %s (parity %.2e)", out, worst)
    return out
