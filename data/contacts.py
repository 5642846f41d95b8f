"""Typed contact extraction that sees through disguises (``zh_fin.v1`` runs first).

``extract_contacts("加 V❤ x1a0 wang")`` finds a WeChat handle ``x1a0wang`` introduced by
``加``. Each :class:`Contact` has a ``type`` (wechat, qq, phone, telegram, url, group), a
canonical ``value`` (what a moderator would search for), a ``span`` in the ORIGINAL text and
the ``cue`` word that introduced it (``加``, ``私``, ``➕`` ... or ``None``).

Extraction is not a verdict: a bakery's phone number is a phone. What is *not* a contact:
prices, dates, amounts such as ``5万``, order and tracking numbers, a bare ``@mention``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from qingfin.data.normalize import Normalized, original_span

__all__ = ["CONTACT_TYPES", "Contact", "contacts_in", "extract_contacts"]

CONTACT_TYPES: tuple[str, ...] = ("wechat", "qq", "phone", "telegram", "url", "group")


@dataclass(frozen=True)
class Contact:
    """One contact found in a text.

    ``span`` is ``(start, end)`` in the original text and covers the handle itself;
    ``via`` is the (normalized) platform word that named it, e.g. ``"qq群"``, if any.
    """

    type: str
    value: str
    span: tuple[int, int]
    cue: str | None = None
    via: str | None = None


# --------------------------------------------------------------------------------------------
# Patterns, on zh_fin.v1-normalized text (lower case, simplified, ASCII digits, 微信/qq words).

_CUE_WORDS = (
    r"添加|加|➕|(?<![a-z0-9])\+|私信|私聊|私|联系|滴滴|dd|扫码|扫一扫|扫|搜索|搜|戳|咨询|"
    r"拨打|致电|call|找|拉你进|进"
)
_PHONE_WORDS = r"电话|手机号码|手机号|手机|座机|热线|tel|号码"
_PLATFORM_WORDS = (
    r"qq群号|qq群|群号码|群聊号码|群号|邀请码|推荐码|注册码|邀请代码|微信号|微信|"
    r"(?<![a-z0-9])(?:qq号码|qq号|qq|wechat|telegram|tg号|tg)(?![a-z])|"
    r"电报|纸飞机|小飞机|飞机号|飞机|群"
)
# The cue just before a platform word, phone word or handle: 加我微信号：/ 联系电话 / ➕.
_CUE_BEFORE = re.compile(
    rf"(?P<cue>{_CUE_WORDS})(?:我|个|一下|下|我的|的|方式)?[ :]*"
    rf"(?:(?:{_PLATFORM_WORDS}|{_PHONE_WORDS})(?:号码|号|id)?[ :]*)?$"
)
_HANDLE_CHUNK = r"[a-z0-9_\-]+"
_PLATFORM_HANDLE = re.compile(
    rf"(?P<word>{_PLATFORM_WORDS})(?:号码|号|id|账号|同号)?[ ]?(?:[:=,]|是|为|搜索|搜)?[ ]?"
    rf"(?P<handle>@?[a-z0-9][a-z0-9_\-]*(?: {_HANDLE_CHUNK}){{0,3}})"
)
# 加 / ➕ / + directly followed by a WeChat-shaped handle, no platform word: 做的➕daczzzw.
_CUE_HANDLE = re.compile(
    r"(?:添加|加|➕|(?<![a-z0-9])\+)(?:我|个)?[ :]*(?P<handle>[a-z][a-z0-9_\-]{5,19})(?![a-z0-9_\-])"
)
_QQ_MAIL = re.compile(r"(?<![0-9a-z._\-])(?P<handle>[1-9][0-9]{4,10})@qq\.com")
_TELEGRAM_LINK = re.compile(
    r"(?:https?://)?(?<![a-z0-9.])(?:t|telegram)\.me/"
    r"(?P<join>joinchat/|\+)?(?P<handle>[a-z0-9_\-]{4,64})"
)
_URL_CHARS = r"[a-z0-9\-._~:/?#@$&*+;=%]"
_TLDS = (
    "com|cn|net|org|top|xyz|cc|vip|io|me|app|info|club|site|shop|link|ly|co|tv|wang|ink|fun|"
    "icu|live|pro|work|asia|biz|online|store|tech|life|ltd|group|hk|tw|us|uk|jp|ru|gg|so|to|la|"
    "ws|in|cloud|today|xin|ren|red|kim|mobi|win|bid|loan|money|finance|fund|gold|bank"
)
_URL = re.compile(
    rf"(?:https?://|www\.){_URL_CHARS}+"
    rf"|(?<![a-z0-9@._\-/])(?:[a-z0-9](?:[a-z0-9\-]{{0,61}}[a-z0-9])?(?:\.|。|点))+(?:{_TLDS})"
    rf"(?![a-z0-9\-])(?:[/?#]{_URL_CHARS}*)?"
)
_URL_TRAILING = ".,:;?#&=-_~"
_MOBILE = re.compile(r"(?<![0-9])(?:\+?86[ \-]?)?1[3-9][0-9](?:[ \-]?[0-9]){8}(?![0-9])")
_SERVICE = re.compile(r"(?<![0-9])[48]00(?:[ \-]?[0-9]){7}(?![0-9])")
_LANDLINE = re.compile(
    r"(?<![0-9])(?P<area>\(?0(?:10|2[0-9]|[3-9][0-9]{2})\)?)(?P<sep>[ \-]?)"
    r"[2-9][0-9]{2,3}[ \-]?[0-9]{4}(?![0-9])"
)
_PHONE_CUE = re.compile(rf"(?:{_PHONE_WORDS}|联系|致电|拨打|call)[^0-9]{{0,4}}$")
# Numbers that are not phones: order, tracking, card and ID numbers, amounts, dates.
_NOT_PHONE_BEFORE = re.compile(
    r"(?:订单|单号|编号|流水|快递|运单|物流|卡号|账号|尾号|身份证|工号|学号|验证码|密码|金额|价格|"
    r"售价|单价|合计|¥|\$|rmb)[^0-9]{0,4}$"
)
_NOT_PHONE_AFTER = re.compile(r"[ ]?(?:元|块|万|亿|w(?![a-z])|k(?![a-z])|米|%|年|月|日|号|个|次|人|位|笔)")
_STOP_CHUNKS = frozenset(
    {"qq", "tg", "vx", "wx", "tel", "id", "v", "q", "or", "and", "ok", "http", "https"}
)

_TYPE_OF_WORD = {
    **dict.fromkeys(("微信", "微信号", "wechat"), "wechat"),
    **dict.fromkeys(("qq", "qq号", "qq号码"), "qq"),
    **dict.fromkeys(("telegram", "tg", "tg号", "电报", "纸飞机", "小飞机", "飞机", "飞机号"), "telegram"),
}
_CODE_WORDS = frozenset({"邀请码", "推荐码", "注册码", "邀请代码"})
# Ordinary words too (人群, 坐飞机): they name a contact only with ：/=, an @handle or a cue.
_AMBIGUOUS_WORDS = frozenset({"群", "飞机", "小飞机", "纸飞机", "电报"})


@dataclass(frozen=True)
class _Found:
    """A contact on normalized text, before mapping back."""

    type: str
    value: str
    start: int  # normalized offsets of the handle
    end: int
    cue_at: int  # where to look back for a cue
    via: str | None = None
    link: bool = False  # a URL-shaped match: digits inside it are not contacts of their own
    case_from: tuple[int, int] | None = None  # take the value from here with case restored
    prefix: str = ""


# --------------------------------------------------------------------------------------------
# Handle validation.


def _join_chunks(handle: str, limit: int = 20) -> tuple[str, int]:
    """Join space-split chunks of a handle (``x1a0 wang``) while they plausibly belong to it.

    Returns the joined handle and how many characters of ``handle`` it used.
    """
    chunks = handle.split(" ")
    joined, used = chunks[0], len(chunks[0])
    for chunk in chunks[1:]:
        if chunk in _STOP_CHUNKS or len(joined) + len(chunk) > limit:
            break
        joined, used = joined + chunk, used + 1 + len(chunk)
    return joined, used


def _valid(kind: str, handle: str) -> str | None:
    """The canonical value of ``handle`` for a contact of ``kind``, or ``None``.

    ``kind`` is a contact type, or ``code`` for an invite code (after 邀请码).
    """
    if kind == "group":
        return handle if re.fullmatch(r"[1-9][0-9]{4,11}", handle) else None
    if kind == "code":
        return handle if re.fullmatch(r"[a-z0-9]{4,16}", handle) else None
    if kind == "qq":
        return handle if re.fullmatch(r"[1-9][0-9]{4,10}", handle) else None
    if kind == "telegram":
        name = handle.lstrip("@")
        return "@" + name if re.fullmatch(r"[a-z][a-z0-9_]{4,31}", name) else None
    if kind == "wechat":
        handle = handle.lstrip("@")
        if handle.isdigit():
            return handle if 5 <= len(handle) <= 12 else None
        ok = re.fullmatch(r"[a-z0-9][a-z0-9_\-]{3,19}", handle) and handle not in _STOP_CHUNKS
        return handle if ok else None
    return None


# --------------------------------------------------------------------------------------------
# Finders: each yields _Found on normalized text.


def _best_handle(kind: str, handle: str) -> tuple[str | None, int]:
    """The longest valid join of ``handle``'s leading chunks: (value, characters used)."""
    joined, used = _join_chunks(handle)
    while True:
        value = _valid(kind, joined)
        if value is not None or " " not in handle[:used]:
            return value, used
        used = handle.rindex(" ", 0, used)
        joined = handle[:used].replace(" ", "")


