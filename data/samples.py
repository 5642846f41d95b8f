"""The sample archive for the README's main job: mixed test-split rows as platform posts.

``qingfin data samples`` writes ``data/samples/archive.jsonl``: a deterministic sample of the test
split (labels removed) with invented account ids — a few accounts post several violations and
share contact handles, so the account roll-up has something to find — plus two malformed rows
that a batch job must report rather than drop.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from qingfin.data.rows import read_rows


def write_sample_archive(test_path: Path, out_path: Path, rows: int = 300, seed: int = 7) -> int:
    rng = random.Random(seed)
    source = read_rows(test_path)
    positives = [r for r in source if r["labels"]]
    negatives = [r for r in source if not r["labels"]]
    picked = rng.sample(positives, min(len(positives), rows // 3)) + rng.sample(negatives, min(len(negatives), rows - rows // 3))
    rng.shuffle(picked)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as handle:
        for index, row in enumerate(picked):
            # Violating posts concentrate on a few accounts, as on real platforms.
            account = f"acct_{rng.randrange(8):03d}" if row["labels"] and rng.random() < 0.6 else f"acct_{rng.randrange(8, 120):03d}"
            record = {"id": f"post-{index + 1:04d}", "author_id": account, "platform": row.get("platform", "unknown"), "text": row["text"]}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.write(json.dumps({"id": "post-bad-1", "author_id": "acct_200", "text": ""}, ensure_ascii=False) + "\n")
        handle.write(json.dumps({"id": "post-bad-2", "author_id": "acct_201"}, ensure_ascii=False) + "\n")
    return len(picked) + 2
