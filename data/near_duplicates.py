"""Near-duplicate grouping by character 5-gram Jaccard similarity (MinHash + LSH, then exact check).

Used by the dataset build so that near-duplicates never straddle splits, and by authoring
checks. Pure Python + numpy; ~15k short texts take a few seconds.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

_PRIME = (1 << 61) - 1


def shingles(text: str, n: int = 5) -> set[str]:
    """Character n-grams of a text with whitespace removed (the whole text if shorter than n)."""
    compact = "".join(text.split())
    if len(compact) <= n:
        return {compact} if compact else set()
    return {compact[i : i + n] for i in range(len(compact) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b| (0 for two empty sets).

    >>> round(jaccard(shingles("加微信领取内部额度"), shingles("加微信领取内部额度吧")), 2)
    0.83
    """
    if not a and not b:
        return 0.0
    return len(a & b) / len(a | b)


def _signatures(sets: Sequence[set[str]], permutations: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, _PRIME, permutations, dtype=np.uint64)
    b = rng.integers(0, _PRIME, permutations, dtype=np.uint64)
    signatures = np.full((len(sets), permutations), np.iinfo(np.uint64).max, dtype=np.uint64)
    for row, items in enumerate(sets):
        if not items:
            continue
        hashes = np.array([zlib.crc32(s.encode("utf-8")) for s in items], dtype=np.uint64)
        # Universal hashing modulo a Mersenne prime; uint64 wrap-around is fine for MinHash.
        values = (hashes[:, None] * a[None, :] + b[None, :]) % np.uint64(_PRIME)
        signatures[row] = values.min(0)
    return signatures


def near_duplicate_groups(texts: Sequence[str], threshold: float = 0.6, bands: int = 20, rows_per_band: int = 3, seed: int = 0) -> list[int]:
    """A group id per text: texts linked by Jaccard > ``threshold`` (transitively) share a group.

    Group ids are the index of the group's first member, so they are deterministic.

    >>> near_duplicate_groups(["加微信领取内部额度吧", "加微信领取内部额度", "今天天气真好出去走走"])
    [0, 0, 2]
    """
    sets = [shingles(t) for t in texts]
    signatures = _signatures(sets, bands * rows_per_band, seed)
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for band in range(bands):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        block = signatures[:, band * rows_per_band : (band + 1) * rows_per_band]
        for index in range(len(texts)):
            if sets[index]:
                buckets[block[index].tobytes()].append(index)
        for members in buckets.values():
            for position, other in enumerate(members[1:], start=1):
                # All pairs in ordinary buckets; only against the head in degenerate huge ones.
                for first in (members[:position] if len(members) <= 50 else members[:1]):
                    if find(first) != find(other) and jaccard(sets[first], sets[other]) > threshold:
                        parent[max(find(first), find(other))] = min(find(first), find(other))
    return [find(i) for i in range(len(texts))]