def _names_a_contact(text: str, match: re.Match) -> bool:
    """An ambiguous platform word counts only when the text marks it as a contact."""
    if match.group("word") not in _AMBIGUOUS_WORDS:
        return True
    between = text[match.end("word"):match.start("handle")]
    marked = any(c in between for c in ":=号") or match.group("handle").startswith("@")
    return marked or _cue(text, match.start()) is not None


def _platform_handles(text: str) -> Iterator[_Found]:
    for match in _PLATFORM_HANDLE.finditer(text):
        if not _names_a_contact(text, match):
            continue
        word, start = match.group("word"), match.start("handle")
        kind = _TYPE_OF_WORD.get(word, "code" if word in _CODE_WORDS else "group")
        value, used = _best_handle(kind, match.group("handle"))
        if value is None:
            continue
        found_kind = "group" if kind == "code" else kind
        case_from = (start, start + used) if kind == "code" else None
        yield _Found(found_kind, value, start, start + used, match.start(), word,
                     case_from=case_from)


def _cue_handles(text: str) -> Iterator[_Found]:
    for match in _CUE_HANDLE.finditer(text):
        handle = match.group("handle")
        if handle in _STOP_CHUNKS or handle.startswith(("http", "www")):
            continue
        yield _Found("wechat", handle, *match.span("handle"), match.start("handle"))


