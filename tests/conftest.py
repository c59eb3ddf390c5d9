"""Shared test fixtures and builders.

Keep this file small and generic: helpers that build valid p2pmsg objects for any
test module. Module-specific fixtures belong in their test module.

* :func:`build_chain` / fixture ``make_chain`` — a valid, signed log of ``n`` entries
  (with payloads) for a given or random identity and topic, optionally continuing
  after an existing entry (to build longer logs or fork branches).
* fixtures ``identity`` and ``topic`` — a fresh random author key / topic id.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings

from p2pmsg.entry import TOPIC_SIZE, Entry, create_entry
from p2pmsg.identity import Identity

__all__ = ["Chain", "build_chain"]

# Property tests check behaviour, not speed: a loaded 2-core CI machine must not turn
# a slow example into a failure. Speed targets live in benchmarks/.
settings.register_profile(
    "p2pmsg", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "p2pmsg"))


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


@pytest.fixture(scope="session")
def make_chain() -> Callable[..., Chain]:
    """The :func:`build_chain` builder, as a fixture (usable from any scope)."""
    return build_chain


@pytest.fixture
def identity() -> Identity:
    """A fresh random author identity."""
    return Identity.generate()


@pytest.fixture
def topic() -> bytes:
    """A fresh random 32-byte topic id."""
    return os.urandom(TOPIC_SIZE)
