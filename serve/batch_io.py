"""Streaming readers for archive shards (JSONL, JSONL.gz, CSV, Parquet) and atomic writers.

Every physical row of an input is yielded exactly once, either as a record or as a
:class:`RowError` naming file, row number and reason, so a batch job can account for it.
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson", ".csv", ".csv.gz", ".parquet")


@dataclass(frozen=True)
class RowError:
    """A row that could not be read or used; ``row`` is 1-based within its file."""

    file: str
    row: int
    reason: str

    def to_dict(self) -> dict:
        return {"file": self.file, "row": self.row, "reason": self.reason}


def _is_input(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(SUFFIXES)


def discover_inputs(patterns: Sequence[str]) -> list[Path]:
    """Expand files, directories (recursively) and globs into a sorted, de-duplicated file list."""
    found: set[Path] = set()
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found.update(p for p in path.rglob("*") if _is_input(p))
        elif path.is_file():
            found.add(path)
        else:
            matches = [Path(p) for p in glob.glob(pattern, recursive=True)]
            if not matches:
                raise FileNotFoundError(f"no input matches {pattern!r}")
            found.update(p for p in matches if _is_input(p))
    if not found:
        raise FileNotFoundError(f"no JSONL/CSV/Parquet inputs found in {list(patterns)}")
    return sorted(p.resolve() for p in found)


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _read_jsonl(path: Path) -> Iterator[dict | RowError]:
    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield RowError(str(path), number, f"invalid UTF-8 at byte {error.start}")
                continue
            if not line.strip():
                yield RowError(str(path), number, "blank line")
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield RowError(str(path), number, f"bad JSON: {error.msg} at column {error.colno}")
                continue
            yield record if isinstance(record, dict) else RowError(str(path), number, "not a JSON object")


def _read_csv(path: Path) -> Iterator[dict | RowError]:
    # surrogateescape keeps undecodable bytes visible so that the row, not the file, is refused.
    with _open_binary(path) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.DictReader(text)
        for number, record in enumerate(reader, start=1):
            if None in record:
                yield RowError(str(path), number, "more fields than the header")
            elif any(isinstance(v, str) and _has_surrogates(v) for v in record.values()):
                yield RowError(str(path), number, "invalid UTF-8")
            else:
                yield record


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


def _read_parquet(path: Path, batch_rows: int = 8192) -> Iterator[dict | RowError]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
        yield from batch.to_pylist()


def read_records(path: str | Path) -> Iterator[dict | RowError]:
    """Stream one input file as dict records or :class:`RowError`; order is file order."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".parquet"):
        return _read_parquet(path)
    if name.endswith((".csv", ".csv.gz")):
        return _read_csv(path)
    return _read_jsonl(path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write then rename: a reader (or a resumed job) never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def atomic_write_json(path: Path, document: object) -> None:
    atomic_write_bytes(path, (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))


def atomic_write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
