"""The obfuscation attack suite: determinism, label preservation, recoverability."""

from __future__ import annotations

import json
import random
import re

import pytest

from qingfin.data.attack import ATTACK_KINDS, attack_file, attack_rows, attack_text
from qingfin.data.contacts import extract_contacts
from qingfin.data.zh_fin import ZhFinV1

NORMALIZER = ZhFinV1()

# Positives with contact vocabulary and handles (the suite's main targets).
POSITIVES = [
    "想学稳赚方法的朋友加微信：abc123，不看征信当天下款",
    "股票交流群，加我QQ：12345678，私我拉你进群",
    "停息挂账代办，联系电话13812345678",
    "我是工行信贷经理，内部渠道低息放款，加微信详聊",
    "黑户可贷，无视征信，秒批下款，微信：loan8888",
    "全额退保，不成功不收费，QQ 87654321 咨询",
    "高价收购银行卡，当天结款，电话 13987654321",
    "征信修复，逾期记录删除，加微信 fixcredit01",
    "网贷口子大全，加QQ群：123456789",
    "老师带单每天抓涨停，加我微信：stock_king99",
    "存款贴息年化12%，保本高收益，电话13712345678",
    "代理退保找我，微信号：tuibao2024",
]
CONTACT_WORDS = ("微信", "qq", "征信", "下款", "电话")
WORD_KINDS = ("homophone", "pinyin", "emoji_split", "space_split", "traditional", "fullwidth",
              "zero_width", "combo")


def contact_words(text: str) -> list[str]:
    normalized = NORMALIZER(text)
    return [w for w in CONTACT_WORDS if w in normalized]


def test_kinds_are_named_and_complete():
    assert ATTACK_KINDS == (
        "homophone", "pinyin", "numerals", "emoji_split", "space_split", "traditional",
        "fullwidth", "zero_width", "combo",
    )


@pytest.mark.parametrize("kind", ATTACK_KINDS)
def test_deterministic_per_seed(kind):
    for text in POSITIVES:
        first = attack_text(text, kind, random.Random(7))
        assert attack_text(text, kind, random.Random(7)) == first


# these three have no random choice to vary
@pytest.mark.parametrize(
    "kind", [k for k in ATTACK_KINDS if k not in ("traditional", "fullwidth", "space_split")]
)
def test_seeds_vary_the_disguise(kind):
    outputs = {attack_text(text, kind, random.Random(seed))
               for seed in range(8) for text in POSITIVES}
    assert len(outputs) > len(POSITIVES)


@pytest.mark.parametrize("kind", ATTACK_KINDS)
def test_attacks_disguise_something(kind):
    changed = sum(attack_text(t, kind, random.Random(1)) != t for t in POSITIVES)
    assert changed >= len(POSITIVES) // 2


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown attack kind"):
        attack_text("加微信", "rot13", random.Random(0))


@pytest.mark.parametrize("kind", WORD_KINDS)
def test_normalizer_recovers_the_contact_vocabulary(kind):
    """zh_fin.v1 applied to attacked text gets back (nearly) every contact word."""
    expected = found = 0
    for seed in range(5):
        for text in POSITIVES:
            words = contact_words(text)
            attacked = attack_text(text, kind, random.Random(seed))
            expected += len(words)
            found += sum(w in NORMALIZER(attacked) for w in words)
    assert found / expected >= 0.95, f"{kind}: recovered {found}/{expected}"


@pytest.mark.parametrize("kind", ATTACK_KINDS)
def test_handle_digits_are_kept(kind):
    """Attacks disguise digits but never drop them: the normalizer gets them all back."""
    for seed in range(3):
        for text in POSITIVES:
            attacked = attack_text(text, kind, random.Random(seed))
            digits = "".join(re.findall(r"[0-9]", NORMALIZER(attacked)))
            for run in re.findall(r"[0-9]{5,}", text):
                assert run in digits, (kind, attacked)


@pytest.mark.parametrize("kind", ATTACK_KINDS)
def test_contacts_survive_attacks(kind):
    kept = total = 0
    for seed in range(3):
        for text in POSITIVES:
            values = {(c.type, c.value) for c in extract_contacts(text)}
            attacked = {(c.type, c.value)
                        for c in extract_contacts(attack_text(text, kind, random.Random(seed)))}
            total += len(values)
            kept += len(values & attacked)
    assert kept / total >= 0.8, f"{kind}: kept {kept}/{total} contacts"


def rows() -> list[dict]:
    data = [{"id": f"p{i}", "text": t, "labels": ["traffic_diversion"], "source": "authored"}
            for i, t in enumerate(POSITIVES)]
    data.append({"id": "n0", "text": "今天天气不错，加微信abc123一起去公园", "labels": [], "source": "authored"})
    return data


def test_attack_rows_keep_labels_and_suffix_ids():
    out = list(attack_rows(rows(), ["homophone", "numerals"], seed=3))
    assert out and all(r["attack"] in ("homophone", "numerals") for r in out)
    originals = {r["id"]: r for r in rows()}
    for row in out:
        source = originals[row["attack_of"]]
        assert row["id"] == f"{source['id']}:{row['attack']}"
        assert row["labels"] == source["labels"] and row["source"] == source["source"]
        assert row["text"] != source["text"]
    assert not any(r["attack_of"] == "n0" for r in out)  # positives only by default


def test_attack_rows_is_lazy_ordered_and_deterministic():
    first = list(attack_rows(rows(), None, seed=11))
    assert first == list(attack_rows(rows(), None, seed=11))
    assert first != list(attack_rows(rows(), None, seed=12))
    order = [r["attack_of"] for r in first]
    assert order == sorted(order, key=lambda i: int(i[1:]))
    iterator = attack_rows(iter(rows()), ["fullwidth"], seed=0)
    assert next(iterator)["id"] == "p0:fullwidth"


def test_attack_rows_can_include_negatives():
    out = list(attack_rows(rows(), ["fullwidth"], seed=0, positives_only=False))
    assert any(r["attack_of"] == "n0" and r["labels"] == [] for r in out)


def test_attack_rows_refuse_unknown_kinds():
    with pytest.raises(ValueError):
        list(attack_rows(rows(), ["nope"], seed=0))


def test_attack_file_writes_jsonl_and_counts(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows()), "utf-8")
    target = tmp_path / "out" / "attacked.jsonl"
    counts = attack_file(source, target, kinds=["traditional", "zero_width"], seed=5)
    written = [json.loads(line) for line in target.read_text("utf-8").splitlines()]
    assert counts["rows_in"] == len(rows()) and counts["negatives"] == 1
    assert counts["written"] == len(written) == sum(counts["by_kind"].values())
    assert set(counts["by_kind"]) == {"traditional", "zero_width"}
    assert attack_file(source, tmp_path / "again.jsonl", kinds=["traditional", "zero_width"],
                       seed=5) == counts
    assert (tmp_path / "again.jsonl").read_bytes() == target.read_bytes()
