"""zh_fin.v1: published tables (input → expected, never changed for v1) and properties.

If a table row here has to change, the normalizer's behaviour changed: publish zh_fin.v2
instead (a bundle trained with v1 must keep seeing exactly what it was trained on).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qingfin.data.normalize import get_normalizer, known_normalizers
from qingfin.data.zh_fin import (
    VARIANTS_FILE,
    VARIANTS_SHA256,
    VARIANTS_VERSION,
    ZhFinV1,
    _fold_string,
    _tables,
    bench_normalizer,
    load_variants,
)

NORMALIZER = ZhFinV1()


def check_table(rows: list[tuple[str, str]]) -> None:
    failures = [(text, NORMALIZER(text), expected) for text, expected in rows
                if NORMALIZER(text) != expected]
    assert not failures, "\n".join(f"{t!r}: got {g!r}, expected {e!r}" for t, g, e in failures)


# --------------------------------------------------------------------------------------------
# Tables, one per category.

BRIEF_EXAMPLES = [
    ("加 V❤ x1a0 wang", "加 微信 x1a0 wang"),
    ("扣扣：玖捌柒陆伍肆叁贰", "qq:98765432"),
    ("莪們這裏芣看蒸信", "我们这里不看征信"),
    ("威🌟信：k🍀z🍀8🍀8", "微信:kz88"),
]

WIDTH_CASE_WHITESPACE = [
    ("ｆｕｌｌ　ＷＩＤＴＨ　１２３", "full width 123"),
    ("ＡＢＣ＠ｑｑ．ｃｏｍ", "abc@qq.com"),
    ("VIP客户", "vip客户"),
    ("  前后空格\t\n中间  多个   空格 ", "前后空格 中间 多个 空格"),
    ("全角标点：，！？（）", "全角标点:,!?()"),
    ("℡ 400-888-8888", "tel 400-888-8888"),
    ("wēi xìn", "微信"),  # pinyin tone marks are decoration
    ("Café", "cafe"),
    ("", ""),
    ("   ", ""),
]

INVISIBLE_AND_MARKS = [
    ("加\u200b微\u200c信", "加微信"),
    ("征\u2060信\ufeff修复", "征信修复"),
    ("\u202e反向\u202c文本", "反向文本"),
    ("❤️好的", "❤好的"),  # variation selector removed, the emoji kept
    ("1️⃣2️⃣3️⃣", "123"),  # keycaps
    ("z̶h̶e̶n̶g̶x̶i̶n̶", "征信"),  # strike-through combining marks
    ("w͟x͟", "微信"),
]

SEPARATORS_INSIDE_WORDS = [
    ("k🍀z🍀8🍀8", "kz88"),
    ("a★b★c★1★2★3", "abc123"),
    ("加🌟微🌟信", "加微信"),
    ("微🌟信", "微信"),
    ("停·息·挂·账", "停息挂账"),
    ("征 信", "征信"),
    ("微.信", "微信"),
    ("a b c 1 2 3", "abc123"),
    ("1 3 8 1 2 3 4 5 6 7 8", "13812345678"),
    ("加我Q Q：1 2 3 4 5", "加我qq:12345"),
    # emoji standing alone carry meaning and stay
    ("好的👍我们走", "好的👍我们走"),
    ("赚💰很简单", "赚💰很简单"),
    ("今天🌟明天", "今天🌟明天"),
    ("🌹🌹🌹", "🌹🌹🌹"),
    # Latin text keeps its spaces and punctuation
    ("I am a good boy", "i am a good boy"),
    ("abc.com 5-10 a_b", "abc.com 5-10 a_b"),
    ("iraq qatar", "iraq qatar"),
    ("抖音代发 纯绿色素材", "抖音代发 纯绿色素材"),
]

TRADITIONAL_AND_HUOXING = [
    ("這裏們個後來", "这里们个后来"),
    ("頭髮發展", "头发发展"),
    ("徵信修復", "征信修复"),
    ("莪芣伱尐訫", "我不你小心"),
    ("電話", "电话"),
]

VARIANTS_ANYWHERE = [
    ("加薇信详聊", "加微信详聊"),
    ("vx：abc123", "微信:abc123"),
    ("VX：abc123", "微信:abc123"),
    ("加wx", "加微信"),
    ("微x➕人", "微信➕人"),
    ("v信号", "微信号"),
    ("绿泡泡联系", "微信联系"),
    ("weixin 号", "微信号"),  # the space left inside 微信号 is rejoined on the next pass
    ("wei xin", "微信"),
    ("扣扣号", "qq号"),
    ("koukou 12345", "qq 12345"),
    ("不看蒸信", "不看征信"),
    ("z信不好", "征信不好"),
    ("当天x款", "当天下款"),
    ("秒x款，x款成功", "秒下款,下款成功"),
    ("xyk套现", "信用卡套现"),
    ("t现", "套现"),
    ("dianhua", "电话"),
    ("v❤ abc", "微信 abc"),
    # Latin forms need a boundary: not inside longer Latin words
    ("vxworks", "vxworks"),
    ("wxyz", "wxyz"),
    ("youtube.com/watch?v=abcdef", "youtube.com/watch?v=abcdef"),
    # ordinary text that contains a variant's characters stays as it is
    ("您的身份证信息被泄露", "您的身份证信息被泄露"),
    ("精选x款热销车型，D款手机", "精选x款热销车型,d款手机"),
]

VARIANTS_WITH_CUE = [
    ("加薇详聊", "加微信详聊"),
    ("加薇：abc123", "加微信:abc123"),
    ("+我威yy146yy258", "+我微信yy146yy258"),
    ("加V", "加微信"),
    ("➕v：qwerzzzx7010", "➕微信:qwerzzzx7010"),
    ("滴滴➕Q/握手", "滴滴➕qq/握手"),
    ("加我q", "加我qq"),
    ("加卫星abc", "加微信abc"),
    ("加企鹅：12345", "加qq:12345"),
    ("加威信", "加微信"),
    ("拉你进裙", "拉你进群"),
    ("🐧：12345678", "qq:12345678"),
    # no cue, no handle: the ordinary word stays
    ("张薇说她很有威信", "张薇说她很有威信"),
    ("卫星发射成功", "卫星发射成功"),
    ("企鹅很可爱", "企鹅很可爱"),
    ("稍加微调", "稍加微调"),
    ("v我50", "v我50"),
    ("ctrl+v", "ctrl+v"),
    ("口口声声", "口口声声"),
    ("我爱🐧", "我爱🐧"),
    ("加裙子", "加裙子"),
    ("进口口罩", "进口口罩"),  # 进 is a cue for 裙 only
    ("才给我8K:Q:Q", "才给我8k:q:q"),  # an emoticon, not ➕Q
    ("来自@威威Wilco", "来自@威威wilco"),  # a glued handle needs a cue before it
    ("专属折扣：http://x.cn", "专属折扣:http://x.cn"),  # 扣 as the tail of a word
    ("有意向联系扣QQ12345", "有意向联系扣qq12345"),  # the canonical word follows already
]

NUMERALS = [
    ("扣扣：玖捌柒陆伍肆叁贰", "qq:98765432"),
    ("电话：幺三八一二三四五六七八", "电话:13812345678"),
    ("電話：幺三八 一二三四 五六七八", "电话:138 1234 5678"),
    ("➕❶❺❻❶❼❻❼❼❷❾❸", "➕15617677293"),
    ("①②③④⑤", "12345"),
    ("tp一〇二九七", "tp10297"),
    ("abc一二三", "abc123"),
    ("qq号：一二三", "qq号:123"),
    ("壹贰叁", "123"),
    ("５万", "5万"),
    # ordinary words and amounts keep their Chinese numerals
    ("一起吃饭三个月", "一起吃饭三个月"),
    ("一单一结", "一单一结"),
    ("三三两两", "三三两两"),
    ("七七八八", "七七八八"),
    ("一五一十", "一五一十"),
    ("二〇二四年", "二〇二四年"),
    ("五万块", "五万块"),
    ("第一二三名", "第一二三名"),
]


@pytest.mark.parametrize(
    "table",
    [BRIEF_EXAMPLES, WIDTH_CASE_WHITESPACE, INVISIBLE_AND_MARKS, SEPARATORS_INSIDE_WORDS,
     TRADITIONAL_AND_HUOXING, VARIANTS_ANYWHERE, VARIANTS_WITH_CUE, NUMERALS],
    ids=["brief", "width_case_whitespace", "invisible_and_marks", "separators", "traditional",
         "variants_anywhere", "variants_with_cue", "numerals"],
)
def test_published_table(table):
    check_table(table)


# --------------------------------------------------------------------------------------------
# Registry, settings and the published variant table.


def test_registered_under_versioned_name():
    assert "zh_fin.v1" in known_normalizers()
    normalizer = get_normalizer("zh_fin.v1")
    assert isinstance(normalizer, ZhFinV1) and normalizer.name == "zh_fin.v1"


def test_settings_record_the_variant_table():
    settings_ = NORMALIZER.settings()
    assert settings_["name"] == "zh_fin.v1"
    assert settings_["variants"]["version"] == VARIANTS_VERSION
    assert settings_["variants"]["sha256"] == VARIANTS_SHA256
    assert settings_["traditional_to_simplified"]["config"] == "t2s"


def test_published_variant_table_is_unchanged():
    """zh_fin.v1's table is frozen: editing it means publishing zh_fin.v2."""
    resource = importlib.resources.files("qingfin.data").joinpath("resources", VARIANTS_FILE)
    assert hashlib.sha256(resource.read_bytes()).hexdigest() == VARIANTS_SHA256


