"""The finance-slang lexicon and the evidence it contributes (with contacts)."""

from __future__ import annotations

import datetime
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qingfin.data.evidence import CONTACT_LABEL_HINT, find_evidence
from qingfin.data.lexicon import (
    LEXICON_DATE,
    LEXICON_VERSION,
    Lexicon,
    find_terms,
    lexicon_info,
    load_lexicon,
)
from qingfin.data.normalize import ZhBasicV1
from qingfin.data.schema import LABELS
from qingfin.data.zh_fin import ZhFinV1


def test_lexicon_is_versioned_and_dated():
    assert LEXICON_VERSION == "lexicon_v1"
    datetime.date.fromisoformat(LEXICON_DATE)
    info = lexicon_info()
    assert info["version"] == LEXICON_VERSION and len(info["sha256"]) == 64


def test_lexicon_rows_are_valid():
    entries = load_lexicon()
    assert 140 <= len(entries) <= 220
    per_label = Counter(e.label_hint for e in entries)
    assert set(per_label) == set(LABELS)
    assert min(per_label.values()) >= 10
    for entry in entries:
        datetime.date.fromisoformat(entry.added)
        assert entry.note and entry.term == entry.term.strip()
    assert len({e.term for e in entries}) == len(entries)


def test_terms_are_stable_under_the_normalizer():
    """Each term must still be findable after normalization (its own normalized form)."""
    normalizer = ZhFinV1()
    lexicon = Lexicon(normalizer)
    missing = [e.term for e in load_lexicon() if not any(
        h.entry.term == e.term or h.matched == normalizer(e.term) for h in lexicon.find(e.term))]
    assert not missing


@pytest.mark.parametrize("text,expected", [
    ("停息挂账，反催收，代理退保", [("停息挂账", "grey_industry"), ("反催收", "grey_industry"),
                            ("代理退保", "grey_industry")]),
    ("莪們這裏芣看蒸信", [("不看征信", "illegal_lending")]),
    ("空放口子，包装流水", [("空放", "illegal_lending"), ("口子", "illegal_lending"),
                      ("包装流水", "illegal_lending")]),
    ("老师带单？持牌投顾带你赚", [("老师带单", "impersonation"), ("持牌投顾", "impersonation")]),
    ("银行内部渠道", [("银行内部渠道", "impersonation")]),
    ("存款要被冻结了", [("存款要被冻结", "economic_rumor")]),
    ("ＡＢ贷 ab贷款", [("ab贷", "illegal_lending"), ("ab贷", "illegal_lending")]),
    ("slab贷", []),  # Latin edge: not inside a longer Latin word
    ("今天天气不错", []),
])
def test_find_terms_through_disguises(text, expected):
    assert [(h.entry.term, h.entry.label_hint) for h in find_terms(text)] == expected


def test_hits_report_original_text_and_offsets():
    text = "专业停🌟息挂账，徵信修復"
    hits = find_terms(text)
    assert [(h.text, h.start, h.end) for h in hits] == [("停🌟息挂账", 2, 7), ("徵信修復", 8, 12)]
    assert all(text[h.start:h.end] == h.text for h in hits)


def test_nested_hit_with_same_label_is_dropped():
    terms = [h.entry.term for h in find_terms("反催收联盟")]
    assert terms == ["反催收联盟"]


def test_anti_fraud_warning_still_yields_evidence_not_a_verdict():
    hits = find_terms("警惕'征信修复'骗局，这些都是套路")
    assert [h.entry.term for h in hits] == ["征信修复"]


def test_lexicon_with_another_normalizer():
    hits = find_terms("停息挂账 不看蒸信", normalizer=ZhBasicV1())
    assert [h.entry.term for h in hits] == ["停息挂账"]  # zh_basic does not undo 蒸信


# --------------------------------------------------------------------------------------------
# Evidence.


def test_evidence_items_shape_and_offsets():
    text = "不看蒸信，加薇：abc 1 2 3"
    items = find_evidence(text)
    assert [(i["kind"], i["label_hint"], i["text"]) for i in items] == [
        ("lexicon", "illegal_lending", "不看蒸信"),
        ("lexicon", "traffic_diversion", "加薇"),
        ("contact", CONTACT_LABEL_HINT, "abc 1 2 3"),
    ]
    for item in items:
        assert set(item) == {"kind", "label_hint", "start", "end", "text", "detail"}
        assert text[item["start"]:item["end"]] == item["text"]
        assert item["label_hint"] in LABELS
    contact = items[-1]["detail"]
    assert contact["type"] == "wechat" and contact["value"] == "abc123" and contact["cue"] == "加"
    assert items[0]["detail"]["term"] == "不看征信" and items[0]["detail"]["lexicon"] == LEXICON_VERSION


def test_evidence_with_a_bundle_normalizer_still_finds_disguised_contacts():
    items = find_evidence("扣扣：玖捌柒陆伍肆叁贰", normalizer=ZhBasicV1())
    assert [(i["kind"], i["detail"]["value"]) for i in items] == [("contact", "98765432")]


def test_evidence_empty_for_plain_text():
    assert find_evidence("今天天气不错，我们去公园散步") == []


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=50),
    st.lists(st.sampled_from(list("停息挂账征信修复蒸不看加微信薇：abc123 🌟\u200b口子空放")), max_size=30)
    .map("".join),
))
def test_evidence_offsets_always_index_the_original(text):
    for item in find_evidence(text):
        assert 0 <= item["start"] <= item["end"] <= len(text)
        assert text[item["start"]:item["end"]] == item["text"]
