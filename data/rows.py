"""The dataset row format and its validator (``qingfin data check``).

One JSON object per line, UTF-8::

    {"id": "auth-grey-0001", "text": "...", "labels": ["grey_industry"], "source": "authored",
     "platform": "douyin", "kind": "obfuscated", "origin": "authored"}

Required: ``id`` (non-empty string, unique across the files checked together), ``text``
(non-empty string), ``labels`` (list of known label ids, possibly empty = clean), ``source``
(non-empty string: a public dataset id or ``authored``). Optional string fields: ``platform``,
``kind``, ``origin``, ``format``, ``split``, ``note``, ``attack``. Other fields are allowed
(provenance such as ``source_id``) but must not shadow these with a wrong type.

Validation never drops a row silently: every bad row is reported with file, line, field and
reason, and ``iter_rows`` raises on the first one unless asked to collect them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from qingfin.data.schema import LABEL_INDEX

REQUIRED_STRING_FIELDS = ("id", "text", "source")
OPTIONAL_STRING_FIELDS = ("platform", "kind", "origin", "format", "split", "note", "attack")
KINDS = ("positive", "obfuscated", "hard_negative", "negative")


@dataclass(frozen=True)
class RowProblem:
    """One reason a row is bad; ``line`` is 1-based."""

    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.reason}"


class BadRowError(ValueError):
    def __init__(self, problem: RowProblem):
        super().__init__(str(problem))
        self.problem = problem


@dataclass
class CheckReport:
    rows: int = 0
    bad_rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.bad_rows == 0


def row_problems(row: object, file: str, line: int) -> list[RowProblem]:
    """All problems of one parsed row (an empty list means the row is valid)."""

    def problem(name: str, reason: str) -> RowProblem:
        return RowProblem(file, line, name, reason)

    if not isinstance(row, dict):
        return [problem("<row>", f"expected a JSON object, got {type(row).__name__}")]
    problems = []
    for name in REQUIRED_STRING_FIELDS:
        value = row.get(name)
        if name not in row:
            problems.append(problem(name, "missing"))
        elif not isinstance(value, str):
            problems.append(problem(name, f"expected a string, got {type(value).__name__}"))
        elif not value.strip():
            problems.append(problem(name, "empty"))
    for name in OPTIONAL_STRING_FIELDS:
        if name in row and not isinstance(row[name], str):
            problems.append(problem(name, f"expected a string, got {type(row[name]).__name__}"))
    if "kind" in row and isinstance(row["kind"], str) and row["kind"] not in KINDS:
        problems.append(problem("kind", f"unknown kind {row['kind']!r}; known: {', '.join(KINDS)}"))
    problems.extend(_label_problems(row, problem))
    return problems


def _label_problems(row: dict, problem) -> list[RowProblem]:
    if "labels" not in row:
        return [problem("labels", "missing (use [] for a clean text)")]
    labels = row["labels"]
    if not isinstance(labels, list):
        return [problem("labels", f"expected a list, got {type(labels).__name__}")]
    problems = []
    for label in labels:
        if not isinstance(label, str):
            problems.append(problem("labels", f"expected label strings, got {label!r}"))
        elif label not in LABEL_INDEX:
            problems.append(problem("labels", f"unknown label {label!r}"))
    if len(set(map(str, labels))) != len(labels):
        problems.append(problem("labels", "a label is repeated"))
    return problems


def _parse_lines(path: Path) -> Iterator[tuple[int, object | RowProblem]]:
    """Yield ``(line_number, row or problem)`` for every non-blank line of a JSONL file."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield number, RowProblem(str(path), number, "<line>", f"invalid UTF-8 ({error.reason} at byte {error.start})")
                continue
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                yield number, RowProblem(str(path), number, "<line>", f"bad JSON: {error.msg} at column {error.colno}")


def check_files(paths: Iterable[str | Path]) -> CheckReport:
    """Validate JSONL dataset files together (ids must be unique across all of them).

    >>> check_files([]).ok
    True
    """
    report = CheckReport()
    seen_ids: dict[str, str] = {}
    for path in map(Path, paths):
        for number, parsed in _parse_lines(path):
            report.rows += 1
            problems = [parsed] if isinstance(parsed, RowProblem) else row_problems(parsed, str(path), number)
            if not problems and isinstance(parsed, dict):
                first = seen_ids.setdefault(parsed["id"], f"{path}:{number}")
                if first != f"{path}:{number}":
                    problems = [RowProblem(str(path), number, "id", f"duplicate id {parsed['id']!r} (first at {first})")]
            if problems:
                report.bad_rows += 1
                report.problems.extend(problems)
    return report


def iter_rows(path: str | Path) -> Iterator[dict]:
    """Stream valid rows of one JSONL file; raise :class:`BadRowError` at the first bad row."""
    for number, parsed in _parse_lines(Path(path)):
        if isinstance(parsed, RowProblem):
            raise BadRowError(parsed)
        problems = row_problems(parsed, str(path), number)
        if problems:
            raise BadRowError(problems[0])
        yield parsed


def read_rows(path: str | Path) -> list[dict]:
    """All rows of a JSONL dataset file (validated), in file order."""
    return list(iter_rows(path))


def write_rows(rows: Iterable[dict], path: str | Path) -> int:
    """Write rows as UTF-8 JSONL (Chinese kept as-is); returns the count written."""
    count = 0
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count
