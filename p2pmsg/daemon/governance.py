"""The daemon's ``[governance]`` section: federation list, local policy, audit, retention.

Theory of operation
-------------------
:func:`parse_governance` validates the section into a :class:`GovernanceConfig`
(called by :func:`p2pmsg.daemon.config.load_config`). When the section is present,
``p2pmsg run`` builds a :class:`Governance`:

* a :class:`~p2pmsg.governance.FederationRegistry` for the configured issuer,
  loaded from ``federation_list`` (a list that does not verify is refused, logged
  and audited; the node then refuses every peer — fail closed), optionally capped
  by ``max_age_hours`` (a list older than that counts as stale even if its own
  maximum age is longer);
* a :class:`~p2pmsg.governance.GovernancePolicy` with the configured
  :class:`~p2pmsg.governance.LocalPolicy`, used as the node's policy and (through
  :func:`p2pmsg.node.audited_allow_peer`) as the transports' handshake check;
* the :class:`~p2pmsg.governance.AuditLog` (``audit_log``, default
  ``data_dir/audit.db``) passed to the node as its audit sink.

:meth:`Governance.run` then loops every ``reload_interval`` seconds: reloads the
list file when its mtime changed (SIGHUP forces it: :meth:`Governance.reload`),
logs and audits the change, re-resolves the rooms in the store to feed
``update_room`` and to audit every membership, epoch-key and device-revocation
change once (:mod:`p2pmsg.governance.changes`) (membership changes close sessions
that lost access through :meth:`p2pmsg.node.Node.revalidate_sessions`), and logs
one ``federation_stale`` line at ERROR when the list stops being fresh (every peer
is refused until a newer list is installed). Every ``purge_interval`` seconds it runs
:func:`~p2pmsg.governance.run_purge` with the retention settings.

A retention run (:func:`run_retention`, shared with ``p2pmsg retention purge``) is
four steps: the payload purge (with the blob store and every epoch key this node
can open — from its keyring and the rooms' EPOCH_KEYS entries — so the
attachments of purged messages go too), the registration-time sweep of blobs
(:func:`~p2pmsg.governance.attachments.expire_blobs`: blobs no readable message
names), forgetting in the keyring the epoch keys no stored message needs any more
(:func:`unneeded_epochs`; the current epoch of each room is kept), the audit log's
own retention (``audit_retention_days``, :meth:`~p2pmsg.governance.AuditLog.prune`),
and finally the audit head written to
the structured log (``event=audit_head``) as an anchor outside the audit file.

The room views of the periodic refresh are kept incrementally
(:class:`~p2pmsg.daemon.rooms.StoreRooms`): each interval reads only what is new.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from ..blobs import BlobStore
from ..certs import PERSON_ID_SIZE
from ..entry import Entry
from ..errors import DecodeError, P2PMsgError, Reason
from ..governance.attachments import BlobExpiry, expire_blobs
from ..governance.audit import AuditKind, AuditLog
from ..governance.changes import prune_cutoff, record_changes, recorded_refs
from ..governance.erasure import shred_epoch_payloads
from ..governance.federation import (
    FederationError,
    FederationList,
    FederationRegistry,
    FederationStatus,
)
from ..governance.policy import GovernancePolicy, LocalDefault, LocalPolicy
from ..governance.records import ProcessingConfig
from ..governance.redaction import enforce_redactions
from ..governance.retention import (
    DAY_MS,
    PurgePlan,
    RetentionConfig,
    collect_candidates,
    device_orgs,
    plan_purge,
    run_purge,
)
from ..hlc import physical_ms
from ..identity import Identity, short_id
from ..messaging.org import OrgState, control_topic
from ..messaging.payloads import Sealed
from ..messaging.room import RoomView, resolve_room
from ..messaging.timeline import open_epoch_key
from ..messenger.invitations import open_invitation
from ..messenger.keyring import Keyring
from ..store.base import Store
from ..store.tail import TopicTail
from .logsetup import event
from .metrics import PurgeCounts
from .rooms import StoreRooms

__all__ = [
    "MODES",
    "Governance",
    "GovernanceConfig",
    "RetentionRun",
    "epoch_keys",
    "load_federation_file",
    "org_states",
    "parse_governance",
    "room_views",
    "run_retention",
    "unneeded_epochs",
]

MODES = {"allow-all-listed": LocalDefault.ALLOW_LISTED, "deny-all": LocalDefault.DENY_ALL}
SCALAR_FIELDS: dict[str, type] = {
    "federation_list": str, "issuer": str, "max_age_hours": float, "mode": str,
    "audit_log": str, "retention_days": float, "purge_interval": float,
    "reload_interval": float, "controller": str, "dpo_contact": str,
    "audit_retention_days": float,
}
"""Fields that ``P2PMSG_GOVERNANCE_<FIELD>`` can override."""
LIST_FIELDS = ("allow_orgs", "deny_orgs", "allow_keys", "deny_keys", "allow_persons",
               "deny_persons", "legal_holds")
TABLE_FIELDS = ("room_retention_days", "org_retention_days")
_MAX_LIST_FILE = 4 * 1024 * 1024
_NO_CONTROLLER = "(controller not configured)"
_NO_DPO = "(DPO contact not configured)"

log = logging.getLogger("p2pmsg.daemon")


class _ConfigError(P2PMsgError):
    """Re-raised by config.py as its ConfigError (avoids an import cycle)."""


@dataclass(frozen=True, slots=True)
class GovernanceConfig:
    """A validated ``[governance]`` section (docs/operations.md lists every field)."""

    federation_list: Path
    issuer: bytes
    local: LocalPolicy
    audit_log: Path
    retention: RetentionConfig
    max_age_ms: int | None = None
    purge_interval: float = 3600.0
    reload_interval: float = 30.0
    controller: str = _NO_CONTROLLER
    dpo_contact: str = _NO_DPO
    room_names: Mapping[bytes, str] = field(default_factory=dict)
    audit_retention_ms: int | None = None
    """Audit records older than this are pruned (signed checkpoint); None = keep."""

    def processing(self, flist: FederationList | None) -> ProcessingConfig:
        """The Art. 30 inputs: recipients from the list, periods from retention."""
        return ProcessingConfig(
            controller=self.controller, dpo_contact=self.dpo_contact,
            recipients=flist.organisations if flist is not None else (),
            retention=self.retention, room_names=dict(self.room_names))


def _key(text: object, where: str, size: int = 32) -> bytes:
    if not isinstance(text, str):
        raise _ConfigError(f"{where}: expected {2 * size} hex digits")
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise _ConfigError(f"{where}: not hexadecimal") from None
    if len(raw) != size:
        raise _ConfigError(f"{where}: expected {2 * size} hex digits ({size} bytes)")
    return raw


def _number(value: object, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _ConfigError(f"{where}: expected a number")
    if not low <= float(value) <= high:
        raise _ConfigError(f"{where}: between {low:g} and {high:g}")
    return float(value)


def _days_ms(value: object, where: str) -> int:
    return int(_number(value, where, 0, 100_000) * DAY_MS)


def parse_governance(
    raw: Mapping[str, Any], base: Path, data_dir: Path,
    resolve_topic: Callable[[str, str], bytes],
) -> GovernanceConfig:
    """Validate the ``[governance]`` table. ``resolve_topic(text, where)`` maps a
    configured topic name or hex id to its id. Raises an error naming the field."""
    known = set(SCALAR_FIELDS) | set(LIST_FIELDS) | set(TABLE_FIELDS)
    for key in raw:
        if key not in known:
            raise _ConfigError(
                f"governance.{key}: unknown field (known: {', '.join(sorted(known))})")
    for key, kind in SCALAR_FIELDS.items():
        if key in raw and kind is str and not isinstance(raw[key], str):
            raise _ConfigError(f"governance.{key}: expected str")
    if "federation_list" not in raw or "issuer" not in raw:
        raise _ConfigError("governance: 'federation_list' (path) and 'issuer' (hex) are required")
    mode_text = raw.get("mode", "allow-all-listed")
    if mode_text not in MODES:
        raise _ConfigError(f"governance.mode: one of {', '.join(MODES)}, got {mode_text!r}")
    lists: dict[str, frozenset[bytes]] = {}
    for name in LIST_FIELDS:
        value = raw.get(name, [])
        if not isinstance(value, list):
            raise _ConfigError(f"governance.{name}: expected an array")
        if name == "legal_holds":
            lists[name] = frozenset(resolve_topic(v, f"governance.{name}") if isinstance(v, str)
                                    else _key(v, f"governance.{name}") for v in value)
        else:
            size = PERSON_ID_SIZE if name.endswith("_persons") else 32
            lists[name] = frozenset(_key(v, f"governance.{name}", size) for v in value)
    try:
        local = LocalPolicy(MODES[mode_text], lists["allow_orgs"], lists["deny_orgs"],
                            lists["allow_keys"], lists["deny_keys"],
                            lists["allow_persons"], lists["deny_persons"])
    except ValueError as exc:
        raise _ConfigError(f"governance: {exc}") from None
    tables: dict[str, dict[bytes, int | None]] = {}
    for name in TABLE_FIELDS:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            raise _ConfigError(f"governance.{name}: expected a table")
        out: dict[bytes, int | None] = {}
        for k, v in value.items():
            where = f"governance.{name}.{k}"
            topic = resolve_topic(k, where) if name == "room_retention_days" else _key(k, where)
            out[topic] = _days_ms(v, where)
        tables[name] = out
    default_ms = _days_ms(raw["retention_days"], "governance.retention_days") \
        if "retention_days" in raw else None
    max_age_ms = int(_number(raw["max_age_hours"], "governance.max_age_hours", 0.001, 1e6)
                     * 3_600_000) if "max_age_hours" in raw else None
    audit = Path(raw["audit_log"]).expanduser() if "audit_log" in raw else data_dir / "audit.db"
    flist = Path(raw["federation_list"]).expanduser()
    return GovernanceConfig(
        federation_list=flist if flist.is_absolute() else base / flist,
        issuer=_key(raw["issuer"], "governance.issuer"),
        local=local,
        audit_log=audit if audit.is_absolute() else base / audit,
        retention=RetentionConfig(default_ms, tables["org_retention_days"],
                                  tables["room_retention_days"], lists["legal_holds"]),
        max_age_ms=max_age_ms,
        purge_interval=_number(raw.get("purge_interval", 3600.0),
                               "governance.purge_interval", 1, 86_400 * 30),
        reload_interval=_number(raw.get("reload_interval", 30.0),
                                "governance.reload_interval", 0.05, 86_400),
        controller=raw.get("controller", _NO_CONTROLLER),
        dpo_contact=raw.get("dpo_contact", _NO_DPO),
        audit_retention_ms=_days_ms(raw["audit_retention_days"],
                                    "governance.audit_retention_days")
        if "audit_retention_days" in raw else None,
    )


class _CappedRegistry(FederationRegistry):
    """A registry that also treats a list older than the operator's cap as stale."""

    __slots__ = ("cap_ms",)

    def __init__(self, issuer: bytes, cap_ms: int | None) -> None:
        super().__init__(issuer)
        self.cap_ms = cap_ms

    def status(self, now_ms: int) -> tuple[FederationStatus, str]:
        status, reason = super().status(now_ms)
        current = self.current
        if (status is FederationStatus.KNOWN and current is not None and self.cap_ms is not None
                and now_ms - current.issued_ms >= self.cap_ms):
            return FederationStatus.STALE, (
                f"federation list version {current.version} is older than "
                f"governance.max_age_hours: refusing all peers until a newer list is installed")
        return status, reason


