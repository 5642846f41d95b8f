"""Analysis helpers behind the notebooks in ``notebooks/`` (dataset overview, errors, thresholds).

Everything here is a function over rows (``list[dict]`` in the dataset row format) or arrays:
``y_true[N, K]`` 0/1, ``probs[N, K]`` probabilities, ``thresholds[K]``, columns in label order
(see :mod:`qingfin.models.metrics`). The notebooks only glue these together and display them,
so that every figure a data scientist relies on is unit-tested (``tests/test_analysis.py``).

numpy only; matplotlib is imported inside the plotting functions so that importing this module
stays light (and works where matplotlib is not installed).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qingfin.data.schema import LABELS
from qingfin.models.calibration import ThresholdPolicy
from qingfin.models.metrics import confusion_counts, precision_recall_curve, precision_recall_f1

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Row = Mapping[str, Any]
CLEAN = "(clean)"  # pseudo-label for rows with no label, so clean rows show up in every table
PER = 10_000  # workload is reported per this many posts: the unit moderation teams plan in
SPLITS = ("train", "dev", "calib", "test")
# Licence phrases that forbid or cloud commercial use of a model trained on the rows
# ("NC" as a word catches "CC BY-NC" written without "non-commercial").
RESTRICTIVE = re.compile(r"\bnc\b|non-?commercial|research|unknown|gpl", re.IGNORECASE)


# -- notebook plumbing ------------------------------------------------------------------------


def find_repo_root(start: str | Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) holding ``pyproject.toml``
    and ``notebooks/``; ``start`` itself when there is none.

    Notebook defaults (``models/zhfin``, ``data/processed``) are relative to it, so they work
    whether Jupyter was started in the checkout or in ``notebooks/``.
    """
    start = Path(start or Path.cwd()).resolve()
    for directory in (start, *start.parents):
        if (directory / "pyproject.toml").is_file() and (directory / "notebooks").is_dir():
            return directory
    return start


def env_path(
    name: str, default: str | Path, root: str | Path, environ: Mapping[str, str] | None = None
) -> Path:
    """The path in environment variable ``name`` (else ``default``); a relative one is taken
    from ``root`` (the checkout), not from the kernel's working directory, because Jupyter
    starts kernels in the notebook's folder while the user typed the path in the checkout.

    >>> env_path("QINGFIN_X", "data/processed", "/repo", environ={}).as_posix()
    '/repo/data/processed'
    >>> env_path("QINGFIN_X", "unused", "/repo", environ={"QINGFIN_X": "/abs/dir"}).as_posix()
    '/abs/dir'
    """
    environ = os.environ if environ is None else environ
    path = Path(environ.get(name) or default).expanduser()
    return path if path.is_absolute() else Path(root) / path


def read_splits(data_dir: str | Path, splits: Sequence[str] = SPLITS) -> dict[str, list[dict]]:
    """``{split: rows}`` for every ``<split>.jsonl`` present in ``data_dir`` (validated rows)."""
    from qingfin.data.rows import read_rows

    data_dir = Path(data_dir)
    return {
        split: read_rows(data_dir / f"{split}.jsonl")
        for split in splits
        if (data_dir / f"{split}.jsonl").is_file()
    }


def markdown_table(header: Sequence[str], body: Iterable[Sequence[Any]], digits: int = 3) -> str:
    """A Markdown table; floats get ``digits`` decimals, lists are joined, ``None`` and empty lists
    show as "–", pipes and newlines are escaped.

    >>> print(markdown_table(["a", "b"], [["x|y", 0.5]]))
    | a | b |
    |---|---|
    | x\\|y | 0.500 |
    """

    def cell(value: Any) -> str:
        if value is None:
            return "–"
        if isinstance(value, (list, tuple)):
            return cell(", ".join(map(str, value))) if value else "–"
        if isinstance(value, (float, np.floating)):
            return f"{value:.{digits}f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in body]
    return "\n".join(lines)


def records_table(
    records: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 3
) -> str:
    """:func:`markdown_table` of a list of dicts (columns default to the first record's keys)."""
    if not records:
        return "_(no rows)_"
    columns = list(columns or records[0].keys())
    return markdown_table(columns, ([record.get(c) for c in columns] for record in records), digits)


