"""``qingfin batch``: moderate archives — streaming, resumable, and no row lost.

Layout of the output directory::

    job.json                 what the job is (inputs, fields, model digest): a resume must match it
    results/part-FFFFF-CCCCCC.parquet   one shard per (input file, chunk); also .jsonl on request
    errors/part-FFFFF-CCCCCC.jsonl      rows that could not be scored, with file, row and reason
    progress/FFFFF.json      per input file: rows consumed and chunks committed
    summary.json             rows read = results + errors, per file and per decision
    accounts.parquet, contacts.parquet  with --account-field

A chunk is committed in this order: result shard, error shard (each written then renamed), then
the progress file. Killed at any moment, a re-run skips committed chunks and rewrites the one in
flight under the same shard name, so there are neither gaps nor duplicates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

from qingfin.serve.batch_io import (
    RowError,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_jsonl,
    discover_inputs,
    read_records,
)

logger = logging.getLogger(__name__)


@dataclass
class BatchJob:
    """Everything that defines a batch job; a resumed run must have the same definition."""

    model: str
    inputs: list[str]
    output: str
    text_field: str = "text"
    id_field: str = "id"
    account_field: str | None = None
    batch_size: int = 32
    chunk_rows: int = 2048
    max_chars: int = 20_000
    write_jsonl: bool = False
    policy: str | None = None
    threads: int | None = None

    def identity(self, files: list[Path], model_digest: str) -> dict:
        """The parts that must not change between a run and its resume."""
        return {"files": [str(f) for f in files], "model_digest": model_digest, "text_field": self.text_field,
                "id_field": self.id_field, "account_field": self.account_field, "chunk_rows": self.chunk_rows,
                "max_chars": self.max_chars}


class JobMismatchError(RuntimeError):
    """The output directory holds a different job; refuse rather than mix results."""


@dataclass
class FileProgress:
    file: str
    rows_read: int = 0
    chunks: int = 0
    results: int = 0
    errors: int = 0
    done: bool = False
    decisions: dict[str, int] = field(default_factory=dict)


def _progress_path(output: Path, index: int) -> Path:
    return output / "progress" / f"{index:05d}.json"


def load_progress(output: Path, index: int, file: Path) -> FileProgress:
    path = _progress_path(output, index)
    if path.is_file():
        return FileProgress(**json.loads(path.read_text(encoding="utf-8")))
    return FileProgress(file=str(file))


def _extract(record: dict | RowError, job: BatchJob, file: Path, row: int) -> dict | RowError:
    """The id, text and account of one input record, or the reason it cannot be scored."""
    if isinstance(record, RowError):
        return record
    if job.text_field not in record or record[job.text_field] is None:
        return RowError(str(file), row, f"missing field {job.text_field!r}")
    text = record[job.text_field]
    if not isinstance(text, str):
        return RowError(str(file), row, f"field {job.text_field!r} is {type(text).__name__}, expected a string")
    if not text.strip():
        return RowError(str(file), row, f"empty text in field {job.text_field!r}")
    if len(text) > job.max_chars:
        return RowError(str(file), row, f"oversized text: {len(text)} characters > {job.max_chars}")
    raw_id = record.get(job.id_field)
    item_id = str(raw_id) if raw_id not in (None, "") else "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
    account = record.get(job.account_field) if job.account_field else None
    return {"id": item_id, "text": text, "row": row, "account": None if account in (None, "") else str(account)}


def _result_rows(classifier, items: list[dict], file: Path, batch_size: int) -> list[dict]:
    predictions = classifier.predict([item["text"] for item in items], batch_size=batch_size)
    rows = []
    for item, prediction in zip(items, predictions):
        row = {"id": item["id"], "file": str(file), "row": item["row"], "account": item["account"],
               "labels": prediction.labels, "decision": prediction.decision,
               "evidence": json.dumps(prediction.evidence, ensure_ascii=False),
               "model_version": classifier.version, "model_digest": classifier.digest, "normalizer": classifier.normalizer.name}
        for label in classifier.labels:
            row[f"score_{label}"] = prediction.scores[label]
            row[f"decision_{label}"] = prediction.decisions[label]
        rows.append(row)
    return rows


def _write_results(output: Path, name: str, rows: list[dict], write_jsonl: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    atomic_write_bytes(output / "results" / f"{name}.parquet", sink.getvalue().to_pybytes())
    if write_jsonl:
        atomic_write_jsonl(output / "results" / f"{name}.jsonl", rows)


def _chunks(records: Iterator, size: int) -> Iterator[list]:
    while chunk := list(islice(records, size)):
        yield chunk


def process_file(classifier, job: BatchJob, index: int, file: Path, on_rows=None) -> FileProgress:
    """Score one input file chunk by chunk, committing each chunk atomically; resumable."""
    output = Path(job.output)
    progress = load_progress(output, index, file)
    if progress.done:
        return progress
    records = islice(read_records(file), progress.rows_read, None)  # skip committed rows
    for chunk in _chunks(records, job.chunk_rows):
        first_row = progress.rows_read + 1
        extracted = [_extract(record, job, file, first_row + offset) for offset, record in enumerate(chunk)]
        items = [e for e in extracted if not isinstance(e, RowError)]
        errors = [e.to_dict() for e in extracted if isinstance(e, RowError)]
        name = f"part-{index:05d}-{progress.chunks:06d}"
        if items:
            rows = _result_rows(classifier, items, file, job.batch_size)
            _write_results(output, name, rows, job.write_jsonl)
            progress.decisions = dict(Counter(progress.decisions) + Counter(r["decision"] for r in rows))
        if errors:
            atomic_write_jsonl(output / "errors" / f"{name}.jsonl", errors)
        progress.rows_read += len(chunk)
        progress.chunks += 1
        progress.results += len(items)
        progress.errors += len(errors)
        atomic_write_json(_progress_path(output, index), asdict(progress))
        if on_rows:
            on_rows(len(chunk))
    progress.done = True
    atomic_write_json(_progress_path(output, index), asdict(progress))
    return progress


def _check_job(output: Path, identity: dict) -> None:
    path = output / "job.json"
    if path.is_file():
        existing = json.loads(path.read_text(encoding="utf-8"))
        if existing != identity:
            changed = sorted(k for k in identity if existing.get(k) != identity[k])
            raise JobMismatchError(f"{output} holds a different job (differs in {', '.join(changed)}); use a new --output directory")
    else:
        atomic_write_json(path, identity)


def _progress_bar(total_hint: int | None):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total_hint, unit="rows", desc="qingfin batch", smoothing=0.05)


def run_batch(job: BatchJob, engine: str = "local", workers: int = 1) -> dict:
    """Run (or resume) a batch job; returns the summary that is also written to ``summary.json``."""
    from qingfin.serve import Classifier

    files = discover_inputs(job.inputs)
    output = Path(job.output)
    output.mkdir(parents=True, exist_ok=True)
    classifier = Classifier.load(job.model, threads=job.threads)
    _check_job(output, job.identity(files, classifier.digest))
    for stale in output.rglob(".*.tmp-*"):  # half-written files of a killed run; never shards
        stale.unlink()
    if engine == "ray":
        from qingfin.serve.batch_ray import run_files_on_ray

        progresses = run_files_on_ray(job, files, workers)
    elif engine == "local":
        bar = _progress_bar(None)
        progresses = [process_file(classifier, job, i, f, bar.update if bar else None) for i, f in enumerate(files)]
        if bar:
            bar.close()
    else:
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    rollup = write_rollups(output, classifier.labels, job.policy) if job.account_field else None
    summary = summarize(output, files, progresses, classifier)
    if rollup is not None:
        summary["accounts"] = rollup
    atomic_write_json(output / "summary.json", summary)
    return summary


def iter_result_rows(output: Path, columns: list[str] | None = None) -> Iterator[dict]:
    """Stream committed result rows in (file, chunk) order, one shard at a time."""
    import pyarrow.parquet as pq

    for shard in sorted((output / "results").glob("part-*.parquet")):
        yield from pq.read_table(shard, columns=columns).to_pylist()


def write_rollups(output: Path, labels, policy: str | None) -> dict:
    """Write ``accounts.parquet`` and ``contacts.parquet``; return a short summary of both."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from qingfin.serve.accounts import RollUp, load_policy

    rollup = RollUp(labels)
    columns = ["file", "row", "id", "account", "evidence"] + [f"score_{l}" for l in labels] + [f"decision_{l}" for l in labels]
    for row in iter_result_rows(output, columns):
        rollup.add(row["account"], f"{row['file']}:{row['row']}", {l: row[f"decision_{l}"] for l in labels},
                   {l: row[f"score_{l}"] for l in labels}, json.loads(row["evidence"]))
    rules = load_policy(policy)
    accounts, contacts = rollup.account_rows(rules), rollup.contact_rows()
    for name, rows in (("accounts", accounts), ("contacts", contacts)):
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows) if rows else pa.table({}), sink)
        atomic_write_bytes(output / f"{name}.parquet", sink.getvalue().to_pybytes())
    return {"accounts": len(accounts), "recommended_actions": dict(Counter(a["recommended_action"] for a in accounts)),
            "top_shared_contacts": [{k: c[k] for k in ("type", "value", "account_count", "post_count")} for c in contacts[:5]]}