def load_federation_file(path: Path) -> bytes:
    """The bytes of a federation list file (OSError if unreadable; size-limited)."""
    with path.open("rb") as fh:
        data = fh.read(_MAX_LIST_FILE + 1)
    if len(data) > _MAX_LIST_FILE:
        raise DecodeError(Reason.TOO_LARGE, f"{path}: larger than {_MAX_LIST_FILE} bytes")
    return data


def org_states(store: Store, orgs: list[bytes]) -> dict[bytes, OrgState]:
    """Resolve each organisation's control topic from the store."""
    return {org: OrgState.from_entries(org, TopicTail().pull(store, control_topic(org)))
            for org in orgs}


def room_views(store: Store, orgs: Mapping[bytes, OrgState]) -> list[RoomView]:
    """Every room stored here (topics that resolve to a room), control topics excluded."""
    controls = {control_topic(o) for o in orgs}
    views: list[RoomView] = []
    for topic in store.topics():
        if topic in controls:
            continue
        view = resolve_room(topic, TopicTail().pull(store, topic), orgs)
        if view.exists:
            views.append(view)
    return views


def epoch_keys(views: Iterable[RoomView], identity: Identity,
               keyring: Keyring | None = None) -> dict[bytes, bytes]:
    """Every epoch AEAD key this node can use, by epoch id: from ``keyring`` where it
    has them, else opened from the rooms' EPOCH_KEYS entries with ``identity``.
    Epochs the keyring marks forgotten (crypto-shredded) are never re-opened."""
    keys: dict[bytes, bytes] = {}
    for view in views:
        for epoch in view.epochs:
            if keyring is not None and keyring.is_forgotten(epoch.id):
                continue
            key = keyring.get(epoch.id) if keyring is not None else None
            if key is None:
                key = open_epoch_key(view.topic, epoch, identity)
            if key is not None:
                keys[epoch.id] = key
    return keys


