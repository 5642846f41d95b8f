"""``qingfin evaluate``: metrics of a bundle on a labeled JSONL file, overall and per slice.

Metrics come at both shipped threshold sets (``review`` and ``block``), per label plus micro
and macro averages, with PR-AUC and ECE; slices by any ``kind``, ``platform``, ``source``,
``origin`` or ``attack`` field present.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from qingfin.data.rows import read_rows
from qingfin.data.schema import labels_matrix
from qingfin.models import metrics

logger = logging.getLogger(__name__)

SLICE_FIELDS = ("kind", "platform", "source", "origin", "attack")


def metrics_at_thresholds(y_true: np.ndarray, probs: np.ndarray, classifier) -> dict:
    """``{"review": report, "block": report}`` for one set of rows."""
    labels = classifier.labels
    return {
        level: metrics.report(y_true, probs, [classifier.thresholds[label][level] for label in labels], labels)
        for level in ("review", "block")
    }


def slice_summary(rows: list[dict], y_true: np.ndarray, probs: np.ndarray, classifier) -> dict:
    """Per slice value: rows, positives, macro-F1 / micro-F1 at review, and the flag rate.

    The flag rate (share of rows with any label at review) is what matters for clean slices
    such as hard negatives, where F1 is undefined.
    """
    review = np.array([classifier.thresholds[label]["review"] for label in classifier.labels])
    flagged = (probs >= review[None, :]).any(1)
    summary: dict[str, dict] = {}
    for field_name in SLICE_FIELDS:
        groups: dict[str, list[int]] = defaultdict(list)
        for index, row in enumerate(rows):
            if isinstance(row.get(field_name), str):
                groups[row[field_name]].append(index)
        if not groups:
            continue
        summary[field_name] = {}
        for value, index in sorted(groups.items()):
            report = metrics.report(y_true[index], probs[index], review, classifier.labels)
            summary[field_name][value] = {
                "rows": len(index),
                "positive_rows": int(y_true[index].any(1).sum()),
                "macro_f1": report["macro"]["f1"],
                "micro_f1": report["micro"]["f1"],
                "recall_any": _recall_any(y_true[index], flagged[index]),
                "flag_rate": float(flagged[index].mean()),
            }
    return summary


def _recall_any(y_true: np.ndarray, flagged: np.ndarray) -> float | None:
    """Share of positive rows flagged for any label (None when the slice has no positives)."""
    positive = y_true.any(1)
    return float(flagged[positive].mean()) if positive.any() else None


def evaluate_rows(classifier, rows: list[dict], batch_size: int = 32) -> dict:
    probs = classifier.predict_proba([row["text"] for row in rows], batch_size=batch_size)
    y_true = labels_matrix([row["labels"] for row in rows], classifier.labels)
    return {
        "model": {"name": classifier.name, "version": classifier.version, "digest": classifier.digest, "precision": classifier.precision},
        "rows": len(rows),
        "metrics": metrics_at_thresholds(y_true, probs, classifier),
        "slices": slice_summary(rows, y_true, probs, classifier),
    }


EVALUATION_ATTACK_SEED = 20261128  # training augmentation uses its own, different seed


def attack_results(classifier, rows: list[dict], seed: int = EVALUATION_ATTACK_SEED, batch_size: int = 32) -> dict:
    """Per attack kind: per-label F1 at review on (attacked positives + unchanged negatives),
    next to the clean F1 on the same positives' originals (``"clean"``)."""
    from qingfin.data.attack import ATTACK_KINDS, attack_rows

    negatives = [row for row in rows if not row["labels"]]
    review = [classifier.thresholds[label]["review"] for label in classifier.labels]
    negative_probs = classifier.predict_proba([r["text"] for r in negatives], batch_size=batch_size)

    def score(positive_rows: list[dict]) -> dict:
        probs = np.concatenate([classifier.predict_proba([r["text"] for r in positive_rows], batch_size=batch_size), negative_probs])
        y_true = labels_matrix([r["labels"] for r in positive_rows + negatives], classifier.labels)
        per = metrics.precision_recall_f1(y_true, probs, review)
        flagged = (probs[: len(positive_rows)] >= np.asarray(review)[None, :]).any(1)
        return {"rows": len(positive_rows), "per_label_f1": dict(zip(classifier.labels, map(float, per["f1"]))),
                "macro_f1": float(per["f1"].mean()), "recall_any": float(flagged.mean()) if len(flagged) else None}

    results = {}
    for kind in ATTACK_KINDS:
        attacked = list(attack_rows(rows, [kind], seed=seed))
        if not attacked:
            continue
        originals = {row["id"]: row for row in rows}
        results[kind] = {"attacked": score(attacked), "clean": score([originals[r["attack_of"]] for r in attacked])}
    return results


