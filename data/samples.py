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


# A coordinated diversion network, written for the demo: four accounts push the same (invented)
# WeChat handle in different disguises, which the shared-contact report should surface.
NETWORK_POSTS = (
    ("acct_300", "上岸了家人们😭 之前网贷逾期三个月，找了专业团队停息挂账，现在每月只还本金，需要的加V：qf_demo_886"),
    ("acct_301", "征信花了也别慌，内部渠道能协商，薇❤：qf_demo_886 私我"),
    ("acct_302", "债务优化找老师，➕威：ｑｆ＿ｄｅｍｏ＿８８６，不成功不收费"),
    ("acct_303", "兄弟们反催收群在这 加绿泡泡 qf_demo_886 备注上岸"),
    ("acct_300", "今天又帮三个粉丝谈下来分期了，想了解的老规矩主页看V"),
)


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
        for number, (account, text) in enumerate(NETWORK_POSTS, start=1):
            record = {"id": f"post-net-{number}", "author_id": account, "platform": "douyin", "text": text}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.write(json.dumps({"id": "post-bad-1", "author_id": "acct_200", "text": ""}, ensure_ascii=False) + "\n")
        handle.write(json.dumps({"id": "post-bad-2", "author_id": "acct_201"}, ensure_ascii=False) + "\n")
    return len(picked) + len(NETWORK_POSTS) + 2
