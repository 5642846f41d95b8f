"""Train (2 steps) → calibrate → export → load → predict, on the tiny random model."""

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from qingfin.data.schema import LABELS
from qingfin.serve import BundleError, Classifier, Prediction


def test_run_directory(tiny_run):
    summary = json.loads((tiny_run / "train_summary.json").read_text())
    assert summary["global_steps"] == 2
    assert set(summary["data_sha256"]) == {"train", "dev"}
    assert (tiny_run / "config.toml").is_file() and (tiny_run / "model" / "head.safetensors").is_file()
    thresholds = json.loads((tiny_run / "thresholds.json").read_text())
    assert set(thresholds["labels"]) == set(LABELS) and thresholds["calibration_data_sha256"]
    for values in thresholds["labels"].values():
        assert 0.0 <= values["review"] <= values["block"] <= 1.0


def test_bundle_files_and_manifest(tiny_bundle):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert manifest["format"] == "qingfin-bundle" and manifest["format_version"] == 1
    expected = {"model.onnx", "model.int8.onnx", "tokenizer/tokenizer.json", "labels.json", "thresholds.json", "calibration.json",
                "normalizer.json", "metrics.json", "training_config.json", "README.md"}
    assert expected == set(manifest["files"])
    assert manifest["parity"]["fp32_vs_torch_max_abs_logit_diff"] <= 1e-4
    assert {"torch", "onnxruntime", "git_commit"} <= set(manifest["built_with"])
    card = (tiny_bundle / "README.md").read_text()
    assert "# qingfin-tiny-demo 0.0.1" in card
    assert manifest["graph"]["fused_operators"]["BiasGelu"] == 2 and "- fused operators: BiasGelu × 2" in card
    assert "- int8: static QDQ" in card
    metrics = json.loads((tiny_bundle / "metrics.json").read_text())
    assert {"dev", "calib", "test"} == set(metrics) and "macro" in metrics["test"]["review"]


def test_onnx_parity_on_unseen_shapes(tiny_run, tiny_bundle):
    """Independent of export's own check: real texts of other batch sizes and lengths."""
    import torch

    from qingfin.models.modeling import MultiLabelModel
    from qingfin.training.tokenizer_loading import load_tokenizer

    model = MultiLabelModel.load(tiny_run / "model")
    tokenizer = load_tokenizer(tiny_run / "model" / "tokenizer", tiny_run / "model" / "encoder")
    session = ort.InferenceSession(str(tiny_bundle / "model.onnx"))
    texts = ["加微信", "不看征信，黑户秒批，当天下款5万" * 3, "今天天气真好", "银行", "x" * 60]
    for batch in (1, 5):
        encoded = tokenizer(texts[:batch], padding=True, truncation=True, max_length=64, return_tensors="np")
        feeds = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "token_type_ids": encoded["token_type_ids"]}
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})["logits"].numpy()
        assert np.abs(session.run(None, feeds)[0] - expected).max() < 1e-4


def test_classifier_api(tiny_bundle):
    clf = Classifier.load(tiny_bundle)
    assert clf.labels == LABELS and clf.precision == "int8"
    assert set(clf.thresholds) == set(LABELS) and set(clf.thresholds["defamation"]) == {"review", "block"}
    assert clf.version == "0.0.1" and len(clf.digest) == 64
    probs = clf.predict_proba(["加薇信领额度"])
    assert probs.shape == (1, 6) and probs.dtype == np.float32  # never squeezed
    assert clf.predict_proba([]).shape == (0, 6)
    predictions = clf.predict(["", "银行" * 2000, "下款"])  # empty and very long texts are fine
    assert len(predictions) == 3 and all(isinstance(p, Prediction) for p in predictions)
    first = predictions[0]
    assert set(first.scores) == set(LABELS) and first.decision in {"pass", "review", "block"}
    assert first.labels == [label for label in LABELS if first.decisions[label] != "pass"]
    assert first.model_version == "0.0.1" and isinstance(first.evidence, list)
    with pytest.raises(TypeError, match="single string"):
        clf.predict("一个字符串")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        clf.predict(["ok", 3])