def shorten(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters with "…" when it was longer.

    >>> shorten("一二三四", 2), shorten("一二", 2)
    ('一二…', '一二')
    """
    return text if len(text) <= max_chars else text[:max_chars] + "…"


def row_records(rows: Iterable[Row], columns: Sequence[str], max_chars: int = 120) -> list[dict]:
    """Rows reduced to ``columns`` for display, ``text`` shortened (missing fields are None)."""
    return [
        {c: shorten(row[c], max_chars) if c == "text" else row.get(c) for c in columns}
        for row in rows
    ]


# -- dataset overview -------------------------------------------------------------------------


def row_labels(row: Row) -> list[str]:
    """The row's labels, or ``[CLEAN]`` for a clean row (so it is counted somewhere)."""
    return list(row["labels"]) or [CLEAN]


def count_records(
    splits: Mapping[str, Sequence[Row]],
    fields: Sequence[str] = ("origin", "kind"),
    labels: Sequence[str] = LABELS,
) -> list[dict]:
    """Rows per label × split × ``fields`` values, as long-format records.

    A row with two labels counts once under each; clean rows count under ``CLEAN``. Missing
    fields read ``"?"``. Records come label-major (schema order, then ``CLEAN``), then split in
    the given order, then field values sorted, and only non-zero cells are listed.

    >>> count_records({"train": [{"labels": [], "kind": "negative", "origin": "real"}]})
    [{'label': '(clean)', 'split': 'train', 'origin': 'real', 'kind': 'negative', 'rows': 1}]
    """
    counts: Counter = Counter()
    for split, rows in splits.items():
        for row in rows:
            values = tuple(str(row.get(f, "?")) for f in fields)
            for label in row_labels(row):
                counts[(label, split, values)] += 1
    records = []
    for label in (*labels, CLEAN):
        for split in splits:
            cells = sorted(
                (values, n) for (l, s, values), n in counts.items() if l == label and s == split
            )
            records += [
                {"label": label, "split": split, **dict(zip(fields, values)), "rows": n}
                for values, n in cells
            ]
    return records


def pivot(
    records: Sequence[Mapping[str, Any]], index: Sequence[str], column: str, value: str = "rows"
) -> tuple[list[tuple], list[str], np.ndarray]:
    """Sum ``value`` into a table: row keys (tuples of ``index`` fields), column keys, ``[R, C]``.

    Rows and columns keep their order of first appearance in ``records``.

    >>> keys, columns, table = pivot([{"l": "a", "s": "x", "rows": 2}, {"l": "a", "s": "y", "rows": 1}], ["l"], "s")
    >>> keys, columns, table.tolist()
    ([('a',)], ['x', 'y'], [[2, 1]])
    """
    row_keys = list(dict.fromkeys(tuple(r[f] for f in index) for r in records))
    col_keys = list(dict.fromkeys(r[column] for r in records))
    row_at = {key: i for i, key in enumerate(row_keys)}
    col_at = {key: j for j, key in enumerate(col_keys)}
    table = np.zeros((len(row_keys), len(col_keys)), dtype=np.int64)
    for r in records:
        table[row_at[tuple(r[f] for f in index)], col_at[r[column]]] += r[value]
    return row_keys, col_keys, table


def pivot_markdown(
    records: Sequence[Mapping[str, Any]], index: Sequence[str], column: str, value: str = "rows"
) -> str:
    """:func:`pivot` rendered as Markdown with a ``total`` column and a ``total`` row.

    The total row sums the cells, so with multi-label rows it counts label assignments.
    """
    row_keys, col_keys, table = pivot(records, index, column, value)
    body = [[*key, *cells, int(cells.sum())] for key, cells in zip(row_keys, table)]
    body.append(["**total**", *[""] * (len(index) - 1), *table.sum(0).tolist(), int(table.sum())])
    return markdown_table([*index, *col_keys, "total"], body)


def text_lengths(rows: Sequence[Row], labels: Sequence[str] = LABELS) -> dict[str, np.ndarray]:
    """Text lengths in characters per label (and ``CLEAN``): ``{label: int array [n_label]}``."""
    lengths: dict[str, list[int]] = {label: [] for label in (*labels, CLEAN)}
    for row in rows:
        for label in row_labels(row):
            lengths[label].append(len(row["text"]))
    return {label: np.asarray(values, dtype=np.int64) for label, values in lengths.items()}


def length_summary(
    lengths: Mapping[str, np.ndarray], quantiles: Sequence[float] = (0.5, 0.9, 0.99)
) -> list[dict]:
    """Per label: row count, mean, the given quantiles and max of the lengths (None when empty).

    >>> length_summary({"a": np.array([1, 3])}, quantiles=(0.5,))
    [{'label': 'a', 'rows': 2, 'mean': 2.0, 'p50': 2.0, 'max': 3}]
    """
    records = []
    for label, values in lengths.items():
        values = np.asarray(values)
        record: dict[str, Any] = {"label": label, "rows": int(values.size)}
        empty = values.size == 0
        record["mean"] = None if empty else float(values.mean())
        for q in quantiles:
            record[f"p{round(100 * q):d}"] = None if empty else float(np.quantile(values, q))
        record["max"] = None if empty else int(values.max())
        records.append(record)
    return records


def cooccurrence(y_true: np.ndarray) -> np.ndarray:
    """Label co-occurrence counts ``[K, K]``: rows carrying both labels (diagonal: label support).

    >>> cooccurrence(np.array([[1, 1], [1, 0]])).tolist()
    [[2, 1], [1, 1]]
    """
    y = (np.asarray(y_true) > 0.5).astype(np.int64)
    if y.ndim != 2:
        raise ValueError(f"y_true must be [N, K], got shape {y.shape}")
    return y.T @ y


def conditional_cooccurrence(counts: np.ndarray) -> np.ndarray:
    """``P(label j | label i)`` ``[K, K]`` from :func:`cooccurrence` counts (0 where i is unseen).

    >>> conditional_cooccurrence(np.array([[2, 1], [1, 1]])).tolist()
    [[1.0, 0.5], [1.0, 1.0]]
    """
    counts = np.asarray(counts, dtype=np.float64)
    support = np.diag(counts)[:, None]
    return np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)


