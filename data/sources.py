"""The public datasets we relabel: where their rows live, which field is the text, and their terms.

``qingfin data import-sources --shared ../shared/data`` copies, for every annotation in
``data/annotations/``, the original source row (all original fields, unmodified) into
``data/sources/<source>/rows.jsonl``. After that the build needs nothing outside the repo.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from qingfin.data.rows import write_rows


@dataclass(frozen=True)
class Source:
    name: str
    files: tuple[str, ...]
    text_field: str
    label_fields: tuple[str, ...]
    licence: str
    origin: str = "real"


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("chineseharm", ("bench.jsonl",), "文本", ("标签",), "CC BY-NC 4.0 (non-commercial, attribution): zjunlp/ChineseHarm-bench"),
        Source("weibo21", ("train.jsonl", "val.jsonl"), "content", ("label", "category"), "research-only (data README): kennqiang/MDFEND-Weibo21"),
        Source("ced_rumor", ("ced_original_labeled.jsonl",), "text", ("label",), "unknown licence, research use only: thunlp/Chinese_Rumor_Dataset"),
        Source("telecom_fraud5", ("label00.jsonl", "label01.jsonl", "label02.jsonl", "label03.jsonl", "label04.jsonl"), "content",
               ("label", "label_desc"), "research-only, non-commercial (README) on top of GPL-3.0: ChangMianRen/Telecom_Fraud_Texts_5"),
        Source("bank_reviews", ("train.jsonl",), "text", ("class",), "unknown licence, competition/research use only: linkfqy/Comment-View-Extraction (CCF BDCI 2021)"),
        Source("tnews", ("dev.jsonl",), "sentence", ("label_desc",), "unknown licence, research-benchmark use only: CLUE TNEWS via tigergeng/TextCNN"),
        Source("cold", ("train.jsonl", "dev.jsonl"), "TEXT", ("label", "topic"), "Apache-2.0: thu-coai/COLDataset"),
    )
}

# telecom_fraud5 label01-04 are synthetic call scripts (training only); label00 is real SMS.
SYNTHETIC_PREFIXES = ("telecom1-", "telecom2-", "telecom3-", "telecom4-")


def origin_of(source: str, source_id: str) -> str:
    return "synthetic-script" if source == "telecom_fraud5" and source_id.startswith(SYNTHETIC_PREFIXES) else "real"


def read_annotations(directory: Path) -> list[dict]:
    rows = []
    for path in sorted(directory.glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            rows.extend(json.loads(line) for line in handle if line.strip())
    return rows


def import_sources(shared_data: str | Path, repo_data: str | Path) -> dict[str, int]:
    """Copy every annotated source row from ``shared_data`` into ``repo_data/sources``."""
    shared_data, repo_data = Path(shared_data), Path(repo_data)
    wanted: dict[str, set[str]] = defaultdict(set)
    for annotation in read_annotations(repo_data / "annotations"):
        wanted[annotation["source"]].add(annotation["source_id"])
    counts = {}
    for name, ids in sorted(wanted.items()):
        source = SOURCES[name]
        found = []
        for file in source.files:
            with open(shared_data / name / file, encoding="utf-8") as handle:
                found.extend(row for row in map(json.loads, handle) if row["id"] in ids)
        missing = ids - {row["id"] for row in found}
        if missing:
            raise ValueError(f"{name}: {len(missing)} annotated ids not found in {shared_data / name}, e.g. {sorted(missing)[:3]}")
        counts[name] = write_rows(found, repo_data / "sources" / name / "rows.jsonl")
    return counts


def load_source_rows(repo_data: Path) -> dict[tuple[str, str], dict]:
    """``{(source, id): original row}`` from the in-repo copies."""
    table = {}
    for name in SOURCES:
        path = repo_data / "sources" / name / "rows.jsonl"
        if path.is_file():
            with open(path, encoding="utf-8") as handle:
                for row in map(json.loads, handle):
                    table[(name, row["id"])] = row
    return table
