"""``qingfin bench``: speed of a bundle on this machine, with every figure measured in one run.

Reports texts/s and latency p50/p99 at batch 1 and 32 on a real length mix, int8 vs fp32 (and
torch eager for a training run when torch is installed) as ratios, the normalizer's share of
the time, and the effective dense GFLOP/s against a numpy sgemm probe of the same machine.
Machines here are noisy: compare ratios from one run, not absolute numbers across runs.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def time_batches(run: Callable[[list[str]], object], texts: list[str], batch_size: int, budget_s: float) -> dict:
    """Run ``run`` over consecutive batches until the texts or the time budget are used up."""
    latencies, done = [], 0
    started = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        t = time.perf_counter()
        run(batch)
        latencies.append(time.perf_counter() - t)
        done += len(batch)
        if time.perf_counter() - started > budget_s:
            break
    elapsed = time.perf_counter() - started
    return {"texts": done, "seconds": elapsed, "texts_per_s": done / elapsed,
            "p50_ms": 1000 * _percentile(latencies, 50), "p99_ms": 1000 * _percentile(latencies, 99)}


def dense_parameters(onnx_path: Path) -> int:
    """Weights of the matrix multiplications in the graph (embedding lookups excluded).

    A weight reaches its MatMul directly (fp32) or through a DequantizeLinear of an int8
    initializer (QDQ int8); both count the same.
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    sizes = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer if len(init.dims) == 2}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in sizes:
            sizes[node.output[0]] = sizes[node.input[0]]
    total = 0
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul"):
            total += sum(sizes.get(name, 0) for name in node.input)
    return total


def sgemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Peak-ish float32 matrix-multiply speed of numpy on this machine (GFLOP/s)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _token_count(classifier, texts: list[str]) -> int:
    """Real (unpadded) tokens: the tokenizer pads a batch, the attention mask does not lie."""
    return sum(sum(e.attention_mask) for e in classifier._tokenizer.encode_batch([classifier.normalizer(t) for t in texts]))


def time_stream(classifier, texts: list[str], batch_size: int, budget_s: float) -> dict:
    """Throughput of the streaming path (``iter_predict``: length-sorted windows of
    ``SORT_WINDOW`` texts), which is how batch jobs score texts; stops at the time budget."""
    from qingfin.serve.classifier import SORT_WINDOW

    started = time.perf_counter()
    done = 0
    for _ in classifier.iter_predict(iter(texts), batch_size=batch_size):
        done += 1
        if done % SORT_WINDOW == 0 and time.perf_counter() - started > budget_s:
            break
    elapsed = time.perf_counter() - started
    return {"texts": done, "seconds": elapsed, "texts_per_s": done / elapsed}


def bench_precision(model: str | Path, precision: str, texts: list[str], threads: int | None, budget_s: float) -> dict:
    from qingfin.serve import Classifier

    classifier = Classifier.load(model, precision=precision, threads=threads)
    classifier.predict(texts[:32])  # warm-up
    # Latency: one call per batch of consecutive texts (the mix a request brings). Throughput:
    # the streaming path that sorts by length inside chunks, as batch jobs run.
    latency32 = time_batches(lambda b: classifier.predict(b, batch_size=32), texts, 32, budget_s / 2)
    stream32 = time_stream(classifier, texts, 32, budget_s)
    result = {"batch32": {**stream32, "p50_ms": latency32["p50_ms"], "p99_ms": latency32["p99_ms"],
                          "unsorted_texts_per_s": latency32["texts_per_s"]},
              "batch1": time_batches(lambda b: classifier.predict(b, batch_size=1), texts, 1, budget_s / 2)}
    n = result["batch32"]["texts"]
    normalize_s = _timed(lambda: [classifier.normalizer(t) for t in texts[:n]])
    result["normalizer_share"] = normalize_s / result["batch32"]["seconds"]
    tokens = _token_count(classifier, texts[:n])
    params = dense_parameters(classifier.bundle.model_path(precision))
    result["mean_tokens"] = tokens / n
    result["dense_params"] = params
    result["effective_gflops"] = 2 * params * tokens / result["batch32"]["seconds"] / 1e9
    return result


def bench_torch(run_dir: str | Path, texts: list[str], max_length: int, budget_s: float) -> dict:
    """Eager torch throughput of a training run's model at batch 32 (train extra needed)."""
    from qingfin.data.normalize import get_normalizer
    from qingfin.models.modeling import MultiLabelModel, torch_logits
    from qingfin.training.calibrate import run_config
    from qingfin.training.tokenizer_loading import load_tokenizer

    run_dir = Path(run_dir)
    model = MultiLabelModel.load(run_dir / "model")
    tokenizer = load_tokenizer(run_dir / "model" / "tokenizer", run_dir / "model" / "encoder")
    normalizer = get_normalizer(run_config(run_dir).data.normalizer)
    run = lambda batch: torch_logits(model, tokenizer, [normalizer(t) for t in batch], max_length, 32)
    run(texts[:32])
    return {"batch32": time_batches(run, texts, 32, budget_s)}