def test_variant_table_is_consistent():
    variants = load_variants()
    keys = [v.variant for v in variants if v.context != "char"]
    assert len(keys) == len(set(keys)), "a variant may map to one canonical form only"
    canonical = {v.canonical for v in variants}
    assert all(v.variant == v.canonical for v in variants if v.context == "vocab")
    # a canonical form must never itself be rewritten (that would make the output unstable)
    rewritten = {v.variant for v in variants if v.variant != v.canonical}
    assert not canonical & rewritten


def test_offsets_point_into_the_original():
    text = "加 V❤️ x1a0 wang"
    normalized = NORMALIZER.normalize(text)
    assert normalized.text == "加 微信 x1a0 wang"
    assert [text[i] for i in normalized.offsets[:4]] == ["加", " ", "V", "❤"]
    handle = normalized.text.index("x1a0")
    assert text[normalized.offsets[handle]:] == "x1a0 wang"


def test_offsets_of_removed_separators_and_replacements():
    text = "威🌟信：k🍀z🍀8🍀8"
    normalized = NORMALIZER.normalize(text)
    assert normalized.text == "微信:kz88"
    assert normalized.offsets == (0, 2, 3, 4, 6, 8, 10)


def test_bench_normalizer_reports_throughput():
    report = bench_normalizer(["加薇：abc123", "普通的一句话"], seconds=0.05)
    assert report["normalizer"] == "zh_fin.v1" and report["posts"] >= 2
    assert report["posts_per_s"] > 0 and report["texts"] == 2


