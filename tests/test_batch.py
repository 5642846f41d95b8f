"""Batch moderation: every row accounted for, resumable after kill -9, engines agree."""

import gzip
import json
import random
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from qingfin.serve.batch import BatchJob, JobMismatchError, iter_result_rows, run_batch

TEXTS = ["加薇信 abc123 领内部额度", "今天天气真好", "黑户秒批当天下款", "招行要倒闭了快取钱", "警惕征信修复骗局"]


def make_archive(directory, files=3, rows=400, seed=0):
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        with open(directory / f"shard-{f}.jsonl", "w", encoding="utf-8") as handle:
            for r in range(rows):
                text = rng.choice(TEXTS) + f" #{f}-{r}"
                handle.write(json.dumps({"id": f"{f}-{r}", "text": text, "author_id": f"acct{r % 7}"}, ensure_ascii=False) + "\n")
    return directory


def read_keys(output):
    return [(row["file"], row["row"]) for row in iter_result_rows(output, ["file", "row"])]


def test_mixed_formats_and_every_bad_row_accounted(tiny_bundle, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.jsonl").write_bytes(
        "\n".join([json.dumps({"id": 1, "text": "加微信"}, ensure_ascii=False), "{bad json", json.dumps({"id": 2}),
                   json.dumps({"text": 5}), json.dumps({"text": "  "}), json.dumps({"text": "长" * 50})]).encode() + b"\n\xff\xfe\n"
    )
    with gzip.open(inputs / "b.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"text": "黑户秒批"}, ensure_ascii=False) + "\n")
    (inputs / "c.csv").write_text("id,text,author_id\n7,下款快,u1\n8,,u2\n", encoding="utf-8")
    import pyarrow as pa

    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["股票群私我", None]}), inputs / "d.parquet")

    job = BatchJob(model=str(tiny_bundle), inputs=[str(inputs)], output=str(tmp_path / "out"), max_chars=40, chunk_rows=3, write_jsonl=True)
    summary = run_batch(job)
    assert summary["rows_read"] == 7 + 1 + 2 + 2 and summary["reconciled"]
    assert summary["results"] == 4
    errors = [json.loads(line) for p in sorted((tmp_path / "out" / "errors").glob("*.jsonl")) for line in p.read_text().splitlines()]
    reasons = {(e["file"].rsplit("/", 1)[-1], e["row"]): e["reason"] for e in errors}
    assert reasons[("a.jsonl", 2)].startswith("bad JSON")
    assert reasons[("a.jsonl", 3)] == "missing field 'text'"
    assert "is int" in reasons[("a.jsonl", 4)]
    assert reasons[("a.jsonl", 5)].startswith("empty text")
    assert reasons[("a.jsonl", 6)].startswith("oversized text")
    assert reasons[("a.jsonl", 7)].startswith("invalid UTF-8")
    assert reasons[("c.csv", 2)].startswith("empty text") and reasons[("d.parquet", 2)] == "missing field 'text'"
    rows = list(iter_result_rows(tmp_path / "out"))
    by_id = {row["id"]: row for row in rows}
    assert {"1", "7", "p1"} <= set(by_id) and any(k.startswith("sha256:") for k in by_id)  # content hash for the missing id
    assert by_id["1"]["model_digest"] and "score_defamation" in by_id["1"] and by_id["1"]["normalizer"]
    assert (tmp_path / "out" / "results").glob("*.jsonl")


def test_rerun_is_idempotent_and_other_jobs_are_refused(tiny_bundle, tmp_path):
    archive = make_archive(tmp_path / "in", files=2, rows=50)
    job = BatchJob(model=str(tiny_bundle), inputs=[str(archive)], output=str(tmp_path / "out"), chunk_rows=16)
    first = run_batch(job)
    second = run_batch(job)
    assert first["results"] == second["results"] == 100
    assert sorted(read_keys(tmp_path / "out")) == sorted(set(read_keys(tmp_path / "out")))
    with pytest.raises(JobMismatchError, match="text_field"):
        run_batch(BatchJob(**{**job.__dict__, "text_field": "body"}))


