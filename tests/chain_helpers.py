"""Builders of valid p2pmsg objects shared by many test modules.

Imported by name (``from chain_helpers import build_chain``), not through conftest:
two conftest.py files (tests/ and tests/netns/) would otherwise collide as the
module ``conftest``.

* :func:`build_chain` — a valid, signed log of ``n`` entries (with payloads) for a
  given or random identity and topic, optionally continuing after an existing entry
  (to build longer logs or fork branches).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from p2pmsg.entry import TOPIC_SIZE, Entry, create_entry
from p2pmsg.identity import Identity

__all__ = ["Chain", "build_chain"]


@dataclass(frozen=True)
class Chain:
    """A contiguous run of one log, with the payload of every entry."""

    identity: Identity
    topic: bytes
    entries: list[Entry]
    payloads: dict[bytes, bytes] = field(repr=False)

    @property
    def author(self) -> bytes:
        return self.identity.public_key

    @property
    def head(self) -> Entry | None:
        return self.entries[-1] if self.entries else None


def build_chain(
    n: int,
    *,
    identity: Identity | None = None,
    topic: bytes | None = None,
    after: Entry | None = None,
    tag: bytes = b"",
    payload_size: int = 24,
    timestamp: int = 1_000,
) -> Chain:
    """Sign ``n`` entries extending ``after`` (or starting a new log at seq 1).

    Payloads are ``tag`` + seq + random padding up to ``payload_size`` bytes, so two
    chains built with different tags from the same point are a fork. Timestamps
    increase by one per entry from ``timestamp`` (plus the seq).
    """
    identity = identity or Identity.generate()
    if after is not None:
        if after.author != identity.public_key:
            raise ValueError("`after` belongs to another author")
        topic = after.topic
    topic = topic if topic is not None else os.urandom(TOPIC_SIZE)
    entries: list[Entry] = []
    payloads: dict[bytes, bytes] = {}
    prev = after
    for _ in range(n):
        seq = 1 if prev is None else prev.seq + 1
        head = tag + b"#%d:" % seq
        payload = head + os.urandom(max(payload_size - len(head), 0))
        entry = create_entry(
            identity, topic, seq, None if prev is None else prev.id, timestamp + seq, payload
        )
        entries.append(entry)
        payloads[entry.id] = payload
        prev = entry
    return Chain(identity, topic, entries, payloads)