def unneeded_epochs(store: Store, views: Iterable[RoomView], retention: RetentionConfig,
                    now_ms: int) -> list[bytes]:
    """Epochs past their room's retention limit that no stored message payload uses
    any more and that are not their room's current epoch (rooms under legal hold
    are skipped): after a purge their keys only widen what a stolen key file or
    device could open, so retention shreds them. The age test keeps an epoch a
    late message may still arrive in."""
    out: list[bytes] = []
    for view in views:
        current = view.current_epoch
        limit = retention.limit_for(view.topic, None)
        if limit is None or view.topic in retention.legal_holds:
            continue
        used = {a.payload.epoch for a in view.applied
                if isinstance(a.payload, Sealed)
                and isinstance(store.get_payload(a.entry.id), bytes)}
        out += [e.id for e in view.epochs
                if e.id not in used and (current is None or e.id != current.id)
                and physical_ms(e.timestamp) < now_ms - limit]
    return out


@dataclass(frozen=True, slots=True)
class RetentionRun:
    """What one :func:`run_retention` did (or, with ``dry_run``, would do)."""

    plan: PurgePlan
    expired: BlobExpiry
    audit_pruned: int
    keys_forgotten: int = 0
    """Epoch keys newly forgotten in the keyring (no stored message needs them)."""


