"""Audit records for membership, key and device changes, derived from resolved state.

Theory of operation
-------------------
Membership entries (room creation, add, remove, leave, role change, relay add and
remove), epoch-key
entries and device revocations are plaintext structure: every node that stores a
room or an organisation's control topic — members and relays — can resolve them.
:func:`record_changes` walks the resolved views (:class:`~p2pmsg.messaging.room.RoomView`
in their deterministic order, :class:`~p2pmsg.messaging.org.OrgState`) and writes
one audit record per *accepted* change it has not recorded before:

=====================  ==========================================================
MEMBERSHIP_CHANGED     ``ref`` (entry id), ``topic``, ``action`` (create, add,
                       remove, leave, role, relay_add, relay_remove), ``by`` and
                       ``device`` (short ids), ``role``, ``members`` (count
                       after the change, creation); relay actions name ``node``
                       (short id) and, for relay_add, ``org`` (short id)
KEY_ROTATED            ``ref`` (the EPOCH_KEYS entry id = epoch id), ``topic``,
                       ``by``, ``recipients`` (count)
DEVICE_REVOKED         ``ref`` (hash of org, device, effective time), ``org``,
                       ``device`` (short ids), ``effective_ms``
=====================  ==========================================================

Only identifiers and counts — never the revocation's free-text reason, never
content. The record time is when this node learnt of the change (entries arrive
by replication); the entry's own time is in the log.

**Exactly once, across restarts:** the ``ref`` of every record already in the log
is the dedup key (:func:`recorded_refs` reads them back at start-up). Changes
stamped before the audit log's last prune cut-off are not recorded again after a
restart (``since_ms``: the ``before_ms`` of the newest ``audit_pruned`` record).
The daemon calls it from :meth:`p2pmsg.daemon.governance.Governance.refresh_rooms`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from ..entry import Entry
from ..hlc import physical_ms
from ..identity import short_id
from ..messaging.org import OrgState
from ..messaging.payloads import (
    EpochKeys,
    MemberAdd,
    MemberLeave,
    MemberRemove,
    MemberRole,
    RelayAdd,
    RelayRemove,
    RoomCreate,
)
from ..messaging.room import RoomView
from .audit import AuditKind, AuditLog, Detail

__all__ = ["CHANGE_KINDS", "record_changes", "recorded_refs", "prune_cutoff"]

CHANGE_KINDS = (AuditKind.MEMBERSHIP_CHANGED, AuditKind.KEY_ROTATED, AuditKind.DEVICE_REVOKED)


def recorded_refs(audit: AuditLog) -> set[str]:
    """The ``ref`` of every change record in ``audit`` (the dedup set)."""
    return {str(r.details["ref"]) for r in audit.query(kinds=CHANGE_KINDS)
            if isinstance(r.details.get("ref"), str)}


def prune_cutoff(audit: AuditLog) -> int:
    """The ``before_ms`` of the newest ``audit_pruned`` record, or 0."""
    pruned = audit.query(kinds=[AuditKind.AUDIT_PRUNED])
    value = pruned[-1].details.get("before_ms") if pruned else 0
    return value if isinstance(value, int) else 0


def _room_change(entry: Entry, payload: object, view: RoomView) -> tuple[AuditKind,
                                                                         dict[str, Detail]]:
    base: dict[str, Detail] = {"ref": entry.id.hex(), "topic": view.topic.hex(),
                               "by": short_id(entry.author)}
    match payload:
        case RoomCreate(members=members):
            return AuditKind.MEMBERSHIP_CHANGED, {**base, "action": "create",
                                                  "members": len(members) + 1}
        case MemberAdd(device, _, role):
            return AuditKind.MEMBERSHIP_CHANGED, {**base, "action": "add",
                                                  "device": short_id(device),
                                                  "role": role.value}
        case MemberRemove(device):
            return AuditKind.MEMBERSHIP_CHANGED, {**base, "action": "remove",
                                                  "device": short_id(device)}
        case MemberRole(device, role):
            return AuditKind.MEMBERSHIP_CHANGED, {**base, "action": "role",
                                                  "device": short_id(device),
                                                  "role": role.value}
        case MemberLeave():
            return AuditKind.MEMBERSHIP_CHANGED, {**base, "action": "leave",
                                                  "device": short_id(entry.author)}
        case RelayAdd(node, org):
            return AuditKind.MEMBERSHIP_CHANGED, {**base, "action": "relay_add",
                                                  "node": short_id(node), "org": short_id(org)}
        case RelayRemove(node):
            return AuditKind.MEMBERSHIP_CHANGED, {**base, "action": "relay_remove",
                                                  "node": short_id(node)}
        case EpochKeys(recipients):
            return AuditKind.KEY_ROTATED, {**base, "recipients": len(recipients)}
    raise ValueError("not a membership or key change")


_CHANGES = (RoomCreate, MemberAdd, MemberRemove, MemberRole, MemberLeave, EpochKeys, RelayAdd,
            RelayRemove)


def record_changes(audit: AuditLog, views: Iterable[RoomView],
                   orgs: Mapping[bytes, OrgState], now_ms: int, seen: set[str], *,
                   since_ms: int = 0) -> int:
    """Append a record for every accepted change not in ``seen`` (updated in place);
    returns how many were written. See the module docstring."""
    written = 0
    for view in views:
        for applied in view.applied:
            entry = applied.entry
            if (not isinstance(applied.payload, _CHANGES) or entry.id.hex() in seen
                    or physical_ms(entry.header.timestamp) < since_ms):
                continue
            kind, details = _room_change(entry, applied.payload, view)
            audit.append(kind, now_ms, **details)
            seen.add(entry.id.hex())
            written += 1
    for org, state in sorted(orgs.items()):
        for device in sorted(state.devices.values(), key=lambda d: d.key):
            for rev in device.revocations:
                ref = hashlib.blake2b(org + device.key + rev.effective_ts.to_bytes(8, "big"),
                                      digest_size=16).hexdigest()
                effective = physical_ms(rev.effective_ts)
                if ref in seen or effective < since_ms:
                    continue
                audit.append(AuditKind.DEVICE_REVOKED, now_ms, ref=ref, org=short_id(org),
                             device=short_id(device.key), effective_ms=effective)
                seen.add(ref)
                written += 1
    return written
