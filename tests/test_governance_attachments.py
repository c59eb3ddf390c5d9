"""Retention reaches every attachment: by registration time, and in the daemon's run.

* :func:`expire_blobs` deletes blobs older than their room/org limit, keeps held
  rooms, and a dry run changes nothing;
* an index made before registration times existed is migrated;
* :func:`run_retention` (daemon timer and ``p2pmsg retention purge``) opens the
  node's own epoch keys, so the attachment of a purged message goes with it, never
  re-opens a crypto-shredded epoch, prunes the audit log and logs its head.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from governance_helpers import Clinic, governance_config

from p2pmsg.blobs import BlobStore
from p2pmsg.daemon.governance import (
    Governance,
    GovernanceConfig,
    epoch_keys,
    room_views,
    run_retention,
)
from p2pmsg.daemon.logsetup import _FIELDS
from p2pmsg.governance.attachments import expire_blobs
from p2pmsg.governance.audit import AuditKind, AuditLog
from p2pmsg.governance.federation import (
    DEFAULT_MAX_AGE_MS,
)
from p2pmsg.governance.policy import LocalPolicy
from p2pmsg.governance.retention import DAY_MS, RetentionConfig
from p2pmsg.identity import Identity
from p2pmsg.messaging.compose import compose_message
from p2pmsg.messaging.content import Redaction
from p2pmsg.messenger.keyring import MemoryKeyring
from p2pmsg.store.base import PayloadState
from p2pmsg.store.memory import MemoryStore

NODE = Identity.from_seed(b"\x07" * 32)


def _blobs(tmp_path: Path, c: Clinic) -> BlobStore:
    return BlobStore(tmp_path / "blobs", durable=False, clock=lambda: c.world.now_ms)


def test_expire_blobs_by_registration_time_limits_and_holds(tmp_path: Path) -> None:
    c = Clinic()
    with _blobs(tmp_path, c) as blobs, AuditLog(tmp_path / "audit.db", NODE) as audit:
        _, old = c.attach(c.alice, blobs, b"old " * 300)
        c.world.tick(10 * DAY_MS)
        c.rekey(c.alice)
        _, new = c.attach(c.alice, blobs, b"new " * 300)
        now = c.world.now_ms
        assert expire_blobs(blobs, RetentionConfig(), now).deleted == ()  # keep forever
        held = RetentionConfig(default_ms=5 * DAY_MS, legal_holds=frozenset({c.topic}))
        result = expire_blobs(blobs, held, now, audit=audit)
        assert result.deleted == () and result.held == 1
        dry = expire_blobs(blobs, RetentionConfig(default_ms=5 * DAY_MS), now, dry_run=True)
        assert dry.deleted == (old,) and sorted(blobs.roots()) == sorted([old, new])
        # a room limit wins over the default; an org limit applies to the blob's org
        per_room = RetentionConfig(default_ms=1, per_room={c.topic: 20 * DAY_MS})
        assert expire_blobs(blobs, per_room, now).deleted == ()
        per_org = RetentionConfig(per_author_org={c.a.id: 5 * DAY_MS})
        result = expire_blobs(blobs, per_org, now, audit=audit)
        assert result.deleted == (old,) and result.freed > 0
        assert blobs.roots() == [new]
        [rec] = audit.query(kinds=[AuditKind.PURGE])
        assert rec.details == {"topic": c.topic.hex(), "erased": 0, "blobs": 1,
                               "reason": "attachment_expired"}


def test_index_without_registration_times_is_migrated(tmp_path: Path) -> None:
    c = Clinic()
    with _blobs(tmp_path, c) as blobs:
        _, root = c.attach(c.alice, blobs, b"legacy " * 100)
    with sqlite3.connect(tmp_path / "blobs" / "index.sqlite3") as db:  # the old schema
        db.execute("DROP INDEX blobs_registered")
        db.execute("ALTER TABLE blobs DROP COLUMN registered")
    with _blobs(tmp_path, c) as blobs:
        assert blobs.registered_before(1) == [(root, c.a.id, c.topic, 0)]
        cfg = RetentionConfig(default_ms=DAY_MS)
        assert expire_blobs(blobs, cfg, c.world.now_ms).deleted == (root,)


def _gov(tmp_path: Path, retention: RetentionConfig, audit_days: int | None = None
         ) -> GovernanceConfig:
    return GovernanceConfig(
        federation_list=tmp_path / "unused.bin", issuer=b"\x00" * 32, local=LocalPolicy(),
        audit_log=tmp_path / "audit.db", retention=retention,
        max_age_ms=DEFAULT_MAX_AGE_MS,
        audit_retention_ms=None if audit_days is None else audit_days * DAY_MS)


def test_run_retention_deletes_attachments_with_the_nodes_own_keys(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    c = Clinic()
    with _blobs(tmp_path, c) as blobs, AuditLog(tmp_path / "audit.db", NODE) as audit:
        audit.append(AuditKind.CONNECTION_ACCEPTED, c.world.now_ms, peer="ab" * 8)
        old, old_root = c.attach(c.alice, blobs, b"OLD-SCAN " * 400)
        c.world.tick(10 * DAY_MS)
        c.rekey(c.alice)
        fresh, fresh_root = c.attach(c.bob, blobs, b"NEW-SCAN " * 400)
        store = MemoryStore()
        c.load(store)
        orgs = c.world.org_states()
        cfg = _gov(tmp_path, RetentionConfig(default_ms=30 * DAY_MS), audit_days=5)
        dry = run_retention(cfg, store, c.world.now_ms + 25 * DAY_MS, identity=c.bob,
                            orgs=orgs, audit=None, blobs=blobs, dry_run=True)
        assert dry.plan.erase_ids() == [old.id] and dry.expired.deleted == (old_root,)
        assert isinstance(store.get_payload(old.id), bytes)  # a dry run changes nothing
        with caplog.at_level(logging.INFO, logger="p2pmsg"):
            run = run_retention(cfg, store, c.world.now_ms + 25 * DAY_MS, identity=c.bob,
                                orgs=orgs, audit=audit, blobs=blobs)
        assert run.plan.erase_ids() == [old.id] and run.plan.blobs_deleted == 1
        assert blobs.roots() == [fresh_root]
        assert isinstance(store.get_payload(fresh.id), bytes)
        assert run.audit_pruned == 1  # the connection record, older than 5 days
        assert audit.verify() >= 2
        seq, digest = audit.head()
        [logged] = [r for r in caplog.records if r.getMessage() == "audit_head"]
        assert vars(logged)[_FIELDS] == {"seq": seq, "digest": digest.hex()}


def test_epoch_keys_never_reopen_a_shredded_epoch() -> None:
    c = Clinic()
    c.say(c.alice, "x")
    views = room_views(_loaded(c), c.world.org_states())
    opened = epoch_keys(views, c.bob)
    assert len(opened) == 1
    keyring = MemoryKeyring()
    keyring.forget(opened)
    assert epoch_keys(views, c.bob, keyring) == {}
    assert epoch_keys(views, Identity.generate()) == {}  # not a recipient: nothing opens


def _loaded(c: Clinic) -> MemoryStore:
    store = MemoryStore()
    c.load(store)
    return store


def test_retention_forgets_epoch_keys_no_stored_message_needs(tmp_path: Path) -> None:
    c = Clinic()
    c.say(c.alice, "old message")
    c.world.tick(10 * DAY_MS)
    c.rekey(c.alice)
    c.say(c.bob, "fresh message")
    store = _loaded(c)
    orgs = c.world.org_states()
    first, current = (e.id for e in c.world.room(c.topic).view.epochs)
    keyring = MemoryKeyring()
    for epoch_id, key in epoch_keys(room_views(store, orgs), c.bob).items():
        keyring.put(epoch_id, key)
    cfg = _gov(tmp_path, RetentionConfig(default_ms=5 * DAY_MS))
    with AuditLog(tmp_path / "audit.db", NODE) as audit:
        run = run_retention(cfg, store, c.world.now_ms, identity=c.bob, orgs=orgs,
                            audit=audit, keyring=keyring)
        [rec] = audit.query(kinds=[AuditKind.KEY_ROTATED])
    assert run.keys_forgotten == 1
    assert rec.details == {"forgotten": 1, "epoch_payloads": 1, "reason": "retention"}
    assert keyring.is_forgotten(first) and keyring.get(first) is None
    # the secret sealed to this node in the room log goes too; the current one stays
    assert store.get_payload(first) is PayloadState.ERASED
    assert keyring.get(current) is not None and isinstance(store.get_payload(current), bytes)
    again = run_retention(cfg, store, c.world.now_ms, identity=c.bob, orgs=orgs, audit=None,
                          keyring=keyring)
    assert again.keys_forgotten == 0


def test_daemon_governance_applies_redactions_on_a_relay(tmp_path: Path) -> None:
    """The daemon's periodic room refresh enforces redactions with no room key:
    a relay node of org A erases a redacted message's payload from clear refs."""
    c = Clinic()
    target = c.say(c.bob, "MARKER-wrong-patient")
    c.world.tick()
    c.world.append(c.bob, c.topic, compose_message(
        c.world.room(c.topic), c.bob, Redaction(target.id, "wrong patient"),
        seq=c.world.next_seq(c.bob, c.topic), now_ms=c.world.now_ms))
    relay = Identity.generate()
    cfg = governance_config(c, tmp_path, relay)
    store = _loaded(c)
    gov = Governance(cfg, relay, store, lambda: c.world.now_ms)
    try:
        assert store.get_payload(target.id) is PayloadState.ERASED  # at start-up already
        [rec] = gov.audit.query(kinds=[AuditKind.REDACTION])
        assert rec.details["target"] == target.id.hex()
        assert gov.refresh_rooms() == 1 and len(gov.audit.query(kinds=[AuditKind.REDACTION])) == 1
    finally:
        gov.close()