def _committed_chunks(output):
    total = 0
    for path in (output / "progress").glob("*.json"):
        try:
            total += json.loads(path.read_text())["chunks"]
        except (OSError, ValueError):  # being replaced right now
            pass
    return total


def test_kill_minus_nine_and_resume(tiny_bundle, tmp_path):
    archive = make_archive(tmp_path / "in", files=3, rows=3000, seed=1)
    output = tmp_path / "out"
    command = [sys.executable, "-m", "qingfin.training.cli", "batch", "--model", str(tiny_bundle), "--input", str(archive),
               "--output", str(output), "--chunk-rows", "40", "--account-field", "author_id"]
    rng = random.Random(42)
    kills = 0
    for _ in range(4):
        # Kill at a random point: after a random number of further committed chunks, plus jitter.
        target = _committed_chunks(output) + rng.randint(1, 40)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while process.poll() is None and _committed_chunks(output) < target and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    final = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert kills >= 3
    summary = json.loads((output / "summary.json").read_text())
    assert summary["rows_read"] == 9000 and summary["results"] == 9000 and summary["errors"] == 0
    keys = read_keys(output)
    assert len(keys) == 9000 and len(set(keys)) == 9000  # no gaps, no duplicates
    accounts = pq.read_table(output / "accounts.parquet").to_pylist()
    assert sum(a["posts"] for a in accounts) == 9000 and {a["account"] for a in accounts} == {f"acct{i}" for i in range(7)}


def test_account_policy_and_contacts(tmp_path):
    from qingfin.serve.accounts import RollUp, load_policy

    labels = ("traffic_diversion", "defamation")
    rollup = RollUp(labels)
    diversion = {"traffic_diversion": "block", "defamation": "pass"}
    review_only = {"traffic_diversion": "review", "defamation": "pass"}
    scores = {"traffic_diversion": 0.9, "defamation": 0.1}
    contact = [{"kind": "contact", "detail": {"type": "wechat", "value": "abc123"}}]
    for i in range(2):
        rollup.add("spammer", f"f:{i}", diversion, scores, contact)
    rollup.add("once", "f:9", review_only, scores, [])
    rollup.add("other", "f:10", {"traffic_diversion": "pass", "defamation": "pass"}, scores, contact)
    actions = {row["account"]: row["recommended_action"] for row in rollup.account_rows(load_policy())}
    assert actions == {"spammer": "限制流量变现", "once": "none", "other": "none"}
    top = rollup.contact_rows()[0]
    assert (top["type"], top["value"], top["account_count"], top["post_count"]) == ("wechat", "abc123", 2, 3)
    bad = tmp_path / "policy.toml"
    bad.write_text('[[rule]]\naction = "ban"\nlevel = "block"\nmin_posts = 1\n')
    with pytest.raises(ValueError, match="rule 1"):
        load_policy(bad)


@pytest.mark.slow
def test_ray_engine_matches_local(tiny_bundle, tmp_path):
    pytest.importorskip("ray")
    archive = make_archive(tmp_path / "in", files=3, rows=60, seed=3)
    local = BatchJob(model=str(tiny_bundle), inputs=[str(archive)], output=str(tmp_path / "local"), chunk_rows=25)
    remote = BatchJob(**{**local.__dict__, "output": str(tmp_path / "ray")})
    run_batch(local)
    summary = run_batch(remote, engine="ray", workers=2)
    assert summary["results"] == 180 and summary["reconciled"]
    strip = lambda rows: sorted(((r["file"], r["row"]), {k: v for k, v in r.items()}) for r in rows)
    assert strip(iter_result_rows(tmp_path / "local")) == strip(iter_result_rows(tmp_path / "ray"))
