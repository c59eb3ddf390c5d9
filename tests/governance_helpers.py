"""Shared fixtures for governance tests: one org, a room, messages with markers."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from messaging_helpers import Org, World

from p2pmsg.blobs import BlobStore
from p2pmsg.blobs.format import describe
from p2pmsg.daemon.governance import GovernanceConfig
from p2pmsg.entry import Entry
from p2pmsg.governance.federation import Organisation, OrgKind, issue_federation_list
from p2pmsg.governance.policy import LocalPolicy
from p2pmsg.governance.retention import RetentionConfig
from p2pmsg.identity import Identity
from p2pmsg.messaging import MemberSpec, RoomKind, compose_room
from p2pmsg.messaging.compose import compose_message, compose_rekey, compose_text
from p2pmsg.messaging.content import Attachment
from p2pmsg.messaging.kinds import Kind
from p2pmsg.store.base import Store

T0 = 1_700_000_000_000


@dataclass
class Clinic:
    """Org A (alice, bob) and org B (bert); one room with all three."""

    world: World = field(default_factory=lambda: World(now_ms=T0))
    markers: dict[bytes, str] = field(default_factory=dict)
    """entry id -> the unique text it carries."""
    bob_person: bytes | None = None
    """Certify bob for this person id (a version-2 certificate) if given."""

    def __post_init__(self) -> None:
        w = self.world
        self.a: Org = w.new_org()
        self.b: Org = w.new_org()
        self.alice = w.new_device(self.a, "alice")
        self.bob = w.new_device(self.a, "bob", person=self.bob_person)
        self.bert = w.new_device(self.b, "bert")
        self.topic, create = compose_room(
            self.alice, self.a.id, RoomKind.GROUP,
            [MemberSpec(self.bob.public_key, self.a.id),
             MemberSpec(self.bert.public_key, self.b.id)], w.now_ms)
        w.append(self.alice, self.topic, create)
        self.rekey(self.alice)

    def rekey(self, who: Identity) -> Entry:
        state = self.world.room(self.topic)
        return self.world.append(who, self.topic, compose_rekey(state, who, self.world.now_ms))

    def say(self, who: Identity, marker: str, tick_ms: int = 1) -> Entry:
        w = self.world
        w.tick(tick_ms)
        state = w.room(self.topic)
        entry = w.append(who, self.topic, compose_text(
            state, who, marker, seq=w.next_seq(who, self.topic), now_ms=w.now_ms))
        self.markers[entry.id] = marker
        return entry

    def attach(self, who: Identity, blobs: BlobStore, data: bytes,
               name: str = "scan.pdf") -> tuple[Entry, bytes]:
        """Import ``data`` into ``blobs`` for the room and send it as a document;
        returns (entry, blob root)."""
        manifest, key = blobs.import_file(io.BytesIO(data), len(data), org=self.a.id,
                                          room=self.topic, chunk_size=1024)
        w = self.world
        w.tick()
        content = Attachment(Kind.DOCUMENT, describe(manifest, key, "application/pdf", name))
        entry = w.append(who, self.topic, compose_message(
            w.room(self.topic), who, content, seq=w.next_seq(who, self.topic),
            now_ms=w.now_ms))
        return entry, manifest.root_hash

    def load(self, store: Store) -> None:
        """Append every entry (with payload) of the world to ``store``."""
        for items in self.world.topics.values():
            store.append([e for e, _ in items], {e.id: p for e, p in items if p is not None})

    def payload(self, entry: Entry) -> bytes:
        for items in self.world.topics.values():
            for e, p in items:
                if e.id == entry.id and p is not None:
                    return p
        raise KeyError(entry.id.hex())


def governance_config(c: Clinic, tmp_path: Path, node: Identity,
                      retention: RetentionConfig | None = None) -> GovernanceConfig:
    """A daemon ``[governance]`` config for ``node`` (listed as org A's node) with a
    federation list naming the clinic's organisations, signed by a fresh issuer."""
    issuer = Identity.generate()
    flist = tmp_path / "federation.bin"
    flist.write_bytes(issue_federation_list(issuer, 1, c.world.now_ms, [
        Organisation(c.a.id, "A", OrgKind.HOSPITAL, (node.public_key,)),
        Organisation(c.b.id, "B", OrgKind.CLINIC)]).raw)
    return GovernanceConfig(federation_list=flist, issuer=issuer.public_key,
                            local=LocalPolicy(), audit_log=tmp_path / "audit.db",
                            retention=retention or RetentionConfig())