def examples_per_label(
    rows: Sequence[Row], labels: Sequence[str] = LABELS, per_label: int = 3, seed: int = 0
) -> dict[str, list[Row]]:
    """Up to ``per_label`` rows per label (and ``CLEAN``), a stable pseudo-random pick.

    Picks by a hash of ``seed`` and the row id rather than file order, which groups rows by
    source; the same seed always shows the same rows, so notes about them stay valid.
    """
    by_label: dict[str, list[Row]] = {label: [] for label in (*labels, CLEAN)}
    for row in rows:
        for label in row_labels(row):
            by_label[label].append(row)

    def key(row: Row) -> str:
        return hashlib.sha256(f"{seed}:{row['id']}".encode()).hexdigest()

    return {label: sorted(found, key=key)[:per_label] for label, found in by_label.items()}


def licence_summary(
    rows: Iterable[Row],
    licences: Mapping[str, str],
    default: str = "written for this project (repository licence)",
) -> list[dict]:
    """Per source: rows, origins, licence text and whether it restricts commercial use.

    ``licences`` maps a source name to its licence string (``{s.name: s.licence for s in
    SOURCES.values()}``); sources not in it (``authored``) get ``default``. ``restricted`` is a
    keyword screen of the licence text (non-commercial, research-only, unknown, GPL): it flags
    what a lawyer must look at before a model trained on these rows ships commercially.
    """
    count: Counter = Counter()
    origins: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        count[row["source"]] += 1
        origins[row["source"]].add(str(row.get("origin", "?")))
    records = []
    for source, n in count.most_common():
        licence = licences.get(source, default)
        records.append(
            {
                "source": source,
                "rows": n,
                "origin": ", ".join(sorted(origins[source])),
                "licence": licence,
                "restricted": source in licences and RESTRICTIVE.search(licence) is not None,
            }
        )
    return records


# -- error analysis ---------------------------------------------------------------------------


def confusion_records(
    y_true: np.ndarray, probs: np.ndarray, thresholds: Sequence[float], labels: Sequence[str]
) -> list[dict]:
    """Per label: threshold, tp/fp/fn/tn, precision, recall, F1 at ``thresholds[K]``."""
    counts = confusion_counts(y_true, probs, thresholds)
    scores = precision_recall_f1(y_true, probs, thresholds)
    return [
        {
            "label": label,
            "threshold": float(thresholds[k]),
            **{name: int(counts[name][k]) for name in ("tp", "fp", "fn", "tn")},
            **{name: float(scores[name][k]) for name in ("precision", "recall", "f1")},
        }
        for k, label in enumerate(labels)
    ]


def cross_label_counts(
    y_true: np.ndarray, probs: np.ndarray, thresholds: Sequence[float]
) -> np.ndarray:
    """Rows of each true label (and, last, clean rows) flagged for each label: ``[K + 1, K]``.

    The diagonal holds true positives; off-diagonal cells show which label a label is mistaken
    for, and the last row where clean rows are flagged.

    >>> cross_label_counts(np.array([[1, 0], [0, 0]]), np.array([[0.9, 0.8], [0.7, 0.1]]), [0.5, 0.5]).tolist()
    [[1, 1], [0, 0], [1, 0]]
    """
    y = np.asarray(y_true) > 0.5
    flagged = (
        np.asarray(probs, dtype=np.float64) >= np.asarray(thresholds, dtype=np.float64)[None, :]
    )
    truth = np.concatenate([y, ~y.any(1, keepdims=True)], axis=1).astype(np.int64)
    return truth.T @ flagged.astype(np.int64)