def summarize(output: Path, files: list[Path], progresses: list[FileProgress], classifier) -> dict:
    read = sum(p.rows_read for p in progresses)
    results = sum(p.results for p in progresses)
    errors = sum(p.errors for p in progresses)
    decisions = Counter()
    for p in progresses:
        decisions.update(p.decisions)
    return {
        "rows_read": read, "results": results, "errors": errors, "reconciled": read == results + errors,
        "decisions": dict(decisions), "files": [asdict(p) for p in progresses],
        "model": {"name": classifier.name, "version": classifier.version, "digest": classifier.digest},
        "output": str(output),
    }


def format_summary(summary: dict) -> str:
    lines = [f"{'file':<60} {'read':>9} {'results':>9} {'errors':>7}"]
    for item in summary["files"]:
        lines.append(f"{Path(item['file']).name[-60:]:<60} {item['rows_read']:>9} {item['results']:>9} {item['errors']:>7}")
    lines.append(f"{'TOTAL':<60} {summary['rows_read']:>9} {summary['results']:>9} {summary['errors']:>7}")
    lines.append(f"reconciled (read = results + errors): {summary['reconciled']}; decisions: {summary['decisions']}")
    if "accounts" in summary:
        accounts = summary["accounts"]
        lines.append(f"accounts: {accounts['accounts']}; recommended actions: {accounts['recommended_actions']}")
        for contact in accounts["top_shared_contacts"]:
            lines.append(f"  shared contact {contact['type']}:{contact['value']} used by {contact['account_count']} accounts in {contact['post_count']} posts")
    return "\n".join(lines)
