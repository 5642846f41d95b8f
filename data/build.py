"""``qingfin data build``: the labeled dataset v1 from committed sources, annotations and authored rows.

Deterministic: the same committed inputs always give byte-identical splits. Steps:
1. real rows = annotations joined with the in-repo copies of their source rows (provenance kept:
   ``source``, ``source_id``, ``original_label``, ``origin``); authored rows as written;
2. exact duplicates (same normalized text) are dropped, keeping the first in a fixed order;
3. near-duplicates (character 5-gram Jaccard > 0.6) form groups that never straddle splits;
4. groups are split about 70/10/10/10 by a hash of the group's smallest id, so assignment is
   stable (adding rows never moves existing ones); synthetic call scripts go to train only;
5. ``data/processed/{train,dev,calib,test}.jsonl`` plus ``manifest.json`` (sha256 and counts).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

from qingfin.data.card import stats_markdown, update_card
from qingfin.data.hashing import file_sha256
from qingfin.data.near_duplicates import near_duplicate_groups
from qingfin.data.normalize import get_normalizer
from qingfin.data.rows import check_files, write_rows
from qingfin.data.schema import LABELS, SCHEMA_VERSION
from qingfin.data.sources import SOURCES, load_source_rows, origin_of, read_annotations

SPLITS = ("train", "dev", "calib", "test")
RATIOS = (0.7, 0.1, 0.1, 0.1)
DATA_DIR = Path(__file__).resolve().parent


def real_rows(data_dir: Path) -> list[dict]:
    sources = load_source_rows(data_dir)
    rows = []
    for note in read_annotations(data_dir / "annotations"):
        original = sources.get((note["source"], note["source_id"]))
        if original is None:
            raise KeyError(f"annotation {note['source']}/{note['source_id']} has no source row; run `qingfin data import-sources`")
        source = SOURCES[note["source"]]
        row = {
            "id": note["source_id"],
            "text": original[source.text_field],
            "labels": [label for label in LABELS if label in note["labels"]],
            "source": note["source"],
            "source_id": note["source_id"],
            "original_label": " / ".join(str(original.get(f)) for f in source.label_fields),
            "origin": origin_of(note["source"], note["source_id"]),
            "kind": note["kind"],
        }
        for optional in ("platform", "note"):
            if note.get(optional):
                row[optional] = note[optional]
        rows.append(row)
    return rows


def authored_rows(data_dir: Path) -> list[dict]:
    rows = []
    for path in sorted((data_dir / "authored").glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    row["labels"] = [label for label in LABELS if label in row["labels"]]
                    row.setdefault("origin", "authored")
                    rows.append(row)
    return rows


def apply_adjudications(rows: list[dict], data_dir: Path) -> int:
    """Replace labels with the adjudicated ones from ``data/qc/adjudication_*.jsonl`` (by id).

    A row whose labels become empty is a hard negative; one that gains labels is a positive.
    """
    final: dict[str, list[str]] = {}
    for path in sorted((data_dir / "qc").glob("adjudication_*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            for item in map(json.loads, filter(str.strip, handle)):
                final[item["id"]] = item["final"]
    changed = 0
    for row in rows:
        if row["id"] in final and final[row["id"]] != row["labels"]:
            row["labels"] = [label for label in LABELS if label in final[row["id"]]]
            if not row["labels"] and row.get("kind") in ("positive", "obfuscated"):
                row["kind"] = "hard_negative"
            elif row["labels"] and row.get("kind") in ("negative", "hard_negative"):
                row["kind"] = "positive"
            row["adjudicated"] = "second-pass review"
            changed += 1
    return changed


def drop_authored_near_duplicates(rows: list[dict]) -> tuple[list[dict], int]:
    """Keep one authored row per near-duplicate group (5-gram Jaccard > 0.6): authored items
    must not share a skeleton. Real rows are kept (they are grouped, not dropped, later)."""
    authored = [i for i, row in enumerate(rows) if row["origin"] == "authored"]
    groups = near_duplicate_groups([rows[i]["text"] for i in authored])
    drop = {authored[position] for position, group in enumerate(groups) if group != position}
    return [row for i, row in enumerate(rows) if i not in drop], len(drop)


def drop_exact_duplicates(rows: list[dict]) -> tuple[list[dict], int]:
    normalizer = get_normalizer("zh_basic.v1")
    seen: set[str] = set()
    kept = []
    for row in rows:
        key = "".join(normalizer(row["text"]).split()).lower()
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept, len(rows) - len(kept)


def _stable_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _position(group_key: str) -> float:
    """A group's fixed position in [0, 1): from a hash of its first id, so adding rows later
    never moves an existing group to another split."""
    return int(_stable_hash("split:" + group_key)[:12], 16) / float(16**12)


def assign_splits(rows: list[dict]) -> dict[str, list[dict]]:
    groups = near_duplicate_groups([row["text"] for row in rows])
    members: dict[int, list[dict]] = defaultdict(list)
    for row, group in zip(rows, groups):
        members[group].append(row)
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for group_rows in members.values():
        if any(row["origin"] == "synthetic-script" for row in group_rows):
            splits["train"].extend(group_rows)  # synthetic call scripts: training only
        else:
            splits[_split_at(_position(min(row["id"] for row in group_rows)))].extend(group_rows)
    for name in SPLITS:
        splits[name].sort(key=lambda r: _stable_hash(r["id"]))
    return splits


def _split_at(position: float) -> str:
    cumulative = 0.0
    for name, ratio in zip(("test", "calib", "dev", "train"), (RATIOS[3], RATIOS[2], RATIOS[1], RATIOS[0])):
        cumulative += ratio
        if position < cumulative:
            return name
    return "train"


def build(data_dir: Path = DATA_DIR, out_dir: Path | None = None) -> dict:
    """Build the splits; returns the manifest (also written to ``out_dir/manifest.json``)."""
    out_dir = out_dir or data_dir / "processed"
    rows = real_rows(data_dir) + authored_rows(data_dir)
    adjudicated = apply_adjudications(rows, data_dir)
    total_in = len(rows)
    rows, exact = drop_exact_duplicates(rows)
    rows, near = drop_authored_near_duplicates(rows)
    splits = assign_splits(rows)
    manifest = {"schema_version": SCHEMA_VERSION, "input_rows": total_in, "exact_duplicates_dropped": exact,
                "authored_near_duplicates_dropped": near,
                "adjudicated_rows_changed": adjudicated, "splits": {}}
    for name in SPLITS:
        path = out_dir / f"{name}.jsonl"
        write_rows(splits[name], path)
        manifest["splits"][name] = {"rows": len(splits[name]), "sha256": file_sha256(path), **split_counts(splits[name])}
    report = check_files([out_dir / f"{name}.jsonl" for name in SPLITS])
    if not report.ok:
        raise ValueError(f"built splits failed validation: {report.problems[:5]}")
    (out_dir / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if out_dir == data_dir / "processed":
        update_card(data_dir / "README.md", stats_markdown(splits, manifest))
    return manifest


def split_counts(rows: list[dict]) -> dict:
    return {
        "labels": {label: sum(label in r["labels"] for r in rows) for label in LABELS},
        "clean": sum(not r["labels"] for r in rows),
        "kind": dict(sorted(Counter(r.get("kind", "?") for r in rows).items())),
        "origin": dict(sorted(Counter(r["origin"] for r in rows).items())),
    }