# --------------------------------------------------------------------------------------------
# Properties.

# Characters that exercise every step: disguises, numerals, cues, separators, invisibles.
DISGUISE_ALPHABET = list(
    "加微信薇威vVxX❤qQ扣企鹅🐧：: 号一二三四五六七八九零〇壹贰玖两幺0123456789abcwz🌟🍀·.-_张私联系"
    "\u200b\u200d\ufe0f\u3000\u0336ＡＢ①❶⑩…征蒸款下群裙卫星绿泡莪們這發\n\t+➕"
)
texts = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(DISGUISE_ALPHABET), max_size=30).map("".join),
)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_idempotent(text):
    once = NORMALIZER(text)
    assert NORMALIZER(once) == once


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec=None), max_size=60))
def test_never_raises_on_any_string(text):
    normalized = NORMALIZER.normalize(text)
    assert isinstance(normalized.text, str)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_offset_map_properties(text):
    normalized = NORMALIZER.normalize(text)
    offsets = normalized.offsets
    assert len(offsets) == len(normalized.text)
    assert all(0 <= o < len(text) for o in offsets)
    assert all(a <= b for a, b in itertools.pairwise(offsets))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_fast_character_table_matches_the_reference_fold(text):
    """The cached str.translate path gives exactly the per-character reference fold."""
    tables = _tables()
    folded = text.translate(tables.fold)
    folded = "".join(tables.irregular.get(c, c) for c in folded)
    assert folded == "".join(_fold_string(c, tables.fold.char_variants) for c in text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["hello", "world", "财经", "新闻", "12", "ok!"]),
                          st.text(alphabet=" \t\n\r\u3000\xa0\u2028", min_size=1, max_size=3)),
                max_size=6))
def test_whitespace_folds_exactly_like_zh_basic(parts):
    """Step 2 is a fast re-implementation of zh_basic.v1's folding: same text, same offsets."""
    from qingfin.data.normalize import ZhBasicV1

    text = "".join(word + space for word, space in parts)
    assert NORMALIZER.normalize(text) == ZhBasicV1().normalize(text)


def test_lone_surrogates_and_controls_do_not_raise():
    for text in ("\ud800abc\udfff", "\x00\x01", "\U0010ffff", "ﷺ", "\u0345"):
        NORMALIZER.normalize(text)