def ranked_errors(
    actual: np.ndarray, scores: np.ndarray, threshold: float, kind: str, limit: int = 10
) -> np.ndarray:
    """Indices of one label's worst errors: false positives by decreasing score (``kind="fp"``)
    or false negatives by increasing score (``kind="fn"``); ``actual[N]``, ``scores[N]``.

    The most confident mistakes come first: they are the likeliest label errors, and the cases
    that move a threshold the most.

    >>> ranked_errors(np.array([0, 0, 1, 1]), np.array([0.6, 0.9, 0.1, 0.4]), 0.5, "fp").tolist()
    [1, 0]
    """
    actual = np.asarray(actual) > 0.5
    scores = np.asarray(scores, dtype=np.float64)
    flagged = scores >= threshold
    if kind == "fp":
        mask, order = flagged & ~actual, np.argsort(-scores, kind="stable")
    elif kind == "fn":
        mask, order = ~flagged & actual, np.argsort(scores, kind="stable")
    else:
        raise ValueError(f"kind must be 'fp' or 'fn', got {kind!r}")
    return order[mask[order]][:limit]


def error_selections(
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: Sequence[float],
    labels: Sequence[str],
    limit: int = 10,
) -> dict[int, list[str]]:
    """``{row index: reasons}`` for every label's top ``limit`` false positives and negatives.

    Reasons read ``"fp:<label>"`` / ``"fn:<label>"``; a row wrong on two labels has both.
    Indices are sorted, so an export keeps file order.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    selected: dict[int, list[str]] = defaultdict(list)
    for k, label in enumerate(labels):
        for kind in ("fp", "fn"):
            for index in ranked_errors(y_true[:, k], probs[:, k], thresholds[k], kind, limit):
                selected[int(index)].append(f"{kind}:{label}")
    return dict(sorted(selected.items()))


def evidence_summary(evidence: Sequence[Mapping[str, Any]]) -> str:
    """One line for a prediction's evidence: ``kind:text→label_hint`` items, "–" when none.

    >>> evidence_summary([{"kind": "contact", "text": "abc123", "label_hint": "traffic_diversion"}])
    'contact:abc123→traffic_diversion'
    """
    return "; ".join(f"{e['kind']}:{e['text']}→{e['label_hint']}" for e in evidence) or "–"


def error_records(
    rows: Sequence[Row],
    indices: Sequence[int],
    scores: np.ndarray,
    evidence: Sequence[Sequence[Mapping[str, Any]]],
    max_chars: int = 80,
) -> list[dict]:
    """Display records for rows ``indices``: id, score (``scores[N]``, one label), true labels,
    kind, text cut to ``max_chars`` and the evidence (``evidence[i]`` belongs to ``indices[i]``)."""
    records = []
    for index, found in zip(indices, evidence, strict=True):
        row = rows[index]
        records.append(
            {
                "id": row["id"],
                "score": float(scores[index]),
                "labels": ",".join(row["labels"]) or CLEAN,
                "kind": row.get("kind", "?"),
                "text": shorten(row["text"], max_chars),
                "evidence": evidence_summary(found),
            }
        )
    return records


def slice_records(
    summary: Mapping[str, Mapping[str, Mapping[str, Any]]], fields: Sequence[str] | None = None
) -> list[dict]:
    """Flatten :func:`qingfin.models.evaluate.slice_summary` into one record per slice value,
    keeping only ``fields`` (default: all) in their order."""
    return [
        {"field": name, "value": value, **metrics}
        for name in (fields or summary.keys())
        if name in summary
        for value, metrics in summary[name].items()
    ]


def selections_by_id(
    rows: Sequence[Row], ids: Iterable[str], reason: str = "manual"
) -> dict[int, list[str]]:
    """``{row index: [reason]}`` for rows picked by id; an unknown id raises (a typo would
    otherwise silently drop a row from the relabeling batch)."""
    at = {row["id"]: index for index, row in enumerate(rows)}
    missing = [i for i in ids if i not in at]
    if missing:
        raise KeyError(f"ids not in the data: {missing[:5]}")
    return {at[i]: [reason] for i in ids}


def merge_selections(*parts: Mapping[int, Sequence[str]]) -> dict[int, list[str]]:
    """Union of selections, reasons concatenated without repeats, indices sorted.

    >>> merge_selections({2: ["fp:a"]}, {0: ["manual"], 2: ["fp:a", "manual"]})
    {0: ['manual'], 2: ['fp:a', 'manual']}
    """
    merged: dict[int, list[str]] = defaultdict(list)
    for part in parts:
        for index, reasons in part.items():
            merged[index] += [r for r in reasons if r not in merged[index]]
    return dict(sorted(merged.items()))


def relabel_rows(
    rows: Sequence[Row],
    selections: Mapping[int, Sequence[str]],
    probs: np.ndarray,
    labels: Sequence[str],
) -> list[dict]:
    """Copies of the selected rows with a ``relabel`` field: why each was picked and the model's
    scores. The rows stay valid dataset rows (extra fields are allowed), so an annotator's file
    can go back through ``qingfin data check``.

    >>> relabel_rows([{"id": "a", "labels": []}], {0: ["fp:x"]}, np.array([[0.91234]]), ["x"])[0]["relabel"]
    {'reasons': ['fp:x'], 'scores': {'x': 0.9123}}
    """
    out = []
    for index, reasons in selections.items():
        row = dict(rows[index])
        row["relabel"] = {
            "reasons": list(reasons),
            "scores": {l: round(float(p), 4) for l, p in zip(labels, probs[index])},
        }
        out.append(row)
    return out


# -- threshold trade-offs ---------------------------------------------------------------------


def batched_logits(
    logit_fn: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str], batch_size: int = 32
) -> np.ndarray:
    """``logit_fn`` (e.g. ``Classifier.logits``, one batch at a time) over all ``texts`` → ``[N, K]``.

    Batches are formed from length-sorted texts (less padding, as in ``predict_proba``) and the
    result is returned in input order.
    """
    texts = list(texts)
    if not texts:
        return np.asarray(logit_fn([]))
    order = np.argsort([len(t) for t in texts], kind="stable")
    parts = [
        np.asarray(logit_fn([texts[i] for i in order[s : s + batch_size]]))
        for s in range(0, len(texts), batch_size)
    ]
    out = np.empty((len(texts), parts[0].shape[1]), dtype=parts[0].dtype)
    out[order] = np.concatenate(parts)
    return out


def score_rows(classifier: Any, rows: Sequence[Row], batch_size: int = 32) -> dict[str, np.ndarray]:
    """Score labeled rows with a ``Classifier`` (anything with ``labels``, ``logits(texts)`` and
    ``bundle.calibration``): ``y_true``, ``logits``, ``uncalibrated`` (plain sigmoid) and
    ``calibrated`` (the bundle's calibration, as served) probabilities, each ``[N, K]``, and
    the ``temperatures`` and ``biases`` ``[K]``."""
    from qingfin.data.schema import labels_matrix
    from qingfin.serve.scoring import calibrated_probs, calibration_from_document

    labels = list(classifier.labels)
    logits = batched_logits(classifier.logits, [row["text"] for row in rows], batch_size).astype(
        np.float64
    )
    temperatures, biases = calibration_from_document(classifier.bundle.calibration, labels)
    return {
        "y_true": labels_matrix([row["labels"] for row in rows], labels),
        "logits": logits,
        "uncalibrated": calibrated_probs(logits, np.ones(len(labels))),
        "calibrated": calibrated_probs(logits, temperatures, biases),
        "temperatures": temperatures,
        "biases": biases,
    }


def threshold_curves(
    y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str]
) -> dict[str, dict[str, np.ndarray]]:
    """Per label, :func:`qingfin.models.metrics.precision_recall_curve` (thresholds, precision,
    recall, flag_rate; decreasing threshold; empty for a label without positives)."""
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    return {
        label: precision_recall_curve(y_true[:, k], probs[:, k]) for k, label in enumerate(labels)
    }


def reliability_bins(
    actual: np.ndarray, probs: np.ndarray, bins: int = 10
) -> dict[str, np.ndarray]:
    """One label's reliability diagram data: ``edges[B+1]`` and, per bin, ``mean_prob[B]``,
    ``positive_rate[B]`` (NaN for empty bins) and ``count[B]``.

    Same bins as :func:`qingfin.models.metrics.expected_calibration_error` (bin i holds
    (edges[i], edges[i+1]], 0 goes to the first), so the diagram and the ECE agree.

    >>> reliability_bins(np.array([1, 0, 1]), np.array([0.95, 0.05, 0.1]), bins=2)["positive_rate"].tolist()
    [0.5, 1.0]
    """
    actual = np.asarray(actual, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, probs, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(index, weights=probs, minlength=bins) / count
        positive_rate = np.bincount(index, weights=actual, minlength=bins) / count
    return {"edges": edges, "mean_prob": mean_prob, "positive_rate": positive_rate, "count": count}


def prevalence_weights(y_true: np.ndarray, prevalence: float | None) -> np.ndarray:
    """Row weights ``[N]`` that make violating rows (any label) a ``prevalence`` share of the total.

    Labeled sets are enriched with violations; production traffic is mostly clean, so workload
    measured on the file as it is overstates the queue. ``None`` gives equal weights. Only the
    violating/clean mix is corrected: hard negatives stay as over-represented as in the file.

    >>> prevalence_weights(np.array([[1], [0], [0], [0]]), 0.5).tolist()
    [2.0, 0.6666666666666666, 0.6666666666666666, 0.6666666666666666]
    """
    positive = (np.asarray(y_true) > 0.5).any(1)
    if prevalence is None:
        return np.ones(positive.shape[0])
    if not 0.0 <= prevalence <= 1.0:
        raise ValueError(f"prevalence must be in [0, 1], got {prevalence}")
    share = positive.mean() if positive.size else 0.0
    if (prevalence > 0 and share == 0) or (prevalence < 1 and share == 1):
        raise ValueError(
            f"cannot reach prevalence {prevalence}: the rows are {100 * share:.0f}% violating"
        )
    weights = np.zeros(positive.shape[0])
    if share > 0:
        weights[positive] = prevalence / share
    if share < 1:
        weights[~positive] = (1.0 - prevalence) / (1.0 - share)
    return weights


def post_decisions(
    probs: np.ndarray, review: Sequence[float], block: Sequence[float]
) -> np.ndarray:
    """Each post's most severe decision ``[N]``: 0 pass, 1 review, 2 block (as served:
    ``score >= block`` blocks, else ``score >= review`` reviews, on any label)."""
    probs = np.asarray(probs, dtype=np.float64)
    blocked = (probs >= np.asarray(block, dtype=np.float64)[None, :]).any(1)
    reviewed = (probs >= np.asarray(review, dtype=np.float64)[None, :]).any(1)
    return np.where(blocked, 2, np.where(reviewed, 1, 0))


def workload(
    probs: np.ndarray,
    review: Sequence[float],
    block: Sequence[float],
    weights: np.ndarray | None = None,
    per: int = PER,
) -> dict[str, Any]:
    """Moderator workload per ``per`` posts: posts sent to review (the human queue), posts
    auto-blocked, and per label ``[K]`` how many posts reach its review and block thresholds.

    A post with several labels is one item in the queue, so ``review`` + ``block`` can be less
    than the per-label sums. ``weights[N]`` (see :func:`prevalence_weights`) reweight rows.

    >>> w = workload(np.array([[0.9, 0.6], [0.2, 0.1]]), [0.5, 0.5], [0.8, 0.8], per=100)
    >>> w["review"], w["block"], w["label_review"].tolist()
    (0.0, 50.0, [50.0, 50.0])
    """
    probs = np.asarray(probs, dtype=np.float64)
    weights = np.ones(probs.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    total = weights.sum()
    if total <= 0:
        raise ValueError("workload needs at least one row with positive weight")
    decision = post_decisions(probs, review, block)

    def rate(mask: np.ndarray) -> np.ndarray:
        return per * (weights @ mask) / total

    return {
        "review": float(rate(decision == 1)),
        "block": float(rate(decision == 2)),
        "label_review": rate(probs >= np.asarray(review, dtype=np.float64)[None, :]),
        "label_block": rate(probs >= np.asarray(block, dtype=np.float64)[None, :]),
    }


def workload_sweep(
    probs: np.ndarray,
    review: Sequence[float],
    block: Sequence[float],
    label_index: int,
    grid: Sequence[float],
    level: str = "review",
    weights: np.ndarray | None = None,
    per: int = PER,
) -> dict[str, np.ndarray]:
    """Posts sent to review and auto-blocked per ``per`` posts (``[G]`` each) as one label's
    ``level`` threshold takes each value of ``grid[G]``, every other threshold held fixed.

    Holding the others fixed shows the *marginal* workload of a label: posts another label
    already flags do not add to the queue.
    """
    if level not in ("review", "block"):
        raise ValueError(f"level must be 'review' or 'block', got {level!r}")
    out = {
        "grid": np.asarray(grid, dtype=np.float64),
        "review": np.zeros(len(grid)),
        "block": np.zeros(len(grid)),
    }
    for g, value in enumerate(out["grid"]):
        moved = {
            "review": np.array(review, dtype=np.float64),
            "block": np.array(block, dtype=np.float64),
        }
        moved[level][label_index] = value
        result = workload(probs, moved["review"], moved["block"], weights, per)
        out["review"][g], out["block"][g] = result["review"], result["block"]
    return out


def workload_table(
    probs: np.ndarray,
    threshold_sets: Mapping[str, Mapping[str, Mapping[str, float]]],
    labels: Sequence[str],
    weights: np.ndarray | None = None,
    per: int = PER,
) -> list[dict]:
    """One record per named threshold set (``{name: {label: {review, block}}}``): posts sent to
    review and auto-blocked per ``per`` posts, then per label the posts reaching review."""
    records = []
    for name, thresholds in threshold_sets.items():
        review = [thresholds[label]["review"] for label in labels]
        block = [thresholds[label]["block"] for label in labels]
        result = workload(probs, review, block, weights, per)
        records.append(
            {
                "thresholds": name,
                "review queue": result["review"],
                "auto-blocked": result["block"],
                **{
                    f"{label} ≥ review": float(v)
                    for label, v in zip(labels, result["label_review"])
                },
            }
        )
    return records


def policy_from_document(
    thresholds_doc: Mapping[str, Any], override: Mapping[str, Any] | None = None
) -> ThresholdPolicy:
    """The :class:`ThresholdPolicy` recorded in a ``thresholds.json`` document, with ``override``
    fields replacing it (so a candidate is chosen the way the shipped thresholds were unless
    the analyst says otherwise).

    >>> policy_from_document({"policy": {"review_min_precision": None, "block_precision": 0.9}}, {"block_precision": 0.97})
    ThresholdPolicy(review_min_precision=None, block_precision=0.97, precision_confidence=None, bootstrap_resamples=0, bootstrap_seed=0, review_min_probability=0.0)
    """
    fields = {**(thresholds_doc.get("policy") or {}), **(override or {})}
    known = {field.name for field in dataclasses.fields(ThresholdPolicy)}
    unknown = set(fields) - known
    if unknown:
        raise ValueError(
            f"unknown threshold policy fields {sorted(unknown)}; known: {sorted(known)}"
        )
    return ThresholdPolicy(**fields)


def apply_overrides(
    chosen: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Mapping[str, float]]
) -> dict[str, dict]:
    """``chosen`` thresholds (``choose_thresholds`` output) with hand-set values applied.

    An overridden level's method becomes ``"manual"`` and a note records the change, so the
    model card says which thresholds a person set. Raises ``ValueError`` for an unknown label
    or level, a value outside [0, 1], or a block threshold below the review threshold.
    """
    out = copy.deepcopy({label: dict(values) for label, values in chosen.items()})
    for label, values in overrides.items():
        if label not in out:
            raise ValueError(f"override for unknown label {label!r}")
        for level, value in values.items():
            if level not in ("review", "block"):
                raise ValueError(f"override {label}.{level}: expected 'review' or 'block'")
            if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"override {label}.{level}={value!r} is not a number in [0, 1]")
            before = out[label][level]
            out[label][level] = float(value)
            out[label][f"{level}_method"] = "manual"
            out[label]["notes"] = [
                *out[label].get("notes", []),
                f"{level} set by hand: {before:.4f} -> {float(value):.4f}",
            ]
    check_thresholds(out, list(out))
    return out


def check_thresholds(thresholds: Mapping[str, Mapping[str, Any]], labels: Sequence[str]) -> None:
    """Raise ``ValueError`` unless every label has ``0 <= review <= block <= 1``."""
    for label in labels:
        if label not in thresholds:
            raise ValueError(f"no thresholds for label {label!r}")
        review, block = float(thresholds[label]["review"]), float(thresholds[label]["block"])
        if not 0.0 <= review <= block <= 1.0:
            raise ValueError(
                f"{label}: need 0 <= review <= block <= 1, got review={review}, block={block}"
            )


def thresholds_document(
    chosen: Mapping[str, Mapping[str, Any]],
    labels: Sequence[str],
    policy: ThresholdPolicy | None,
    calibration_data_sha256: str | None,
    derived_from: Mapping[str, Any] | None = None,
) -> dict:
    """A ``thresholds.json`` document in the bundle's format (``policy``,
    ``calibration_data_sha256``, ``labels``), labels in schema order, checked, plus an optional
    ``derived_from`` record (which bundle and data the candidate came from)."""
    check_thresholds(chosen, labels)
    document: dict[str, Any] = {
        "policy": None if policy is None else policy.document(),
        "calibration_data_sha256": calibration_data_sha256,
        "labels": {
            label: {
                "review": float(chosen[label]["review"]),
                "block": float(chosen[label]["block"]),
                "review_method": chosen[label].get("review_method", "manual"),
                "block_method": chosen[label].get("block_method", "manual"),
                "notes": list(chosen[label].get("notes", [])),
            }
            for label in labels
        },
    }
    if derived_from is not None:
        document["derived_from"] = dict(derived_from)
    return document


def threshold_changes(
    current: Mapping[str, Mapping[str, float]],
    candidate: Mapping[str, Mapping[str, float]],
    labels: Sequence[str],
) -> list[dict]:
    """Per label: current and candidate review and block thresholds side by side."""
    return [
        {
            "label": label,
            "review": float(current[label]["review"]),
            "review (candidate)": float(candidate[label]["review"]),
            "block": float(current[label]["block"]),
            "block (candidate)": float(candidate[label]["block"]),
        }
        for label in labels
    ]


# -- plots (matplotlib imported lazily) --------------------------------------------------------


def _grid(panels: int, columns: int = 3, size: tuple[float, float] = (4.0, 3.0)):
    """A figure with ``panels`` axes in rows of ``columns``; unused axes are hidden."""
    import matplotlib.pyplot as plt

    rows = max(1, -(-panels // columns))
    columns = min(columns, max(panels, 1))
    figure, axes = plt.subplots(
        rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False
    )
    axes = axes.ravel()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return figure, axes[:panels]


def plot_length_histograms(
    lengths: Mapping[str, np.ndarray], bins: int = 30, clip_quantile: float = 0.99
) -> Figure:
    """One histogram of text length per label, shared bins up to the ``clip_quantile`` of all
    lengths (longer texts pile into the last bin instead of stretching the axis)."""
    every = np.concatenate([np.asarray(v) for v in lengths.values()] or [np.zeros(0)])
    top = float(np.quantile(every, clip_quantile)) if every.size else 1.0
    edges = np.linspace(0.0, max(top, 1.0), bins + 1)
    figure, axes = _grid(len(lengths))
    for ax, (label, values) in zip(axes, lengths.items()):
        ax.hist(np.clip(values, 0, edges[-1]), bins=edges, color="tab:blue")
        ax.set_title(f"{label} (n={len(values)})")
        ax.set_xlabel("characters")
    figure.tight_layout()
    return figure


def plot_heatmap(
    matrix: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str] | None = None,
    title: str = "",
    value_format: str = "{:.0f}",
) -> Figure:
    """A ``[R, C]`` matrix as an annotated heatmap."""
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=np.float64)
    col_labels = list(col_labels if col_labels is not None else row_labels)
    figure, ax = plt.subplots(figsize=(1.1 * len(col_labels) + 2, 0.8 * len(row_labels) + 1.5))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    high = np.nanmax(matrix) if matrix.size else 0.0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            value_format.format(value),
            ha="center",
            va="center",
            color="white" if value > 0.6 * high else "black",
        )
    figure.colorbar(image, ax=ax)
    ax.set_title(title)
    figure.tight_layout()
    return figure


def plot_threshold_curves(
    curves: Mapping[str, Mapping[str, np.ndarray]], thresholds: Mapping[str, Mapping[str, float]]
) -> Figure:
    """Per label: precision, recall and flag rate against the threshold, with the review
    (dashed) and block (dotted) thresholds marked."""
    figure, axes = _grid(len(curves))
    for ax, (label, curve) in zip(axes, curves.items()):
        if curve["thresholds"].size == 0:
            ax.text(0.5, 0.5, "no positives", ha="center", va="center", transform=ax.transAxes)
        for name in ("precision", "recall", "flag_rate"):
            ax.plot(
                curve["thresholds"],
                curve[name],
                label=name.replace("_", " "),
                drawstyle="steps-post",
            )
        ax.axvline(thresholds[label]["review"], color="grey", linestyle="--", label="review")
        ax.axvline(thresholds[label]["block"], color="black", linestyle=":", label="block")
        ax.set(title=label, xlabel="threshold", xlim=(0, 1), ylim=(0, 1.02))
    axes[0].legend(loc="best", fontsize="small")
    figure.tight_layout()
    return figure


def plot_reliability(
    y_true: np.ndarray,
    probs_by_name: Mapping[str, np.ndarray],
    labels: Sequence[str],
    bins: int = 10,
) -> Figure:
    """Per label, a reliability diagram (mean predicted probability vs observed positive rate)
    for each ``[N, K]`` probability matrix in ``probs_by_name``; the legend carries each ECE."""
    from qingfin.models.metrics import expected_calibration_error

    y_true = np.asarray(y_true)
    eces = {
        name: expected_calibration_error(y_true, probs, bins)
        for name, probs in probs_by_name.items()
    }
    figure, axes = _grid(len(labels))
    for k, (ax, label) in enumerate(zip(axes, labels)):
        ax.plot([0, 1], [0, 1], color="lightgrey", linestyle="--")
        for name, probs in probs_by_name.items():
            data = reliability_bins(y_true[:, k], np.asarray(probs)[:, k], bins)
            seen = data["count"] > 0
            ax.plot(
                data["mean_prob"][seen],
                data["positive_rate"][seen],
                marker="o",
                label=f"{name} (ECE {eces[name][k]:.3f})",
            )
        ax.set(
            title=label,
            xlabel="mean predicted probability",
            ylabel="positive rate",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        ax.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return figure


def plot_workload(
    probs: np.ndarray,
    review: Sequence[float],
    block: Sequence[float],
    labels: Sequence[str],
    weights: np.ndarray | None = None,
    grid: Sequence[float] | None = None,
    per: int = PER,
) -> Figure:
    """Per label: the review queue per ``per`` posts as its review threshold moves, and posts
    auto-blocked as its block threshold moves (other thresholds fixed; current ones marked)."""
    grid = np.linspace(0.0, 1.0, 51) if grid is None else np.asarray(grid)
    figure, axes = _grid(len(labels))
    for k, (ax, label) in enumerate(zip(axes, labels)):
        by_review = workload_sweep(probs, review, block, k, grid, "review", weights, per)
        by_block = workload_sweep(probs, review, block, k, grid, "block", weights, per)
        ax.plot(grid, by_review["review"], label="review queue (moving review)")
        ax.plot(grid, by_block["block"], label="auto-blocked (moving block)")
        ax.axvline(review[k], color="grey", linestyle="--")
        ax.axvline(block[k], color="black", linestyle=":")
        ax.set(title=label, xlabel="threshold", ylabel=f"posts per {per:,}", xlim=(0, 1))
    axes[0].legend(loc="best", fontsize="small")
    figure.tight_layout()
    return figure