def _qq_mails(text: str) -> Iterator[_Found]:
    for match in _QQ_MAIL.finditer(text):
        yield _Found("qq", match.group("handle"), *match.span("handle"), match.start(), "qq.com")


_GLUED_BEFORE = re.compile(r"[a-z_\-]")
_LATIN_PHONE_CUE = re.compile(r"(?:tel|call|phone|mobile|qq|wx|vx)[:=]?$")


def _phone_edges_ok(text: str, start: int, end: int) -> bool:
    """A phone glued into a Latin handle (``tp13812345678x``) is part of that handle."""
    if end < len(text) and _GLUED_BEFORE.match(text, end):
        return False
    if start > 0 and _GLUED_BEFORE.match(text, start - 1):
        return _LATIN_PHONE_CUE.search(text, max(0, start - 7), start) is not None
    return True


def _phones(text: str) -> Iterator[_Found]:
    for pattern in (_MOBILE, _SERVICE, _LANDLINE):
        for match in pattern.finditer(text):
            start, end = match.span()
            if _NOT_PHONE_BEFORE.search(text, max(0, start - 10), start):
                continue
            if _NOT_PHONE_AFTER.match(text, end) or not _phone_edges_ok(text, start, end):
                continue
            if pattern is _LANDLINE and not (
                match.group("sep") or match.group("area").startswith("(")
                or _PHONE_CUE.search(text, max(0, start - 10), start)
            ):
                continue  # a bare 0-led digit run is more often an id than a landline
            digits = re.sub(r"[^0-9]", "", match.group())
            if pattern is _MOBILE and len(digits) == 13:
                digits = digits[2:]
            yield _Found("phone", digits, start, end, start)


