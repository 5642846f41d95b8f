"""Account roll-up and shared-contact networks for batch moderation.

The campaign acts on accounts (禁言, 暂停更新, 限制流量变现, 关闭账号), not only on posts: per
account we count violating posts per label and map them to a recommended measure with a
policy of ordered rules (first match wins, most severe first). Contact handles extracted from
posts are grouped across accounts: one WeChat id used by many accounts reveals a coordinated
diversion network.
"""

from __future__ import annotations

import json
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

SEVERITY = ("none", "禁言", "限制流量变现", "暂停更新", "关闭账号")


@dataclass(frozen=True)
class Rule:
    """Recommend ``action`` when an account has at least ``min_posts`` posts at ``level``
    (``block`` or ``review``; review counts block posts too) carrying any of ``labels``
    (empty = any label)."""

    action: str
    level: str
    min_posts: int
    labels: tuple[str, ...] = ()
    reason: str = ""


def load_policy(path: str | Path | None = None) -> list[Rule]:
    """Rules from a TOML policy file (default: the packaged ``account_policy.toml``)."""
    if path is None:
        text = resources.files("qingfin.serve").joinpath("resources/account_policy.toml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    rules = []
    for index, item in enumerate(tomllib.loads(text).get("rule", []), start=1):
        unknown = set(item) - {"action", "level", "min_posts", "labels", "reason"}
        if unknown or item.get("action") not in SEVERITY or item.get("level") not in ("review", "block"):
            raise ValueError(f"policy rule {index}: bad keys {sorted(unknown)} or action/level {item.get('action')!r}/{item.get('level')!r}")
        rules.append(Rule(item["action"], item["level"], int(item["min_posts"]), tuple(item.get("labels", ())), item.get("reason", "")))
    return rules


@dataclass
class AccountStats:
    posts: int = 0
    review_posts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    block_posts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    max_scores: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    first_row: str | None = None
    last_row: str | None = None

    def count(self, level: str, labels: Sequence[str]) -> int:
        """Posts at ``level`` or above for any of ``labels`` (per label counts are per post, so
        a post with two labels counts once per label; ``labels=()`` uses the any-label count)."""
        table = self.block_posts if level == "block" else self.review_posts
        if not labels:
            return table.get("*", 0)
        return max((table.get(label, 0) for label in labels), default=0)


def recommend(stats: AccountStats, rules: Sequence[Rule]) -> tuple[str, str]:
    """The first matching rule's action and reason, or ``("none", "")``."""
    for rule in rules:
        if stats.count(rule.level, rule.labels) >= rule.min_posts:
            return rule.action, rule.reason
    return "none", ""


class RollUp:
    """Streams result rows into per-account stats and per-contact usage (bounded per contact)."""

    def __init__(self, labels: Sequence[str], max_posts_per_contact: int = 100):
        self.labels = tuple(labels)
        self.accounts: dict[str, AccountStats] = defaultdict(AccountStats)
        self.contacts: dict[tuple[str, str], dict] = {}
        self.max_posts = max_posts_per_contact

    def add(self, account: str | None, post_key: str, decisions: dict[str, str], scores: dict[str, float], evidence: Iterable[dict]) -> None:
        if account is not None:
            stats = self.accounts[account]
            stats.posts += 1
            stats.first_row = stats.first_row or post_key
            stats.last_row = post_key
            for label in self.labels:
                stats.max_scores[label] = max(stats.max_scores[label], scores[label])
                if decisions[label] in ("review", "block"):
                    stats.review_posts[label] += 1
                if decisions[label] == "block":
                    stats.block_posts[label] += 1
            levels = set(decisions.values())
            stats.review_posts["*"] += bool(levels & {"review", "block"})
            stats.block_posts["*"] += "block" in levels
        for item in evidence:
            if item.get("kind") != "contact":
                continue
            detail = item.get("detail") or {}
            key = (detail.get("type", "unknown"), detail.get("value", item.get("text", "")))
            entry = self.contacts.setdefault(key, {"accounts": set(), "posts": [], "post_count": 0})
            if account is not None:
                entry["accounts"].add(account)
            entry["post_count"] += 1
            if len(entry["posts"]) < self.max_posts:
                entry["posts"].append(post_key)

    def account_rows(self, rules: Sequence[Rule]) -> list[dict]:
        rows = []
        for account, stats in sorted(self.accounts.items()):
            action, reason = recommend(stats, rules)
            row = {"account": account, "posts": stats.posts, "violating_posts": stats.review_posts.get("*", 0),
                   "block_posts": stats.block_posts.get("*", 0), "first_seen": stats.first_row, "last_seen": stats.last_row,
                   "recommended_action": action, "reason": reason}
            for label in self.labels:
                row[f"review_posts_{label}"] = stats.review_posts.get(label, 0)
                row[f"block_posts_{label}"] = stats.block_posts.get(label, 0)
                row[f"max_score_{label}"] = stats.max_scores.get(label, 0.0)
            rows.append(row)
        return rows

    def contact_rows(self) -> list[dict]:
        rows = [
            {"type": kind, "value": value, "accounts": sorted(entry["accounts"]), "account_count": len(entry["accounts"]),
             "post_count": entry["post_count"], "posts": entry["posts"]}
            for (kind, value), entry in self.contacts.items()
        ]
        return sorted(rows, key=lambda r: (-r["account_count"], -r["post_count"], r["type"], r["value"]))


def policy_summary(rules: Sequence[Rule]) -> str:
    return json.dumps([rule.__dict__ for rule in rules], ensure_ascii=False)