def test_predictions_are_consistent_across_doors(tiny_bundle):
    clf = Classifier.load(tiny_bundle, precision="fp32", threads=1)
    texts = [f"第{i}条：加微信{i}号，黑户可贷" if i % 3 else "今天天气真好" * (i % 5 + 1) for i in range(50)]
    batch = clf.predict_proba(texts, batch_size=7)
    one_by_one = np.concatenate([clf.predict_proba([t]) for t in texts])
    assert np.allclose(batch, one_by_one, atol=1e-5)  # length sorting never reorders outputs
    windowed = clf.predict_proba(texts, batch_size=7, sort_window=11)  # 5 windows, the last short
    assert np.allclose(windowed, one_by_one, atol=1e-5)
    with pytest.raises(ValueError, match="sort_window"):
        clf.predict_proba(texts, sort_window=0)
    streamed = list(clf.iter_predict(iter(texts), batch_size=4, chunk_size=9))
    direct = clf.predict(texts, batch_size=4)
    assert len(streamed) == len(texts)
    for a, b in zip(streamed, direct):  # same order; batch composition changes padding only
        assert a.scores == pytest.approx(b.scores, abs=1e-5)


def test_threshold_overrides(tiny_bundle):
    clf = Classifier.load(tiny_bundle)
    everything = {label: {"review": 0.0, "block": 1.0} for label in LABELS}
    prediction = clf.predict(["随便一句话"], thresholds=everything)[0]
    assert prediction.labels == list(LABELS) and prediction.decision == "review"
    with pytest.raises(ValueError, match="unknown label"):
        clf.predict(["x"], thresholds={"fraud": {"review": 0.5}})
    with pytest.raises(ValueError, match=r"not a number in \[0, 1\]"):
        clf.predict(["x"], thresholds={"defamation": {"review": 1.5}})


