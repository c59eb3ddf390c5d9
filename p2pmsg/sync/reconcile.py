"""Range-based set reconciliation of log heads (pure functions over a LogIndex).

Theory of operation
-------------------
Per topic, each side holds a sorted set of *items* ``(author, height, head_id)``,
one per log (index.py). Two sides reconcile by exchanging *ranges* of the author
key space, each with a mode (messages.RangeMode):

* The initiator opens with one FINGERPRINT range covering everything.
* A side receiving a FINGERPRINT compares it with its own fingerprint of the same
  range. Equal: SKIP. Different: if it holds at most ``leaf`` items there it sends
  them all (ITEMS: "here is my list, tell me what I lack"); otherwise it splits its
  items in the range into ``fanout`` buckets of equal size and sends a FINGERPRINT
  for each.
* A side receiving ITEMS knows both lists for that range: it requests the logs where
  the peer is ahead (REQUEST, by the connection) and answers ITEMS_FINAL with its
  own items where *it* is ahead (or holds a different head at the same height — a
  fork signal), so the peer can request those. ITEMS_FINAL needs no answer.

A range where the sides agree costs one fingerprint, and a differing log makes
O(fanout * log_fanout(n)) fingerprints travel, so an idle re-sync of n logs with d
differences costs O(d * fanout * log(n)) bytes instead of the O(n) of a height
vector (docs/protocol-sync.md gives the numbers). Bounds are the shortest author
prefix that separates two neighbouring items (about log256(n) + 1 bytes).

A *turn* is the set of RECON frames one side sends in answer to the other's turn;
each turn answers the ranges of the previous one, covering the same key space, so
the exchange is a ping-pong that ends with a turn that needs no answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import RemoteProtocolError
from .index import LogIndex
from .messages import Item, Range, RangeMode

__all__ = [
    "MAX_ITEMS_PER_RANGE",
    "TurnOutcome",
    "answer_ranges",
    "compact",
    "needs_reply",
    "one_way_ranges",
    "opening_ranges",
    "separating_bound",
]

MAX_ITEMS_PER_RANGE = 256
"""Item lists longer than this are cut into several ranges (keeps frames small)."""


def separating_bound(prev: bytes, nxt: bytes) -> bytes:
    """The shortest prefix ``p`` of ``nxt`` with ``prev < p <= nxt`` (prev < nxt)."""
    k = 0
    limit = min(len(prev), len(nxt))
    while k < limit and prev[k] == nxt[k]:
        k += 1
    return nxt[: k + 1]


@dataclass
class TurnOutcome:
    """What answering a peer's turn produced."""

    ranges: list[Range] = field(default_factory=list)
    """Our answer (uncompacted; pass through :func:`compact`)."""
    needs: list[Item] = field(default_factory=list)
    """Peer items that are ahead of ours (or conflict at equal height): request them."""


def opening_ranges(index: LogIndex, topic: bytes) -> list[Range]:
    """The initiator's first turn: one fingerprint over the whole key space."""
    return [Range(None, RangeMode.FINGERPRINT, fingerprint=index.fingerprint(topic, b"", None))]


def one_way_ranges(index: LogIndex, topic: bytes) -> list[Range]:
    """Everything we hold, as ITEMS_FINAL (for a topic the peer may not send back)."""
    return _items_ranges(index.items(topic, b"", None), None, RangeMode.ITEMS_FINAL)


def needs_reply(ranges: list[Range]) -> bool:
    """True if a turn holding these ranges must be answered."""
    return any(r.mode in (RangeMode.FINGERPRINT, RangeMode.ITEMS) for r in ranges)


def _items_ranges(items: list[Item], hi: bytes | None, mode: RangeMode) -> list[Range]:
    """``items`` as one or more ranges ending at ``hi`` (cut every MAX_ITEMS_PER_RANGE)."""
    out: list[Range] = []
    start = 0
    while len(items) - start > MAX_ITEMS_PER_RANGE:
        cut = start + MAX_ITEMS_PER_RANGE
        bound = separating_bound(items[cut - 1].author, items[cut].author)
        out.append(Range(bound, mode, items=tuple(items[start:cut])))
        start = cut
    out.append(Range(hi, mode, items=tuple(items[start:])))
    return out


def _split(index: LogIndex, topic: bytes, lo: bytes, hi: bytes | None,
           fanout: int) -> list[Range]:
    authors = index.authors(topic, lo, hi)
    n = len(authors)
    out: list[Range] = []
    prev = lo
    for i in range(1, fanout):
        k = i * n // fanout
        bound = separating_bound(authors[k - 1], authors[k])
        out.append(Range(bound, RangeMode.FINGERPRINT,
                         fingerprint=index.fingerprint(topic, prev, bound)))
        prev = bound
    out.append(Range(hi, RangeMode.FINGERPRINT, fingerprint=index.fingerprint(topic, prev, hi)))
    return out


def answer_ranges(index: LogIndex, topic: bytes, lo: bytes, ranges: tuple[Range, ...],
                  *, fanout: int, leaf: int) -> TurnOutcome:
    """Answer the peer's ``ranges`` (which start at ``lo``) against our index.

    ``leaf`` must be at least ``fanout`` so every split bucket is non-empty.
    """
    out = TurnOutcome()
    for r in ranges:
        hi = r.upper
        if r.mode == RangeMode.SKIP:
            out.ranges.append(Range(hi, RangeMode.SKIP))
        elif r.mode == RangeMode.FINGERPRINT:
            if index.fingerprint(topic, lo, hi) == r.fingerprint:
                out.ranges.append(Range(hi, RangeMode.SKIP))
            elif index.count(topic, lo, hi) <= leaf:
                out.ranges.extend(_items_ranges(index.items(topic, lo, hi), hi, RangeMode.ITEMS))
            else:
                out.ranges.extend(_split(index, topic, lo, hi, fanout))
        else:
            mine = index.items(topic, lo, hi)
            theirs = {i.author: i for i in r.items}
            for it in r.items:
                if not (lo <= it.author and (hi is None or it.author < hi)):
                    raise RemoteProtocolError("bad_range", "RECON: item outside its range")
            by_author = {i.author: i for i in mine}
            for it in r.items:
                m = by_author.get(it.author)
                if m is None or it.height > m.height or (
                        it.height == m.height and it.head_id != m.head_id):
                    out.needs.append(it)
            if r.mode == RangeMode.ITEMS:
                ahead = []
                for m in mine:
                    t = theirs.get(m.author)
                    if t is None or m.height > t.height or (
                            m.height == t.height and m.head_id != t.head_id):
                        ahead.append(m)
                if ahead:
                    out.ranges.extend(_items_ranges(ahead, hi, RangeMode.ITEMS_FINAL))
                else:
                    out.ranges.append(Range(hi, RangeMode.SKIP))
            else:
                out.ranges.append(Range(hi, RangeMode.SKIP))
        if hi is None:
            break
        lo = hi
    return out


def compact(ranges: list[Range]) -> list[Range]:
    """Merge neighbouring SKIP ranges and drop trailing ones (the rest is implied)."""
    out: list[Range] = []
    for r in ranges:
        if r.mode == RangeMode.SKIP and out and out[-1].mode == RangeMode.SKIP:
            out[-1] = r
        else:
            out.append(r)
    while out and out[-1].mode == RangeMode.SKIP:
        out.pop()
    return out
