"""LogIndex: the heads of every log, per topic, sorted by author, with fingerprints.

Theory of operation
-------------------
Reconciliation (reconcile.py) compares two nodes' sets of *log heads* per topic.
An item is ``(author, height, head_id)``; its hash is
``BLAKE2b-256(author || height as 8 bytes big-endian || head_id)`` read as an
integer. The fingerprint of a range of authors is::

    BLAKE2b-128( (sum of item hashes mod 2**256) as 32 bytes LE || count as 8 bytes LE )

(the additive construction of negentropy: order-independent, incrementally
updatable, and only equal sets give equal fingerprints except with negligible
probability). Item hashes are cached; per topic a prefix-sum array is rebuilt lazily
after a change, so a range fingerprint is two bisections and a subtraction.

One index is shared by every session of a node. The node calls :meth:`LogIndex.update`
after every successful ``store.append`` and :meth:`LogIndex.load_heads` at start-up.
The index is also the trusted predecessor for chain verification of received runs.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable

from ..entry import Entry
from .messages import FINGERPRINT_SIZE, Item

__all__ = ["LogIndex", "item_hash"]

_MOD = 1 << 256


def item_hash(author: bytes, height: int, head_id: bytes) -> int:
    """The 256-bit hash of one reconciliation item, as an integer."""
    digest = hashlib.blake2b(author + height.to_bytes(8, "big") + head_id, digest_size=32)
    return int.from_bytes(digest.digest(), "little")


def fingerprint_of(total: int, count: int) -> bytes:
    """Fingerprint of a range from its hash sum and item count."""
    data = (total % _MOD).to_bytes(32, "little") + count.to_bytes(8, "little")
    return hashlib.blake2b(data, digest_size=FINGERPRINT_SIZE).digest()


class _TopicIndex:
    __slots__ = ("authors", "dirty", "hashes", "heads", "prefix")

    def __init__(self) -> None:
        self.authors: list[bytes] = []
        self.heads: dict[bytes, Entry] = {}
        self.hashes: dict[bytes, int] = {}
        self.prefix: list[int] = [0]
        self.dirty = False

    def set_head(self, entry: Entry) -> None:
        author = entry.header.author
        if author not in self.heads:
            bisect.insort(self.authors, author)
        self.heads[author] = entry
        self.hashes[author] = item_hash(author, entry.header.seq, entry.id)
        self.dirty = True

    def sums(self) -> list[int]:
        if self.dirty:
            acc = 0
            prefix = [0]
            for a in self.authors:
                acc += self.hashes[a]
                prefix.append(acc)
            self.prefix = prefix
            self.dirty = False
        return self.prefix

    def bounds(self, lo: bytes, hi: bytes | None) -> tuple[int, int]:
        i = bisect.bisect_left(self.authors, lo)
        j = len(self.authors) if hi is None else bisect.bisect_left(self.authors, hi)
        return i, max(i, j)


class LogIndex:
    """In-memory heads of all logs, per topic. Pure; shared by all sessions of a node."""

    __slots__ = ("_topics",)

    def __init__(self) -> None:
        self._topics: dict[bytes, _TopicIndex] = {}

    def update(self, entries: Iterable[Entry]) -> None:
        """Advance heads after a successful ``store.append`` (pass the added entries).

        An entry at or below the current head of its log is ignored (duplicates;
        forks are the store's business). Entries need not be sorted.
        """
        for entry in entries:
            t = self._topics.get(entry.header.topic)
            if t is None:
                t = self._topics[entry.header.topic] = _TopicIndex()
            cur = t.heads.get(entry.header.author)
            if cur is None or entry.header.seq > cur.header.seq:
                t.set_head(entry)

    def load_heads(self, topic: bytes, heads: Iterable[Entry]) -> None:
        """Load the head entries of ``topic`` (at start-up, from the store)."""
        self.update(e for e in heads if e.header.topic == topic)

    def head(self, author: bytes, topic: bytes) -> Entry | None:
        """The latest known entry of the (author, topic) log, or None."""
        t = self._topics.get(topic)
        return None if t is None else t.heads.get(author)

    def height(self, author: bytes, topic: bytes) -> int:
        """The seq of the head of the (author, topic) log, 0 if empty."""
        h = self.head(author, topic)
        return 0 if h is None else h.header.seq

    def topics(self) -> list[bytes]:
        """Topics with at least one log, sorted."""
        return sorted(self._topics)

    def log_count(self, topic: bytes) -> int:
        """Number of non-empty logs in ``topic``."""
        t = self._topics.get(topic)
        return 0 if t is None else len(t.authors)

    def count(self, topic: bytes, lo: bytes, hi: bytes | None) -> int:
        """Number of logs with ``lo <= author < hi`` (hi None = unbounded)."""
        t = self._topics.get(topic)
        if t is None:
            return 0
        i, j = t.bounds(lo, hi)
        return j - i

    def fingerprint(self, topic: bytes, lo: bytes, hi: bytes | None) -> bytes:
        """Fingerprint of the logs with ``lo <= author < hi``."""
        t = self._topics.get(topic)
        if t is None:
            return fingerprint_of(0, 0)
        i, j = t.bounds(lo, hi)
        sums = t.sums()
        return fingerprint_of(sums[j] - sums[i], j - i)

    def authors(self, topic: bytes, lo: bytes, hi: bytes | None) -> list[bytes]:
        """Authors of the logs in the range, sorted."""
        t = self._topics.get(topic)
        if t is None:
            return []
        i, j = t.bounds(lo, hi)
        return t.authors[i:j]

    def items(self, topic: bytes, lo: bytes, hi: bytes | None) -> list[Item]:
        """Reconciliation items of the logs in the range, sorted by author."""
        t = self._topics.get(topic)
        if t is None:
            return []
        i, j = t.bounds(lo, hi)
        out = []
        for a in t.authors[i:j]:
            e = t.heads[a]
            out.append(Item(a, e.header.seq, e.id))
        return out
