"""Membership, key and device-revocation changes are audited exactly once.

Derived from the resolved room and org state (members and relays alike), with
identifiers and counts only; a restarted daemon (new Governance over the same
audit log) does not record them again, and a pruned window is not re-recorded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from governance_helpers import Clinic, governance_config

from p2pmsg.daemon.governance import Governance
from p2pmsg.entry import Entry
from p2pmsg.governance.audit import AuditKind, AuditLog
from p2pmsg.governance.changes import prune_cutoff, record_changes, recorded_refs
from p2pmsg.identity import Identity, short_id
from p2pmsg.messaging import control_topic
from p2pmsg.messaging.compose import compose_remove
from p2pmsg.messaging.room import RoomView
from p2pmsg.messenger.invitations import compose_invitation
from p2pmsg.store.memory import MemoryStore

NODE = Identity.from_seed(b"\x0b" * 32)


def _store(c: Clinic) -> MemoryStore:
    store = MemoryStore()
    c.load(store)
    return store


def _last(c: Clinic) -> tuple[list[Entry], dict[bytes, bytes]]:
    entry, payload = c.world.topics[c.topic][-1]
    assert payload is not None
    return [entry], {entry.id: payload}


def _kinds(audit: AuditLog) -> list[tuple[AuditKind, object]]:
    return [(r.kind, r.details.get("action")) for r in audit.query(
        kinds=[AuditKind.MEMBERSHIP_CHANGED, AuditKind.KEY_ROTATED, AuditKind.DEVICE_REVOKED])]


def test_changes_are_recorded_once_with_ids_and_counts(tmp_path: Path) -> None:
    c = Clinic()
    w = c.world
    w.append(c.alice, c.topic, compose_remove(w.room(c.topic), c.alice, c.bert.public_key))
    c.rekey(c.alice)
    w.revoke(c.a, c.bob)
    view = w.room(c.topic).view
    with AuditLog(tmp_path / "audit.db", NODE) as audit:
        seen = recorded_refs(audit)
        now = w.now_ms  # records are stamped when this node learns of the change
        assert record_changes(audit, [view], w.org_states(), now, seen) == 5
        assert _kinds(audit) == [
            (AuditKind.MEMBERSHIP_CHANGED, "create"), (AuditKind.KEY_ROTATED, None),
            (AuditKind.MEMBERSHIP_CHANGED, "remove"), (AuditKind.KEY_ROTATED, None),
            (AuditKind.DEVICE_REVOKED, None)]
        remove = audit.query(kinds=[AuditKind.MEMBERSHIP_CHANGED])[1]
        assert remove.details["device"] == short_id(c.bert.public_key)
        assert remove.details["by"] == short_id(c.alice.public_key)
        [rev] = audit.query(kinds=[AuditKind.DEVICE_REVOKED])
        assert rev.details["device"] == short_id(c.bob.public_key)
        assert set(rev.details) == {"ref", "org", "device", "effective_ms"}  # no reason text
        # again, and after a "restart" (the dedup set read back from the log): nothing
        assert record_changes(audit, [view], w.org_states(), now, seen) == 0
        assert record_changes(audit, [view], w.org_states(), now, recorded_refs(audit)) == 0
        # after the records are pruned, changes before the cut-off stay unrecorded
        assert audit.prune(before_ms=now + 1, at_ms=now + 2) == 5
        assert recorded_refs(audit) == set() and prune_cutoff(audit) == now + 1
        assert record_changes(audit, [view], w.org_states(), now + 3, recorded_refs(audit),
                              since_ms=prune_cutoff(audit)) == 0


def test_daemon_governance_audits_changes_and_not_twice_after_restart(tmp_path: Path) -> None:
    c = Clinic()
    relay = Identity.generate()
    cfg = governance_config(c, tmp_path, relay)
    store = _store(c)
    gov = Governance(cfg, relay, store, lambda: c.world.now_ms)
    try:
        assert _kinds(gov.audit) == [(AuditKind.MEMBERSHIP_CHANGED, "create"),
                                     (AuditKind.KEY_ROTATED, None)]
        # nothing new in the store: no room is planned or audited again
        planned: list[int] = []

        def count(views: list[RoomView]) -> int:
            planned.append(len(views))
            return 0

        gov.enforce_redactions = count  # type: ignore[method-assign]
        assert gov.refresh_rooms() == 1 and planned == []
        c.say(c.alice, "new")
        store.append(*_last(c))
        assert gov.refresh_rooms() == 1 and planned == [1]
    finally:
        gov.close()
    c.world.revoke(c.b, c.bert)
    store = _store(c)
    again = Governance(dataclasses.replace(cfg), relay, store, lambda: c.world.now_ms)
    try:
        assert [k for k, _ in _kinds(again.audit)] == [
            AuditKind.MEMBERSHIP_CHANGED, AuditKind.KEY_ROTATED, AuditKind.DEVICE_REVOKED]
        assert again.audit.verify() == len(again.audit.query())
    finally:
        again.close()


def test_daemon_takes_room_invitations_for_a_node_without_messenger(tmp_path: Path) -> None:
    """add_relay invites the relay node; a daemon without the API's messenger opens
    invitations sealed to its key (from active devices of listed orgs only) and
    lets its policy expect the room, so the node asks its peers for it."""
    c = Clinic()
    relay = Identity.generate()
    w = c.world
    w.append(c.alice, control_topic(c.a.id), compose_invitation(relay.public_key, c.topic))
    stranger = Identity.generate()  # not certified anywhere: its invitation is ignored
    other_room = b"\x77" * 32
    w.append(stranger, control_topic(c.a.id), compose_invitation(relay.public_key, other_room))
    cfg = governance_config(c, tmp_path, relay)
    store = MemoryStore()
    for topic, items in w.topics.items():  # the relay holds only the control topics
        if topic != c.topic:
            store.append([e for e, _ in items], {e.id: p for e, p in items if p is not None})
    gov = Governance(cfg, relay, store, lambda: w.now_ms)
    try:
        assert gov.invited_rooms(c.a.id) == [c.topic]
        assert c.a.id in gov.policy.room_orgs(c.topic)
        assert gov.policy.room_orgs(other_room) == frozenset()
        assert gov.invited_rooms(c.a.id) == []  # each invitation once
    finally:
        gov.close()