def _links(text: str) -> Iterator[_Found]:
    for match in _TELEGRAM_LINK.finditer(text):
        span, handle = match.span(), match.group("handle")
        if match.group("join"):
            yield _Found("group", "", *span, span[0], "t.me", True, match.span("handle"), "t.me/+")
        else:
            yield _Found("telegram", "@" + handle, *span, span[0], "t.me", True)
    for match in _URL.finditer(text):
        url = match.group()
        if re.match(r"(?:https?://)?(?:t|telegram)\.me/", url):
            continue
        end = match.start() + len(url.rstrip(_URL_TRAILING))
        if end > match.start():
            yield _Found("url", "", match.start(), end, match.start(), link=True)


# --------------------------------------------------------------------------------------------
# Mapping back to the original text.


def _restore_case(original: str, normalized: Normalized, start: int, end: int) -> str:
    """Normalized ``text[start:end]`` with the original's letter case put back (URL paths and
    invite codes are case-sensitive; zh_fin.v1 lower-cases everything)."""
    chars = []
    for index in range(start, end):
        char = normalized.text[index]
        source = unicodedata.normalize("NFKC", original[normalized.offsets[index]])
        chars.append(source if len(source) == 1 and source.lower() == char else char)
    return "".join(chars)


def _url_value(original: str, normalized: Normalized, start: int, end: int) -> str:
    """``https://B.Example.cn/AbC`` → ``b.example.cn/AbC``: no scheme, host lower case."""
    url = _restore_case(original, normalized, start, end)
    url = re.sub(r"^(?i:https?://)", "", url)
    host, slash, path = url.partition("/")
    host = re.sub(r"。|点", ".", host.lower())
    return host + slash + path


def _cue(text: str, position: int) -> str | None:
    match = _CUE_BEFORE.search(text, max(0, position - 12), position)
    return match.group("cue") if match else None


def _dedupe(found: list[_Found]) -> list[_Found]:
    """Drop repeats and numbers that are part of a URL, in text order."""
    links = [(f.start, f.end) for f in found if f.link]
    seen: set[tuple[str, int, int]] = set()
    kept: list[_Found] = []
    for item in sorted(found, key=lambda f: (f.start, CONTACT_TYPES.index(f.type), -f.end)):
        key = (item.type, item.start, item.end)
        inside_link = not item.link and any(s <= item.start and item.end <= e for s, e in links)
        if key not in seen and not inside_link:
            seen.add(key)
            kept.append(item)
    return kept


def _value(original: str, normalized: Normalized, item: _Found) -> str:
    if item.type == "url":
        return _url_value(original, normalized, item.start, item.end)
    if item.case_from is not None:
        return item.prefix + _restore_case(original, normalized, *item.case_from)
    return item.value


def contacts_in(original: str, normalized: Normalized) -> list[Contact]:
    """Contacts of ``original`` given its ``zh_fin.v1`` normalization (shared with evidence).

    >>> from qingfin.data.zh_fin import ZhFinV1
    >>> text = "扣扣：玖捌柒陆伍肆叁贰"
    >>> contacts_in(text, ZhFinV1().normalize(text))[0].value
    '98765432'
    """
    text = normalized.text
    found = [
        *_links(text), *_platform_handles(text), *_cue_handles(text), *_qq_mails(text),
        *_phones(text),
    ]
    return [
        Contact(
            item.type,
            _value(original, normalized, item),
            original_span(normalized, item.start, item.end, len(original)),
            _cue(text, item.cue_at),
            item.via,
        )
        for item in _dedupe(found)
    ]


@functools.cache
def _default_normalizer():
    from qingfin.data.zh_fin import ZhFinV1  # local: keeps importing this module cheap

    return ZhFinV1()


def extract_contacts(text: str) -> list[Contact]:
    """Contacts in ``text``, through every disguise zh_fin.v1 removes, in text order.

    >>> [(c.type, c.value, c.span, c.cue) for c in extract_contacts("加 V❤ x1a0 wang")]
    [('wechat', 'x1a0wang', (5, 14), '加')]
    """
    return contacts_in(text, _default_normalizer().normalize(text))
