"""Retention: pure planner (table tests + property) and purge on a store."""

from __future__ import annotations

import io
from pathlib import Path
from typing import NoReturn

import pytest
from governance_helpers import T0, Clinic
from hypothesis import given
from hypothesis import strategies as st

from p2pmsg.blobs import BlobStore
from p2pmsg.entry import Entry
from p2pmsg.governance.audit import AuditKind, AuditLog
from p2pmsg.governance.retention import (
    DAY_MS,
    PayloadClass,
    PurgeCandidate,
    RetentionConfig,
    attachment_of,
    classify_payload,
    device_orgs,
    iter_entries,
    plan_purge,
    run_purge,
)
from p2pmsg.identity import Identity
from p2pmsg.messaging import RoomState
from p2pmsg.messaging.compose import compose_message
from p2pmsg.messaging.content import Edit, Reaction, ReadReceipt
from p2pmsg.messaging.payloads import MemberLeave, encode_room_payload
from p2pmsg.messaging.timeline import decrypt_timeline, open_epoch_keys
from p2pmsg.store.base import PayloadState
from p2pmsg.store.memory import MemoryStore
from p2pmsg.validate import verify_run

ROOM, OTHER = b"\x01" * 32, b"\x02" * 32
ORG = b"\x0a" * 32
NODE = Identity.from_seed(b"\x0b" * 32)


def cand(n: int, topic: bytes = ROOM, age_days: float = 10,
         cls: PayloadClass = PayloadClass.CONTENT, org: bytes | None = ORG) -> PurgeCandidate:
    return PurgeCandidate(bytes([n]) * 32, topic, b"\xdd" * 32, org,
                          T0 - int(age_days * DAY_MS), cls)


@pytest.mark.parametrize(("config", "expected"), [
    (RetentionConfig(), []),                                      # keep forever by default
    (RetentionConfig(default_ms=30 * DAY_MS), []),                # not old enough
    (RetentionConfig(default_ms=7 * DAY_MS), [1, 4]),             # content only; 2 fresh
    (RetentionConfig(default_ms=7 * DAY_MS, legal_holds=frozenset({ROOM})), [4]),
    (RetentionConfig(default_ms=7 * DAY_MS, per_room={ROOM: None}), [4]),
    (RetentionConfig(per_author_org={ORG: 5 * DAY_MS}), [1, 2]),
    (RetentionConfig(per_author_org={ORG: 5 * DAY_MS}, per_room={ROOM: 9 * DAY_MS}), [1]),
    (RetentionConfig(default_ms=7 * DAY_MS, purge_unknown=True), [1, 4, 5]),
])
def test_plan_table(config: RetentionConfig, expected: list[int]) -> None:
    candidates = [cand(1), cand(2, age_days=6), cand(3, cls=PayloadClass.STRUCTURE),
                  cand(4, topic=OTHER, org=None), cand(5, cls=PayloadClass.UNKNOWN)]
    plan = plan_purge(candidates, config, T0)
    assert plan.erase_ids() == [bytes([n]) * 32 for n in expected]


@given(st.lists(st.tuples(st.integers(1, 250), st.booleans(), st.sampled_from(PayloadClass),
                          st.floats(0, 100)), max_size=30),
       st.integers(0, 50), st.booleans())
def test_structure_and_held_rooms_are_never_planned(rows: list[tuple[int, bool, PayloadClass,
                                                                     float]],
                                                    days: int, unknown: bool) -> None:
    candidates = [cand(n, ROOM if r else OTHER, age, cls) for n, r, cls, age in rows]
    config = RetentionConfig(default_ms=days * DAY_MS, legal_holds=frozenset({ROOM}),
                             purge_unknown=unknown)
    for c in plan_purge(candidates, config, T0).erase:
        assert c.topic != ROOM and c.payload_class is not PayloadClass.STRUCTURE
        assert T0 - c.timestamp_ms >= days * DAY_MS


def test_classify_payloads() -> None:
    clinic = Clinic()
    kinds = [classify_payload(p) for _, p in clinic.world.topics[clinic.topic] if p]
    assert kinds == [PayloadClass.STRUCTURE, PayloadClass.STRUCTURE]  # create, epoch keys
    msg = clinic.say(clinic.alice, "hello")
    assert classify_payload(clinic.payload(msg)) is PayloadClass.CONTENT
    assert classify_payload(encode_room_payload(MemberLeave())) is PayloadClass.STRUCTURE
    ctrl = next(iter(clinic.world.topics.values()))[0][1]
    assert ctrl is not None and classify_payload(ctrl) is PayloadClass.STRUCTURE
    assert classify_payload(b"garbage") is PayloadClass.UNKNOWN


def test_purge_on_store_keeps_headers_structure_and_verifying_logs() -> None:
    clinic = Clinic()
    old = clinic.say(clinic.alice, "old message")
    clinic.world.tick(10 * DAY_MS)
    clinic.rekey(clinic.bob)  # the old epoch expired
    new = clinic.say(clinic.bob, "new message")
    store = MemoryStore()
    clinic.load(store)
    now = clinic.world.now_ms + 1
    authors = device_orgs(clinic.world.org_states())
    config = RetentionConfig(default_ms=7 * DAY_MS)
    plan = run_purge(store, config, now, authors=authors)
    assert plan.erase_ids() == [old.id]
    assert store.get_payload(old.id) is PayloadState.ERASED
    assert isinstance(store.get_payload(new.id), bytes)
    # structure (creation, epoch keys, certificates) untouched, logs verify in full
    for entry in iter_entries(store):
        if entry.id != old.id:
            assert isinstance(store.get_payload(entry.id), bytes)
    for topic in store.topics():
        for head in store.heads(topic):
            verify_run(None, store.get_range(head.author, topic, 1, head.seq), full=True)
    # room state still resolves (membership survived the purge)
    assert clinic.world.room(clinic.topic).view.exists
    # a second run finds nothing more; legal hold would have stopped the first
    assert run_purge(store, config, now, authors=authors).erase == ()
    store2 = MemoryStore()
    clinic.load(store2)
    held = RetentionConfig(default_ms=7 * DAY_MS, legal_holds=frozenset({clinic.topic}))
    assert run_purge(store2, held, now, authors=authors).held == 1
    assert isinstance(store2.get_payload(old.id), bytes)


