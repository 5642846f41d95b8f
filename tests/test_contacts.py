"""Contact extraction: table tests through every disguise, negatives, span properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qingfin.data.contacts import CONTACT_TYPES, Contact, contacts_in, extract_contacts
from qingfin.data.zh_fin import ZhFinV1


def summary(text: str) -> list[tuple[str, str, str, str | None]]:
    """(type, value, original substring under the span, cue) per contact."""
    return [(c.type, c.value, text[c.span[0]:c.span[1]], c.cue) for c in extract_contacts(text)]


POSITIVES = [
    # the examples
    ("加 V❤ x1a0 wang", [("wechat", "x1a0wang", "x1a0 wang", "加")]),
    ("扣扣：玖捌柒陆伍肆叁贰", [("qq", "98765432", "玖捌柒陆伍肆叁贰", None)]),
    ("威🌟信：k🍀z🍀8🍀8", [("wechat", "kz88", "k🍀z🍀8🍀8", None)]),
    # wechat
    ("想学稳赚方法的朋友加薇：abc 1 2 3", [("wechat", "abc123", "abc 1 2 3", "加")]),
    ("做dy代发的➕v：qwerzzzx7010", [("wechat", "qwerzzzx7010", "qwerzzzx7010", "➕")]),
    ("人工投票，vx，tp10297", [("wechat", "tp10297", "tp10297", None)]),
    ("有意联系 vx：zsk-zzm", [("wechat", "zsk-zzm", "zsk-zzm", "联系")]),
    ("+我威yy146yy258", [("wechat", "yy146yy258", "yy146yy258", "+")]),
    ("做的➕Daczzzw", [("wechat", "daczzzw", "Daczzzw", "➕")]),
    ("私我 微信号 abc 1 2 3", [("wechat", "abc123", "abc 1 2 3", "私")]),
    ("加我ＷＸ：ＡＢＣ＿１２３", [("wechat", "abc_123", "ＡＢＣ＿１２３", "加")]),
    ("加v\u200bx：l\u200bi\u200bu\u200b888", [("wechat", "liu888", "l\u200bi\u200bu\u200b888", "加")]),
    ("绿泡泡：money2024", [("wechat", "money2024", "money2024", None)]),
    ("加wei xin：abc_666了解", [("wechat", "abc_666", "abc_666", "加")]),
    # qq
    ("加我企鹅：壹贰叁肆伍陆", [("qq", "123456", "壹贰叁肆伍陆", "加")]),
    ("滴滴➕Q：①②③④⑤⑥⑦", [("qq", "1234567", "①②③④⑤⑥⑦", "➕")]),
    ("QQ号 1 2 3 4 5 6 7 8", [("qq", "12345678", "1 2 3 4 5 6 7 8", None)]),
    ("邮箱12345678@qq.com", [("qq", "12345678", "12345678", None)]),
    # phone (a bakery's number is a phone: extraction is not a verdict)
    ("本店电话：010-62345678，欢迎订购蛋糕", [("phone", "01062345678", "010-62345678", None)]),
    ("客服热线400-820-8820", [("phone", "4008208820", "400-820-8820", None)]),
    ("联系电话13812345678", [("phone", "13812345678", "13812345678", "联系")]),
    ("手机：138 1234 5678", [("phone", "13812345678", "138 1234 5678", None)]),
    ("+86 138-1234-5678", [("phone", "13812345678", "+86 138-1234-5678", None)]),
    ("➕❶❺❻❶❼❻❼❼❷❾❸", [("phone", "15617677293", "❶❺❻❶❼❻❼❼❷❾❸", "➕")]),
    ("電話：幺三八 一二三四 五六七八", [("phone", "13812345678", "幺三八 一二三四 五六七八", None)]),
    ("微信同号13912345678", [("wechat", "13912345678", "13912345678", None),
                        ("phone", "13912345678", "13912345678", None)]),
    # telegram
    ("飞机：@abc_defg", [("telegram", "@abc_defg", "@abc_defg", None)]),
    ("tg @moneyking88", [("telegram", "@moneyking88", "@moneyking88", None)]),
    ("t.me/richclub", [("telegram", "@richclub", "t.me/richclub", None)]),
    # url
    ("免费领Q名片赞。bs.kldwz1.cn/1jCG", [("url", "bs.kldwz1.cn/1jCG", "bs.kldwz1.cn/1jCG", None)]),
    ("访问www.Example.com/Path了解", [("url", "www.example.com/Path", "www.Example.com/Path", None)]),
    ("https://share.nmsmk.com/#/reg?c=YQ2024 复制打开",
     [("url", "share.nmsmk.com/#/reg?c=YQ2024", "https://share.nmsmk.com/#/reg?c=YQ2024", None)]),
    ("官网abc点com", [("url", "abc.com", "abc点com", None)]),
    # group / invite code
    ("qq群：123456789 邀请码：AbC12x", [("group", "123456789", "123456789", None),
                                    ("group", "AbC12x", "AbC12x", None)]),
    ("加群：88888888", [("group", "88888888", "88888888", "加")]),
    ("加入我们 t.me/joinchat/AbCdEf123",
     [("group", "t.me/+AbCdEf123", "t.me/joinchat/AbCdEf123", None)]),
]

NEGATIVES = [
    "莪們這裏芣看蒸信",
    "张薇说她很有威信",
    "加微信详聊",  # a cue without a handle is not a contact (the lexicon reports the cue)
    "评论区扣1拉你进群",
    "价格138元，5万额度",
    "2024-01-15到账，一个月3万收入",
    "订单号：13812345678",
    "快递单号 75312345678901",
    "订单号20240115123456",
    "年化12%，借款50000元，分36期",
    "身份证尾号1234",
    "卡号6222021234567890123",
    "@小明 你看这个",
    "3.14 v1.0 e.g. abc.py",
    "金额13812345678元",
    "第1名，共3人",
]


@pytest.mark.parametrize("text,expected", POSITIVES, ids=[t for t, _ in POSITIVES])
def test_contacts_table(text, expected):
    assert summary(text) == expected


@pytest.mark.parametrize("text", NEGATIVES)
def test_not_contacts(text):
    assert extract_contacts(text) == []


def test_contact_shape_and_via():
    (contact,) = extract_contacts("加我企鹅：壹贰叁肆伍陆")
    assert isinstance(contact, Contact)
    assert contact.type in CONTACT_TYPES and contact.via == "qq"
    assert isinstance(contact.span, tuple) and len(contact.span) == 2


def test_contacts_in_reuses_a_normalization():
    text = "加薇：abc123"
    assert contacts_in(text, ZhFinV1().normalize(text)) == extract_contacts(text)


def test_several_contacts_in_text_order():
    text = "加微信abc12345或QQ 7654321，电话13812345678，官网www.x-loan.com"
    assert [(c.type, c.value) for c in extract_contacts(text)] == [
        ("wechat", "abc12345"), ("qq", "7654321"), ("phone", "13812345678"),
        ("url", "www.x-loan.com"),
    ]


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=50),
    st.lists(st.sampled_from(list("加微信vxqQ扣：: 号一二三四五六七八九壹0123456789abc🌟.@群tg飞机电话wwcom/")),
             max_size=40).map("".join),
))
def test_spans_are_inside_the_original(text):
    for contact in extract_contacts(text):
        start, end = contact.span
        assert 0 <= start < end <= len(text)
        assert contact.type in CONTACT_TYPES and contact.value