def run_retention(
    config: GovernanceConfig, store: Store, now_ms: int, *,
    identity: Identity, orgs: Mapping[bytes, OrgState], audit: AuditLog | None,
    blobs: BlobStore | None = None, keyring: Keyring | None = None, dry_run: bool = False,
) -> RetentionRun:
    """One retention run: payloads (and their attachments), expired blobs, old audit
    records; then the audit head goes to the structured log. See the module docstring."""
    authors = device_orgs(orgs)
    if dry_run:
        plan = plan_purge(collect_candidates(store, authors), config.retention, now_ms)
        expired = (expire_blobs(blobs, config.retention, now_ms, dry_run=True)
                   if blobs is not None else BlobExpiry((), 0, 0))
        return RetentionRun(plan, expired, 0)
    views = room_views(store, orgs)
    keys = epoch_keys(views, identity, keyring)  # attachments, and edits folded in
    plan = run_purge(store, config.retention, now_ms, authors=authors, audit=audit,
                     blobs=blobs, keys=keys)
    forgotten: list[bytes] = []
    if keyring is not None and plan.erase:
        forgotten = [e for e in unneeded_epochs(store, views, config.retention, now_ms)
                     if not keyring.is_forgotten(e)]
        keyring.forget(forgotten)
        shredded = shred_epoch_payloads(store, views, forgotten, identity.public_key)
        if forgotten and audit is not None:
            audit.append(AuditKind.KEY_ROTATED, now_ms, forgotten=len(forgotten),
                         epoch_payloads=len(shredded), reason="retention")
    expired = (expire_blobs(blobs, config.retention, now_ms, audit=audit)
               if blobs is not None else BlobExpiry((), 0, 0))
    pruned = 0
    if audit is not None:
        if config.audit_retention_ms is not None:
            pruned = audit.prune(now_ms - config.audit_retention_ms, now_ms)
        seq, digest = audit.head()
        event("audit_head", seq=seq, digest=digest.hex())
    return RetentionRun(plan, expired, pruned, len(forgotten))