def evaluate_file(model: str | Path, data: str | Path, out: str | Path | None = None, precision: str | None = None,
                  attack: bool = False) -> dict:
    """Evaluate a bundle on a labeled file; with ``out`` write ``metrics.json`` and ``report.md``.

    With ``attack``, also the attack suite's per-kind F1 next to clean F1 (seeded, reproducible).
    """
    from qingfin.serve import Classifier

    classifier = Classifier.load(model, precision=precision)
    rows = read_rows(data)
    result = evaluate_rows(classifier, rows)
    result["data"] = str(data)
    if attack:
        result["attacks"] = attack_results(classifier, rows)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        (out / "report.md").write_text(markdown_report(result), encoding="utf-8")
    return result


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown_report(result: dict) -> str:
    """A readable Markdown rendering of :func:`evaluate_rows`' result."""
    model = result["model"]
    lines = [f"# Evaluation of {model['name']} {model['version']} ({model['precision']})", "",
             f"Data: `{result.get('data', '?')}`, {result['rows']} rows. Model digest `{model['digest'][:16]}`.", ""]
    for level, report in result["metrics"].items():
        lines += [f"## At the {level} thresholds", "", "| label | threshold | precision | recall | F1 | PR-AUC | ECE | support |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, m in report["per_label"].items():
            lines.append(f"| {label} | {m['threshold']:.3f} | {_pct(m['precision'])} | {_pct(m['recall'])} | {_pct(m['f1'])} | "
                         f"{_pct(m['pr_auc'])} | {m['ece']:.3f} | {m['support']} |")
        macro, micro = report["macro"], report["micro"]
        lines += [f"| **macro** | | {_pct(macro['precision'])} | {_pct(macro['recall'])} | {_pct(macro['f1'])} | {_pct(macro['pr_auc'])} | {macro['ece']:.3f} | |",
                  f"| **micro** | | {_pct(micro['precision'])} | {_pct(micro['recall'])} | {_pct(micro['f1'])} | | | |", ""]
    if result.get("attacks"):
        lines += ["## Obfuscation attacks (review thresholds; attacked positives + unchanged negatives)", "",
                  "| attack | rows | macro-F1 attacked | macro-F1 clean | recall (any) attacked | recall (any) clean |", "|---|---|---|---|---|---|"]
        for kind, r in result["attacks"].items():
            lines.append(f"| {kind} | {r['attacked']['rows']} | {_pct(r['attacked']['macro_f1'])} | {_pct(r['clean']['macro_f1'])} | "
                         f"{_pct(r['attacked']['recall_any'])} | {_pct(r['clean']['recall_any'])} |")
        lines.append("")
    for field_name, groups in result["slices"].items():
        lines += [f"## Slices by `{field_name}` (review thresholds)", "", "| value | rows | positive rows | macro-F1 | recall (any label) | flag rate |",
                  "|---|---|---|---|---|---|"]
        for value, s in groups.items():
            lines.append(f"| {value} | {s['rows']} | {s['positive_rows']} | {_pct(s['macro_f1'])} | {_pct(s['recall_any'])} | {_pct(s['flag_rate'])} |")
        lines.append("")
    return "\n".join(lines)