def load_texts(data: str | Path, limit: int) -> list[str]:
    with open(data, encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line in handle if line.strip()]
    return texts[:limit]


def median_run(runs: list[dict]) -> dict:
    """The run with the median batch-32 throughput, with every run's throughput attached.

    >>> median_run([{"batch32": {"texts_per_s": v}} for v in (3.0, 1.0, 2.0)])["runs_batch32_texts_per_s"]
    [3.0, 1.0, 2.0]
    >>> median_run([{"batch32": {"texts_per_s": v}} for v in (3.0, 1.0, 2.0)])["batch32"]["texts_per_s"]
    2.0
    """
    ordered = sorted(runs, key=lambda run: run["batch32"]["texts_per_s"])
    return {**ordered[(len(ordered) - 1) // 2], "runs_batch32_texts_per_s": [run["batch32"]["texts_per_s"] for run in runs]}


def run_bench(model: str | Path, data: str | Path, limit: int = 1000, threads: int | None = None,
              torch_run: str | None = None, budget_s: float = 20.0, repeats: int = 1) -> dict:
    """Measure every precision of the bundle ``repeats`` times, interleaved (int8, fp32, int8, …)
    so that a slow spell of a noisy machine hits both; each precision reports its median run."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    texts = load_texts(data, limit)
    from qingfin.serve.bundle import load_bundle

    files = load_bundle(model).manifest["files"]
    precisions = [p for p, f in (("int8", "model.int8.onnx"), ("fp32", "model.onnx")) if f in files]
    report = {"model": str(model), "data": str(data), "texts": len(texts), "repeats": repeats,
              "mean_chars": statistics.mean(len(t) for t in texts), "sgemm_gflops": sgemm_gflops()}
    runs: dict[str, list[dict]] = {precision: [] for precision in precisions}
    for _ in range(repeats):
        for precision in precisions:
            runs[precision].append(bench_precision(model, precision, texts, threads, budget_s))
    for precision in precisions:
        report[precision] = median_run(runs[precision])
    if torch_run:
        try:
            import torch  # noqa: F401
        except ImportError:
            report["torch"] = "torch not installed (train extra)"
        else:
            max_length = load_bundle(model).manifest["inference"]["max_length"]
            report["torch"] = bench_torch(torch_run, texts, max_length, budget_s)
    return report


def format_bench(report: dict) -> str:
    lines = [f"bench: {report['texts']} texts from {report['data']} (mean {report['mean_chars']:.0f} chars); "
             f"numpy sgemm probe {report['sgemm_gflops']:.1f} GFLOP/s", "",
             f"{'engine':<8} {'b32 texts/s':>12} {'b32 p50 ms':>11} {'b32 p99 ms':>11} {'b1 texts/s':>11} {'b1 p50 ms':>10} {'b1 p99 ms':>10} {'norm %':>7} {'GFLOP/s':>8} {'% sgemm':>8}"]
    for precision in ("int8", "fp32"):
        if precision in report:
            r = report[precision]
            b32, b1 = r["batch32"], r["batch1"]
            lines.append(f"{precision:<8} {b32['texts_per_s']:>12.1f} {b32['p50_ms']:>11.1f} {b32['p99_ms']:>11.1f} {b1['texts_per_s']:>11.1f} "
                         f"{b1['p50_ms']:>10.1f} {b1['p99_ms']:>10.1f} {100 * r['normalizer_share']:>7.1f} {r['effective_gflops']:>8.1f} "
                         f"{100 * r['effective_gflops'] / report['sgemm_gflops']:>8.1f}")
    if isinstance(report.get("torch"), dict):
        t = report["torch"]["batch32"]
        lines.append(f"{'torch':<8} {'':>12} {t['p50_ms']:>11.1f} {t['p99_ms']:>11.1f}   (consecutive batches of 32: {t['texts_per_s']:.1f} texts/s)")
    ratios = []
    for precision in ("int8", "fp32"):
        spread = report.get(precision, {}).get("runs_batch32_texts_per_s", [])
        if len(spread) > 1:
            ratios.append(f"{precision} batch-32 texts/s over {len(spread)} runs: median {report[precision]['batch32']['texts_per_s']:.1f}, "
                          f"min {min(spread):.1f}, max {max(spread):.1f} (the table shows the median run)")
    if "int8" in report and "fp32" in report:
        ratios.append(f"int8/fp32 throughput at batch 32: {report['int8']['batch32']['texts_per_s'] / report['fp32']['batch32']['texts_per_s']:.2f}x")
    if isinstance(report.get("torch"), dict):
        base = report.get("int8") or report.get("fp32")
        # torch is timed on batches of 32 consecutive texts, so compare it with the same ONNX measure.
        ratios.append(f"onnxruntime/torch eager at batch 32 (consecutive texts, no length sorting): "
                      f"{base['batch32']['unsorted_texts_per_s'] / report['torch']['batch32']['texts_per_s']:.2f}x")
    return "\n".join(lines + [""] + ratios)