class Governance:
    """What ``p2pmsg run`` builds from ``[governance]``; close it after the node stops."""

    def __init__(self, config: GovernanceConfig, identity: Identity, store: Store,
                 wall_clock: Callable[[], int], *, counts: PurgeCounts | None = None) -> None:
        self.config = config
        self.identity = identity
        self.store = store
        self.blobs: BlobStore | None = None
        """Set by the daemon when it has a blob store: purges then delete attachments."""
        self.keyring: Keyring | None = None
        """The node's keyring (the one object the API's messenger uses): retention
        reads epoch keys from it and forgets the epochs no stored message needs."""
        self.clock = wall_clock
        self.registry = _CappedRegistry(config.issuer, config.max_age_ms)
        self.audit = AuditLog(config.audit_log, identity)
        self.policy = GovernancePolicy(self.registry, wall_clock, config.local)
        self._mtime: int | None = None
        self._stale_logged = False
        self.counts = counts if counts is not None else PurgeCounts()
        """What retention, redactions and the change audit did since start (metrics)."""
        self._rooms = StoreRooms(store)
        self._invite_tail = TopicTail()
        self._invite_pending: list[tuple[Entry, bytes]] = []
        """Invitations whose author was not certified here yet (:meth:`invited_rooms`)."""
        self._last_views: dict[bytes, RoomView] = {}
        """The stored rooms' views, kept up to date incrementally (daemon/rooms.py)."""
        self._recorded = recorded_refs(self.audit)
        self._cutoff = prune_cutoff(self.audit)
        """The audit log's last prune cut-off (changes before it are not re-recorded)."""
        """Refs of the membership/key/device changes already in the audit log."""
        self.reload(force=True)
        self.refresh_rooms()

    def close(self) -> None:
        self.audit.close()

    # -- federation list -----------------------------------------------------------
    def reload(self, *, force: bool = False) -> bool:
        """Re-read the list file if it changed (or ``force``). True if a new list is in."""
        path = self.config.federation_list
        try:
            mtime = path.stat().st_mtime_ns
            if not force and mtime == self._mtime:
                return False
            self._mtime = mtime
            data = load_federation_file(path)
        except OSError as exc:
            event("federation_list_unreadable", logging.ERROR, path=str(path),
                  error=exc.strerror or str(exc))
            return False
        now = self.clock()
        try:
            changed = self.registry.accept(data, now)
        except (DecodeError, FederationError) as exc:
            event("federation_list_refused", logging.ERROR, path=str(path),
                  reason=str(exc.reason), detail=exc.detail)
            self.audit.append(AuditKind.FEDERATION_LIST_REFUSED, now, reason=str(exc.reason),
                              detail=exc.detail[:200])
            self.check_fresh()
            return False
        if not changed:
            return False
        current = self.registry.current
        assert current is not None
        event("federation_list_loaded", version=current.version,
              organisations=len(current.organisations), issuer=short_id(current.issuer))
        self.audit.append(AuditKind.FEDERATION_LIST_CHANGED, now, version=current.version,
                          organisations=len(current.organisations),
                          issuer=short_id(current.issuer), expires_ms=current.expires_ms())
        self._stale_logged = False
        self.policy.notify_changed()
        return True

    def check_fresh(self) -> bool:
        """Log (once per transition) when the list is not fresh; True if it is."""
        status, reason = self.registry.status(self.clock())
        if status is FederationStatus.KNOWN:
            self._stale_logged = False
            return True
        if not self._stale_logged:
            self._stale_logged = True
            event("federation_stale", logging.ERROR, status=status.value, reason=reason)
            self.policy.notify_changed()  # open sessions are closed: fail closed
        return False

    # -- rooms and retention -----------------------------------------------------------
    def _orgs(self) -> dict[bytes, OrgState]:
        current = self.registry.current
        ids = [o.org_id for o in current.organisations] if current is not None else []
        return org_states(self.store, ids)

    def refresh_rooms(self) -> int:
        """Feed every stored room's current membership to the policy; audit the
        changes and apply the redactions of the rooms whose view changed since the
        last call (views are kept incrementally, so unchanged rooms cost nothing)."""
        orgs = self._orgs()
        self.policy.update_persons(orgs)
        views = self._rooms.views(orgs)
        changed = [v for v in views if self._last_views.get(v.topic) is not v]
        self._last_views = {v.topic: v for v in views}
        for view in changed:
            self.policy.update_room(view)
        written = record_changes(self.audit, changed, orgs, self.clock(), self._recorded,
                                 since_ms=self._cutoff)
        self.counts.changes += written
        if written:
            event("changes_audited", records=written)
        if changed:
            self.counts.redactions += self.enforce_redactions(changed)
        return len(views)

    def invited_rooms(self, org_id: bytes) -> list[bytes]:
        """Rooms this node was newly invited to (invitations sealed to its key in its
        organisation's control topic — a room admin's ``add_relay`` or ``add_member``
        writes one), from an active device of a listed organisation; each is made
        known to the policy (:meth:`~p2pmsg.governance.GovernancePolicy.expect_room`)
        so the node may ask its peers for it. Reads only the control-topic entries
        new since the last call, plus those whose author was not yet certified here.
        For nodes without the API's messenger, which does the same for its device
        (:meth:`p2pmsg.messenger.Messenger.accept_invitations`)."""
        own = self.identity.public_key
        new = [(e, p) for e, p in self._invite_tail.pull(self.store, control_topic(org_id))
               if e.author != own and p is not None]
        candidates = self._invite_pending + new
        if not candidates:
            return []
        now = self.clock()
        active = {device: org for org, state in self._orgs().items()
                  for device in state.active_devices(now)}
        rooms: list[bytes] = []
        self._invite_pending = []
        for entry, payload in candidates:
            inviter_org = active.get(entry.author)
            if inviter_org is None:  # not yet certified here: looked at again next time
                self._invite_pending.append((entry, payload))
                continue
            invitation = open_invitation(self.identity, payload)
            if invitation is not None:
                self.policy.expect_room(invitation.topic,
                                        (inviter_org, org_id, *invitation.orgs))
                rooms.append(invitation.topic)
        return rooms

    def enforce_redactions(self, views: list[RoomView]) -> int:
        """Apply every room's redactions on this node (members with their epoch keys,
        relays from the clear refs of SEALED v2 redactions); audited. Idempotent."""
        keys = epoch_keys(views, self.identity, self.keyring)
        done = enforce_redactions(self.store, views, keys=keys, blobs=self.blobs,
                                  audit=self.audit, now_ms=self.clock())
        changed = [r for r in done if r.changed]
        if changed:
            event("redactions_applied", redactions=len(changed),
                  payloads=sum(len(r.erased) for r in changed),
                  blobs=sum(r.blobs_deleted for r in changed))
        return len(changed)

    def purge(self) -> PurgePlan:
        """One retention run (:func:`run_retention`, audited per room)."""
        run = run_retention(self.config, self.store, self.clock(), identity=self.identity,
                            orgs=self._orgs(), audit=self.audit, blobs=self.blobs,
                            keyring=self.keyring)
        plan = run.plan
        if run.audit_pruned:
            self._cutoff = prune_cutoff(self.audit)
        self.counts.record(len(plan.erase), plan.held,
                           blobs=plan.blobs_deleted + len(run.expired.deleted),
                           keys=run.keys_forgotten, audit_pruned=run.audit_pruned)
        event("purge", erased=len(plan.erase), held=plan.held,
              kept_structure=plan.kept_structure, blobs=plan.blobs_deleted,
              blobs_expired=len(run.expired.deleted), audit_pruned=run.audit_pruned,
              keys_forgotten=run.keys_forgotten)
        return plan

    async def run(self) -> None:
        """The periodic loop: reload check, freshness, rooms, purge timer."""
        next_purge = trio.current_time() + self.config.purge_interval
        while True:
            await trio.sleep(self.config.reload_interval)
            self.reload()
            self.check_fresh()
            self.refresh_rooms()
            if trio.current_time() >= next_purge:
                self.purge()
                next_purge = trio.current_time() + self.config.purge_interval
