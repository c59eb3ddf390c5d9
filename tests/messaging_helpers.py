"""Builders for messaging tests: organisations, devices and logs in memory.

:class:`World` plays the node's part for the pure messaging layer: it creates
entries (``create_entry``) at the right seq/backlink, keeps every (entry, payload)
per topic, and resolves org and room states from them. Timestamps are HLC-shaped
(``ms << 16``) from a counter the test controls (``world.now_ms``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from p2pmsg.certs import Role, issue_certificate
from p2pmsg.entry import Entry, create_entry
from p2pmsg.identity import Identity
from p2pmsg.messaging import (
    OrgState,
    RoomState,
    compose_certificate,
    compose_revocation,
    control_topic,
)

Item = tuple[Entry, bytes | None]


@dataclass
class Org:
    root: Identity
    devices: dict[str, Identity] = field(default_factory=dict)

    @property
    def id(self) -> bytes:
        return self.root.public_key


@dataclass
class World:
    now_ms: int = 1_000_000
    topics: dict[bytes, list[Item]] = field(default_factory=dict)
    heads: dict[tuple[bytes, bytes], Entry] = field(default_factory=dict)
    orgs: dict[bytes, Org] = field(default_factory=dict)

    def tick(self, ms: int = 1) -> int:
        self.now_ms += ms
        return self.now_ms

    def next_seq(self, author: Identity, topic: bytes) -> int:
        head = self.heads.get((author.public_key, topic))
        return 1 if head is None else head.seq + 1

    def append(
        self,
        author: Identity,
        topic: bytes,
        payload: bytes,
        *,
        deps: Iterable[bytes] | None = None,
        timestamp: int | None = None,
    ) -> Entry:
        """Append ``payload`` to (author, topic). Default deps: heads of every other log."""
        head = self.heads.get((author.public_key, topic))
        if deps is None:
            deps = [e.id for (a, t), e in self.heads.items()
                    if t == topic and a != author.public_key]
        ts = (self.tick() << 16) if timestamp is None else timestamp
        entry = create_entry(
            author, topic, 1 if head is None else head.seq + 1,
            None if head is None else head.id, ts, payload, deps,
        )
        self.heads[(author.public_key, topic)] = entry
        self.topics.setdefault(topic, []).append((entry, payload))
        return entry

    def new_org(self) -> Org:
        org = Org(Identity.generate())
        self.orgs[org.id] = org
        return org

    def new_device(self, org: Org, name: str, role: Role = Role.MEMBER,
                   valid_ms: int = 10**9, *, person: bytes | None = None) -> Identity:
        """A new device certified by ``org`` (for ``person`` if given: a v2 certificate)."""
        device = Identity.generate()
        cert = issue_certificate(org.root, device.public_key, role, name,
                                 self.now_ms - 10_000, self.now_ms + valid_ms, person=person)
        self.append(org.root, control_topic(org.id), compose_certificate(cert))
        org.devices[name] = device
        return device

    def revoke(self, org: Org, device: Identity, *, effective_ts: int | None = None,
               seal_logs: bool = True, by: Identity | None = None) -> Entry:
        """Revoke ``device`` from now on, sealing every log of it the world holds."""
        cutoffs = ({t: e.seq for (a, t), e in self.heads.items() if a == device.public_key}
                   if seal_logs else {})
        ts = ((self.now_ms + 1) << 16) if effective_ts is None else effective_ts
        return self.append(by or org.root, control_topic(org.id),
                           compose_revocation(device.public_key, ts, cutoffs))

    def org_state(self, org: Org) -> OrgState:
        return OrgState.from_entries(org.id, self.topics.get(control_topic(org.id), []))

    def org_states(self) -> dict[bytes, OrgState]:
        return {oid: self.org_state(org) for oid, org in self.orgs.items()}

    def room(self, topic: bytes) -> RoomState:
        state = RoomState(topic, self.org_states())
        state.apply(self.topics.get(topic, []))
        return state

    def all_payload_bytes(self) -> list[bytes]:
        return [p for items in self.topics.values() for _, p in items if p is not None]