def _object_files(blobs: BlobStore) -> list[Path]:
    return sorted(p for p in (blobs.path / "objects").glob("*/*") if p.is_file())


def test_purge_deletes_attachment_blobs_it_can_read(tmp_path: Path) -> None:
    c = Clinic()
    with BlobStore(tmp_path / "blobs", durable=False) as blobs:
        old, old_root = c.attach(c.alice, blobs, b"OLD-SCAN " * 500)
        c.world.tick(10 * DAY_MS)
        c.rekey(c.alice)
        fresh, fresh_root = c.attach(c.bob, blobs, b"NEW-SCAN " * 300)
        store = MemoryStore()
        c.load(store)
        keys = open_epoch_keys(c.world.room(c.topic).view, c.bob)
        old_files = {p.name for p in _object_files(blobs)} - {
            h.hex() for h in (blobs.get_manifest(fresh_root) or _no()).metadata_objects()
        } - {h.hex() for h in (blobs.get_manifest(fresh_root) or _no()).chunk_hashes}
        assert old_files  # the old blob's files are on disk before the purge

        # a relay (no keys) reaches the same blobs from the clear refs:
        # tests/test_relay_refs.py
        cfg = RetentionConfig(default_ms=5 * DAY_MS)
        assert blobs.roots() == sorted([old_root, fresh_root])
        with AuditLog(tmp_path / "audit.db", NODE) as audit:
            plan = run_purge(store, cfg, c.world.now_ms, authors={}, audit=audit,
                             blobs=blobs, keys=keys)
            rec = audit.query(kinds=[AuditKind.PURGE])[0]
        assert old.id in plan.erase_ids() and fresh.id not in plan.erase_ids()
        assert plan.blobs_deleted == 1 and rec.details["blobs"] == 1
        assert blobs.roots() == [fresh_root]
        left = {p.name for p in _object_files(blobs)}
        assert not old_files & left
        out = io.BytesIO()
        blobs.export(fresh_root, _key_of(store, fresh, keys), out)
        assert out.getvalue() == b"NEW-SCAN " * 300


def test_purge_never_deletes_another_rooms_blob(tmp_path: Path) -> None:
    c = Clinic()
    with BlobStore(tmp_path / "blobs", durable=False) as blobs:
        _, root = c.attach(c.alice, blobs, b"x" * 100)
        # re-register the blob under another room: the message no longer owns it
        manifest = blobs.get_manifest(root) or _no()
        blobs.delete_blob(root)
        blobs.add_manifest(manifest, org=c.a.id, room=OTHER)
        store = MemoryStore()
        c.load(store)
        keys = open_epoch_keys(c.world.room(c.topic).view, c.bob)
        plan = run_purge(store, RetentionConfig(default_ms=0), c.world.now_ms + 1,
                         authors={}, blobs=blobs, keys=keys)
        assert plan.erase and plan.blobs_deleted == 0 and blobs.roots() == [root]


def _no() -> NoReturn:
    raise AssertionError("expected a value")


def _key_of(store: MemoryStore, entry: Entry, keys: dict[bytes, bytes]) -> bytes:
    payload = store.get_payload(entry.id)
    assert isinstance(payload, bytes)
    desc = attachment_of(entry, payload, keys)
    assert desc is not None
    return desc.file_key


def test_purged_edits_and_reactions_stay_folded_into_their_message() -> None:
    """With the node's keys, retention erases an edit, a reaction and a receipt
    with a link to their message: the timeline shows one unavailable message, not
    four."""
    c = Clinic()
    w = c.world
    msg = c.say(c.alice, "old text")
    extra = []
    for content in (Edit(msg.id, "old text, corrected"), Reaction(msg.id, "+1"),
                    ReadReceipt(msg.id)):
        w.tick()
        who = c.alice if isinstance(content, Edit) else c.bob
        extra.append(w.append(who, c.topic, compose_message(
            w.room(c.topic), who, content, seq=w.next_seq(who, c.topic), now_ms=w.now_ms)))
    w.tick(10 * DAY_MS)
    store = MemoryStore()
    c.load(store)
    view = w.room(c.topic).view
    keys = open_epoch_keys(view, c.bob)
    plan = run_purge(store, RetentionConfig(default_ms=5 * DAY_MS), w.now_ms, authors={},
                     keys=keys)
    assert set(plan.erase_ids()) == {msg.id, *(e.id for e in extra)}
    assert store.folded(c.topic) == {e.id: msg.id for e in extra}
    items = [(e, p if isinstance(p := store.get_payload(e.id), bytes) else None)
             for e in iter_entries(store, [c.topic])]
    state = RoomState(c.topic, w.org_states())
    state.apply(items)
    shown = decrypt_timeline(state, c.bob, folded=store.folded(c.topic)).messages
    assert [m.id for m in shown] == [msg.id]
    assert shown[0].status.value == "unavailable"
    # without keys (a relay) nothing can be linked: the entries are just erased
    relay = MemoryStore()
    c.load(relay)
    run_purge(relay, RetentionConfig(default_ms=5 * DAY_MS), w.now_ms, authors={})
    assert relay.folded(c.topic) == {}
