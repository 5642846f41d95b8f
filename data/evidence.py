"""Evidence for a decision: contacts and lexicon hits, in ORIGINAL-text offsets.

Evidence explains; it does not decide. The classifier's scores decide, and a moderator reads
the evidence next to them (``Prediction.evidence`` in ``qingfin.serve``).
"""

from __future__ import annotations

import functools

from qingfin.data.contacts import Contact, contacts_in
from qingfin.data.lexicon import LEXICON_VERSION, LexiconHit, lexicon_for
from qingfin.data.normalize import Normalizer

__all__ = ["CONTACT_LABEL_HINT", "find_evidence"]

# A contact is evidence of diversion to a private channel; whether the text is financial is the
# model's call (a bakery's phone number is a contact too).
CONTACT_LABEL_HINT = "traffic_diversion"


@functools.cache
def _zh_fin() -> Normalizer:
    from qingfin.data.zh_fin import ZhFinV1

    return ZhFinV1()


def _contact_item(original: str, contact: Contact) -> dict:
    start, end = contact.span
    return {
        "kind": "contact",
        "label_hint": CONTACT_LABEL_HINT,
        "start": start,
        "end": end,
        "text": original[start:end],
        "detail": {"type": contact.type, "value": contact.value, "cue": contact.cue,
                   "via": contact.via},
    }


def _lexicon_item(hit: LexiconHit) -> dict:
    return {
        "kind": "lexicon",
        "label_hint": hit.entry.label_hint,
        "start": hit.start,
        "end": hit.end,
        "text": hit.text,
        "detail": {"term": hit.entry.term, "matched": hit.matched, "note": hit.entry.note,
                   "added": hit.entry.added, "lexicon": LEXICON_VERSION},
    }


def find_evidence(text: str, normalizer: Normalizer | None = None) -> list[dict]:
    """Contacts and lexicon hits in ``text``, sorted by position.

    Each item is ``{kind: "contact"|"lexicon", label_hint, start, end, text, detail}``;
    ``start``/``end`` index the original ``text`` and ``text`` is that original substring.
    Contacts are always found through ``zh_fin.v1`` (they must survive every disguise); the
    lexicon is matched on ``normalizer``'s output (the bundle's normalizer; default zh_fin.v1).

    >>> [(e["kind"], e["label_hint"], e["text"]) for e in find_evidence("不看蒸信，薇：abc123")]
    [('lexicon', 'illegal_lending', '不看蒸信'), ('contact', 'traffic_diversion', 'abc123')]
    """
    zh_fin = _zh_fin()
    normalized = zh_fin.normalize(text)
    items = [_contact_item(text, c) for c in contacts_in(text, normalized)]
    lexicon = lexicon_for(normalizer)
    if normalizer is None or normalizer.name == zh_fin.name:
        hits = lexicon.find_normalized(text, normalized)
    else:
        hits = lexicon.find(text)
    items.extend(_lexicon_item(hit) for hit in hits)
    items.sort(key=lambda item: (item["start"], item["end"], item["kind"]))
    return items
