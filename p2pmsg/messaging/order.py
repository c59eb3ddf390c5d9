"""The total order of a topic's entries: causal first, then HLC, then entry id (pure).

Theory of operation
-------------------
Every node must apply a room's (or an organisation's) entries in the *same* order,
whatever order they arrived in, so that permission checks made "at the point of
application" give the same answer everywhere. The order is a deterministic linear
extension of the causal partial order:

* an entry comes after its backlink (the previous entry of its log) and after each
  of its causal ``deps`` — when those entries are in the set;
* among the entries whose predecessors are all placed, the one with the smallest
  ``(timestamp, id)`` goes next (Kahn's algorithm with a heap).

The result depends only on the *set* of entries. Predecessors that are not in the
set are ignored (not waited for): an entry naming a dependency nobody has (a
malicious member can write one) must not hold back every entry that later depends
on it. When the missing entry arrives, re-running the order over the larger set
places everything correctly; state is always recomputed from the set, never patched.

Hash links cannot form a cycle (that would need a BLAKE2b preimage); should a cycle
ever appear, its entries are appended in ``(timestamp, id)`` order so the function
stays total.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from ..entry import Entry

__all__ = ["order_key", "total_order"]


def order_key(entry: Entry) -> tuple[int, bytes]:
    """The tie-break among causally unordered entries: HLC timestamp, then entry id."""
    return (entry.header.timestamp, entry.id)


def total_order(entries: Iterable[Entry]) -> list[Entry]:
    """The entries (duplicates by id removed) in the deterministic total order."""
    by_id: dict[bytes, Entry] = {}
    for entry in entries:
        by_id.setdefault(entry.id, entry)
    waiting: dict[bytes, int] = {}
    children: dict[bytes, list[bytes]] = {}
    for eid, entry in by_id.items():
        preds = {d for d in entry.header.deps if d in by_id}
        link = entry.header.backlink
        if link is not None and link in by_id:
            preds.add(link)
        preds.discard(eid)
        waiting[eid] = len(preds)
        for pred in preds:
            children.setdefault(pred, []).append(eid)
    heap = [(order_key(e), eid) for eid, e in by_id.items() if waiting[eid] == 0]
    heapq.heapify(heap)
    result: list[Entry] = []
    while heap:
        _, eid = heapq.heappop(heap)
        result.append(by_id[eid])
        for child in children.get(eid, ()):
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(heap, (order_key(by_id[child]), child))
    if len(result) < len(by_id):  # only reachable with a hash cycle: stay total
        placed = {e.id for e in result}
        rest = sorted((e for e in by_id.values() if e.id not in placed), key=order_key)
        result.extend(rest)
    return result
