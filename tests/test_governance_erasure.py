"""Erasure (Art. 17) on a SqliteStore: no byte left in the file or WAL, logs verify."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from governance_helpers import Clinic
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmsg.blobs import BlobStore
from p2pmsg.errors import DecodeError, ValidationError
from p2pmsg.governance.audit import AuditKind, AuditLog
from p2pmsg.governance.erasure import (
    MemoryEpochSecrets,
    ShredScope,
    decode_tombstone,
    erase_person,
    shred_epoch_payloads,
    verify_tombstone,
)
from p2pmsg.governance.retention import iter_entries
from p2pmsg.identity import Identity
from p2pmsg.messaging import RoomState, decrypt_messages
from p2pmsg.messaging.room import RoomView, resolve_room
from p2pmsg.messaging.timeline import open_epoch_keys
from p2pmsg.store.base import PayloadState
from p2pmsg.store.memory import MemoryStore
from p2pmsg.store.sqlite import SqliteStore
from p2pmsg.validate import verify_run

NODE = Identity.from_seed(b"\x09" * 32)


def on_disk(path: Path) -> bytes:
    wal = Path(str(path) + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def scenario() -> tuple[Clinic, dict[str, bytes], MemoryEpochSecrets]:
    c = Clinic()
    e1 = c.world.room(c.topic).view.epochs[0].id
    m1 = c.say(c.alice, "MARKER-alice-one-7f3a")
    b1 = c.say(c.bob, "bob says hi")
    e2 = c.rekey(c.alice).id
    m2 = c.say(c.alice, "MARKER-alice-two-91c2")
    secrets = MemoryEpochSecrets()
    secrets.put(e1, b"\x01" * 32)
    secrets.put(e2, b"\x02" * 32)
    ids = {"m1": m1.id, "m2": m2.id, "b1": b1.id, "e1": e1, "e2": e2}
    return c, ids, secrets


def test_erasure_leaves_no_byte_and_logs_verify(tmp_path: Path) -> None:
    c, ids, secrets = scenario()
    db = tmp_path / "store.db"
    audit = AuditLog(tmp_path / "audit.db", NODE)
    with SqliteStore(db) as store:
        c.load(store)
        erased_payloads = [store.get_payload(ids["m1"]), store.get_payload(ids["m2"])]
        assert all(isinstance(p, bytes) for p in erased_payloads)
        blob = on_disk(db)
        assert all(isinstance(p, bytes) and p[-40:] in blob for p in erased_payloads)

        stone = erase_person(store, [c.alice.public_key], NODE, "DPO-2024-17", 1, 2,
                             secrets=secrets, audit=audit)

        blob = on_disk(db)
        for p in erased_payloads:
            assert isinstance(p, bytes)
            assert p[-40:] not in blob and p[:60] not in blob
        assert b"MARKER" not in blob
        assert store.get_payload(ids["m1"]) is PayloadState.ERASED
        assert isinstance(store.get_payload(ids["b1"]), bytes)  # bob's message stays
        # structure written by alice (creation, epoch keys) is kept: the room resolves
        for topic in store.topics():
            for head in store.heads(topic):
                verify_run(None, store.get_range(head.author, topic, 1, head.seq), full=True)
        items = []
        for entry in iter_entries(store, [c.topic]):
            payload = store.get_payload(entry.id)
            items.append((entry, payload if isinstance(payload, bytes) else None))
        room = RoomState(c.topic, c.world.org_states())
        room.apply(items)
        shown = {m.id: m for m in decrypt_messages(room, c.bob)}
        assert shown[ids["b1"]].status.value == "ok"
        assert shown[ids["m1"]].status.value == "unavailable"
        store.integrity_check()
    # keys: e2 was used only by alice -> shredded; e1 still needed by bob's message
    assert stone.shredded == (ids["e2"],)
    assert secrets.epochs() == {ids["e1"]}
    # the tombstone verifies and says what was erased
    checked = verify_tombstone(stone.to_bytes(), NODE.public_key)
    assert set(checked.erased) == {ids["m1"], ids["m2"]}
    assert checked.devices == (c.alice.public_key,) and checked.request_ref == "DPO-2024-17"
    with pytest.raises(ValidationError):
        verify_tombstone(stone.to_bytes(), Identity.generate().public_key)
    forged = bytearray(stone.to_bytes())
    forged[-70] ^= 1
    with pytest.raises(ValidationError):
        verify_tombstone(bytes(forged), NODE.public_key)
    records = audit.query(kinds=[AuditKind.ERASURE])
    assert len(records) == 1 and records[0].details["tombstone"] == stone.digest().hex()
    assert records[0].details["erased"] == 2
    assert audit.verify() == 1
    audit.close()


def test_shred_all_forgets_shared_epochs_too(tmp_path: Path) -> None:
    c, ids, secrets = scenario()
    with SqliteStore(tmp_path / "s.db") as store:
        c.load(store)
        stone = erase_person(store, [c.alice.public_key], NODE, "r", 1, 2,
                             secrets=secrets, shred=ShredScope.ALL)
    assert set(stone.shredded) == {ids["e1"], ids["e2"]} and secrets.epochs() == frozenset()


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_tombstone_decoder_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_tombstone(data)


def test_erasure_deletes_the_persons_readable_attachment_blobs(tmp_path: Path) -> None:
    c = Clinic()
    with BlobStore(tmp_path / "blobs", durable=False) as blobs:
        _, alice_root = c.attach(c.alice, blobs, b"ALICE-XRAY " * 400)
        _, bob_root = c.attach(c.bob, blobs, b"BOB-LAB " * 200)
        alice_files = {h.hex() for h in _objects_of(blobs, alice_root)}
        assert alice_files <= {p.name for p in (blobs.path / "objects").glob("*/*")}
        store = MemoryStore()
        c.load(store)
        keys = open_epoch_keys(c.world.room(c.topic).view, c.bert)
        with AuditLog(tmp_path / "audit.db", NODE) as audit:
            erase_person(store, [c.alice.public_key], NODE, "r", 1, 2, audit=audit,
                         blobs=blobs, keys=keys)
            assert audit.query(kinds=[AuditKind.ERASURE])[0].details["blobs"] == 1
        assert blobs.roots() == [bob_root]
        left = {p.name for p in (blobs.path / "objects").glob("*/*")}
        assert alice_files and not alice_files & left
        assert blobs.is_complete(bob_root)


def _objects_of(blobs: BlobStore, root: bytes) -> list[bytes]:
    manifest = blobs.get_manifest(root)
    assert manifest is not None
    return [*manifest.metadata_objects(), *manifest.chunk_hashes]


def test_shredded_epochs_are_erased_from_the_room_log_too(tmp_path: Path) -> None:
    """Forgetting a key is not enough on a member node: the epoch secret is also
    sealed to the node in the EPOCH_KEYS payload. shred_epoch_payloads erases it
    (not the room's current epoch); the room still resolves without that epoch."""
    c, ids, secrets = scenario()
    e3 = c.rekey(c.bob).id  # e2 is no longer the current epoch
    db = tmp_path / "store.db"
    with SqliteStore(db) as store:
        c.load(store)
        sealed_e2 = store.get_payload(ids["e2"])
        assert isinstance(sealed_e2, bytes) and sealed_e2[-60:] in on_disk(db)
        stone = erase_person(store, [c.alice.public_key], NODE, "r", 1, 2, secrets=secrets)
        assert stone.shredded == (ids["e2"],)
        view = resolve(store, c)
        # only epochs sealed to this node's device key (bob's device here) are erased
        assert shred_epoch_payloads(store, [view], stone.shredded, NODE.public_key) == []
        bob = c.bob.public_key
        assert shred_epoch_payloads(store, [view], stone.shredded, bob) == [ids["e2"]]
        assert shred_epoch_payloads(store, [view], stone.shredded, bob) == []  # idempotent
        assert store.get_payload(ids["e2"]) is PayloadState.ERASED
        assert sealed_e2[-60:] not in on_disk(db)
        after = resolve(store, c)
        assert [e.id for e in after.epochs] == [ids["e1"], e3]
        assert set(after.members) == set(view.members)
        assert ids["e2"] not in open_epoch_keys(after, c.bob)
        # the current epoch is never erased, even if asked
        assert shred_epoch_payloads(store, [after], [e3], bob) == []
        assert isinstance(store.get_payload(e3), bytes)


def resolve(store: SqliteStore, c: Clinic) -> RoomView:
    items = []
    for entry in iter_entries(store, [c.topic]):
        payload = store.get_payload(entry.id)
        items.append((entry, payload if isinstance(payload, bytes) else None))
    return resolve_room(c.topic, items, c.world.org_states())
