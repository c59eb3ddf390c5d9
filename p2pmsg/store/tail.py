"""Reading only what is new in a topic: entries above known heights, late payloads.

Incremental views of a store (the messenger's room and org caches,
:class:`p2pmsg.daemon.rooms.StoreRooms`) keep, per topic, the seq read up to in
each log and the entries read while their payload was MISSING (it may still
arrive; ERASED never comes back). :meth:`TopicTail.pull` returns what the store
holds beyond that and advances it. Pure reads of a :class:`~.base.Store`: no
clock, no trio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..entry import Entry
from .base import PayloadState, Store

__all__ = ["TopicTail"]


@dataclass
class TopicTail:
    """How far one topic has been read."""

    heights: dict[bytes, int] = field(default_factory=dict)
    """author -> seq read up to."""
    missing: dict[bytes, Entry] = field(default_factory=dict)
    """Entries read without a payload that may still arrive (MISSING, not ERASED)."""

    def pull(self, store: Store, topic: bytes,
             frozen: Mapping[tuple[bytes, bytes], int] | None = None
             ) -> list[tuple[Entry, bytes | None]]:
        """(entry, payload or None) for every entry of ``topic`` above the heights
        read, then (entry, payload) for entries whose payload arrived since; the
        heights and the missing set advance. ``frozen``: (author, topic) -> seq of a
        log's first bad entry — it and what follows are not read (as
        :meth:`p2pmsg.node.Node.read` shows a frozen log)."""
        new: list[tuple[Entry, bytes | None]] = []
        for head in store.heads(topic):
            end = head.seq
            bad = frozen.get((head.author, topic)) if frozen else None
            if bad is not None:
                end = min(end, bad - 1)
            start = self.heights.get(head.author, 0) + 1
            if end < start:
                continue
            for entry in store.get_range(head.author, topic, start, end):
                value = store.get_payload(entry.id)
                if isinstance(value, bytes):
                    new.append((entry, value))
                else:
                    if value is PayloadState.MISSING:
                        self.missing[entry.id] = entry
                    new.append((entry, None))
            self.heights[head.author] = end
        for entry_id, entry in list(self.missing.items()):
            value = store.get_payload(entry_id)
            if isinstance(value, bytes):
                new.append((entry, value))
            if value is not PayloadState.MISSING:
                del self.missing[entry_id]
        return new