def test_tampered_bundles_are_refused(tiny_bundle, tmp_path):
    corrupted = shutil.copytree(tiny_bundle, tmp_path / "corrupted")
    data = bytearray((corrupted / "model.int8.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (corrupted / "model.int8.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        Classifier.load(corrupted)

    missing = shutil.copytree(tiny_bundle, tmp_path / "missing")
    (missing / "thresholds.json").unlink()
    with pytest.raises(BundleError, match="missing file thresholds.json"):
        Classifier.load(missing)

    future = shutil.copytree(tiny_bundle, tmp_path / "future")
    manifest = json.loads((future / "manifest.json").read_text())
    manifest["format_version"] = 99
    (future / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format_version 99"):
        Classifier.load(future)

    with pytest.raises(BundleError, match="no bundle directory"):
        Classifier.load(tmp_path / "nowhere")


def test_evaluate_writes_json_and_markdown(tiny_bundle, fixture_paths, tmp_path):
    from qingfin.models.evaluate import evaluate_file

    result = evaluate_file(tiny_bundle, fixture_paths["test"], tmp_path / "eval")
    assert result["rows"] == 48
    assert set(result["metrics"]) == {"review", "block"}
    assert set(result["slices"]) >= {"kind", "platform", "source"}
    assert "hard_negative" in result["slices"]["kind"]
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "## At the block thresholds" in report and "| economic_rumor |" in report


def test_int8_scores_do_not_depend_on_batch_neighbours(tiny_bundle, fixture_paths):
    """Static int8 ranges: a text scores the same alone or padded into a batch of others."""
    from qingfin.data.rows import read_rows

    texts = [row["text"] for row in read_rows(fixture_paths["test"])][:24]
    classifier = Classifier.load(tiny_bundle, precision="int8")
    alone = classifier.predict_proba(texts, batch_size=1)
    batched = classifier.predict_proba(texts, batch_size=8)
    assert np.abs(alone - batched).max() < 1e-5


def test_bench_counts_the_same_dense_weights_in_both_precisions(tiny_bundle):
    from qingfin.serve.bench import dense_parameters

    fp32 = dense_parameters(tiny_bundle / "model.onnx")
    assert fp32 > 0 and dense_parameters(tiny_bundle / "model.int8.onnx") == fp32


def test_int8_model_stores_weights_and_embeddings_in_one_byte(tiny_bundle):
    """The word embedding is most of a real model's bytes: it must be quantized too."""
    import onnx

    initializers = onnx.load(str(tiny_bundle / "model.int8.onnx")).graph.initializer
    float_matrices = [i.name for i in initializers
                      if len(i.dims) == 2 and i.data_type == onnx.TensorProto.FLOAT and np.prod(i.dims) > 1000
                      and not i.name.endswith("_row_scale")]
    assert float_matrices == []
    assert any("word_embeddings" in i.name and i.data_type == onnx.TensorProto.INT8 for i in initializers)


def test_row_wise_embedding_quantization_keeps_every_row_close():
    """Rows of very different ranges each keep ~1/254 of their own range (one scale per table
    would flatten the small rows to zero)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from qingfin.models.export import quantize_embedding_rows

    rng = np.random.default_rng(0)
    table = (rng.standard_normal((1200, 8)) * np.logspace(-4, 1, 1200)[:, None]).astype(np.float32)
    table[7] = 0.0
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["rows"], name="lookup")], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, [None, 8])],
        [numpy_helper.from_array(table, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert quantize_embedding_rows(model) == ["table"]
    assert quantize_embedding_rows(model) == []  # already int8: nothing left to rewrite
    ids = np.arange(1200, dtype=np.int64)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"ids": ids})[0]
    row_range = np.abs(table).max(axis=1)
    assert np.all(np.abs(got - table).max(axis=1) <= row_range / 254 + 1e-12)
    assert np.all(got[7] == 0.0)


def test_int8_graph_runs_fused_integer_kernels(tiny_bundle):
    """What makes int8 fast on CPU: GELU and residual+LayerNorm fused, weight products run as
    MatMulIntegerToFloat (int8 in, float out) once onnxruntime has optimized the session."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tiny_bundle.parent / "int8-optimized.onnx")
    ort.InferenceSession(str(tiny_bundle / "model.int8.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]
    layers = 2  # the tiny test model
    assert ops.count("MatMulIntegerToFloat") == 6 * layers  # Q, K, V, output, FFN in, FFN out
    assert ops.count("BiasGelu") == layers and "Erf" not in ops
    assert ops.count("SkipLayerNormalization") == 2 * layers


def test_bench_repeats_interleave_and_report_the_median_run(tiny_bundle, fixture_paths):
    from qingfin.serve.bench import format_bench, run_bench

    report = run_bench(tiny_bundle, fixture_paths["test"], limit=40, budget_s=0.5, repeats=3)
    for precision in ("int8", "fp32"):
        runs = report[precision]["runs_batch32_texts_per_s"]
        assert len(runs) == 3 and sorted(runs)[1] == report[precision]["batch32"]["texts_per_s"]
    assert "int8 batch-32 texts/s over 3 runs" in format_bench(report)
    with pytest.raises(ValueError, match="repeats"):
        run_bench(tiny_bundle, fixture_paths["test"], repeats=0)


def test_calibrate_policy_overrides_are_recorded(tiny_run, tmp_path):
    import json
    import shutil

    from qingfin.training.calibrate import calibrate_run
    from qingfin.training.config import ConfigError

    run = shutil.copytree(tiny_run, tmp_path / "run")
    result = calibrate_run(run, overrides=["calibration.review_min_precision=0.8", "calibration.precision_confidence=0.9"])
    written = json.loads((run / "thresholds.json").read_text(encoding="utf-8"))
    assert written == result["thresholds"]
    assert written["policy"]["precision_confidence"] == 0.9
    for label, chosen in written["labels"].items():
        # Each level either met its target at 0.9 confidence or says that it could not.
        assert chosen["block_method"].endswith("at 0.9 confidence")
        assert chosen["review_method"] == "max_recall at precision>=0.8 at 0.9 confidence" or any(
            "0.8 at 0.9 confidence unreachable" in note for note in chosen["notes"]), label
    with pytest.raises(ConfigError, match="only overrides"):
        calibrate_run(run, overrides=["train.epochs=3"])


def test_bundle_thresholds_are_fitted_on_the_served_graph(tiny_run, tiny_bundle, fixture_paths):
    """Export refits calibration and thresholds on the int8 graph's calib scores, with the run's
    policy, so a precision target met on calib is met by the model that is actually served."""
    import json

    from qingfin.data.rows import read_rows
    from qingfin.data.schema import LABELS, labels_matrix
    from qingfin.models.analysis import batched_logits
    from qingfin.models.calibration import choose_thresholds
    from qingfin.models.analysis import policy_from_document
    from qingfin.serve import Classifier
    from qingfin.serve.scoring import calibrated_probs, calibration_from_document

    clf = Classifier.load(tiny_bundle)
    run_thresholds = json.loads((tiny_run / "thresholds.json").read_text(encoding="utf-8"))
    assert clf.bundle.calibration["fitted_on"]["graph"] == "model.int8.onnx"
    assert clf.bundle.thresholds["policy"] == run_thresholds["policy"]
    rows = read_rows(fixture_paths["calib"])
    logits = batched_logits(clf.logits, [row["text"] for row in rows])
    probs = calibrated_probs(logits, *calibration_from_document(clf.bundle.calibration, LABELS))
    again = choose_thresholds(labels_matrix([row["labels"] for row in rows], LABELS), probs, LABELS,
                              policy_from_document(run_thresholds))
    for label in LABELS:
        assert clf.thresholds[label]["review"] == pytest.approx(again[label]["review"], abs=1e-6)
        assert clf.thresholds[label]["block"] == pytest.approx(again[label]["block"], abs=1e-6)


def test_int8_recipe_can_keep_chosen_matmuls_in_fp32(tiny_run, tiny_bundle, fixture_paths, tmp_path):
    """``keep_fp32`` (used by bench/int8_variants.py) leaves the named weight MatMuls unquantized."""
    import onnx

    from qingfin.data.rows import read_rows
    from qingfin.models.export import calibration_feeds, quantize_int8
    from qingfin.training.tokenizer_loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_run / "model" / "tokenizer", tiny_run / "model" / "encoder")
    texts = [row["text"] for row in read_rows(fixture_paths["calib"])][:8]
    feeds = calibration_feeds(tokenizer, texts, "zh_fin.v1", 32)

    def after_gelu(graph_path):
        graph = onnx.load(str(graph_path)).graph
        producer = {output: node.op_type for node in graph.node for output in node.output}
        return [n.name for n in graph.node if n.op_type == "MatMul" and producer.get(n.input[0]) == "BiasGelu"]

    quantize_int8(tiny_bundle / "model.onnx", tmp_path / "kept.onnx", feeds, keep_fp32=after_gelu)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "kept-optimized.onnx")
    ort.InferenceSession(str(tmp_path / "kept.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]
    layers = 2
    assert ops.count("MatMulIntegerToFloat") == 5 * layers  # FFN out stays fp32
    kept = onnx.load(str(tmp_path / "kept.onnx")).graph
    quantized_weights = {i for n in kept.node if n.op_type == "DequantizeLinear" for i in n.input}
    assert len(after_gelu(tmp_path / "kept.onnx")) == layers
    assert quantized_weights  # the other weight MatMuls are still int8
