"""Room state: deterministic membership, roles and epochs from a set of entries (pure).

Theory of operation
-------------------
A room is a topic whose id is ``room_topic(creation_payload)``. Its state is a pure
function :func:`resolve_room` of (the set of its entries with payloads, the
organisations' :class:`~p2pmsg.messaging.org.OrgState`):

1. The **creation entry** is the seq-1 entry whose ROOM_CREATE payload hashes to the
   topic and whose author is the creator it names. It is applied first. The creator
   is the first admin; initial members get their listed role (every initial member
   of a DIRECT room is admin). If the creator's organisation does not accept the
   entry, the room has no valid state at all.
2. Every other entry is applied in :func:`~p2pmsg.messaging.order.total_order`
   (causal, then HLC, then id), and checked **at its point of application**:

   * its author must be a member *at that point*, and the member's organisation
     must accept the entry (certificate valid at its time, not revoked);
   * MEMBER_ADD, MEMBER_REMOVE and MEMBER_ROLE need the author to be an admin at
     that point; MEMBER_LEAVE removes the author; any member may write
     EPOCH_KEYS, SEALED and unknown-kind payloads.

   Entries failing a check are *rejected* (listed with a :class:`Rejection`, never
   deleted). Two admins removing each other concurrently: the one ordered first
   wins, the second is no longer admin when its op is applied — on every node.
3. Entries whose payload is not available (not fetched yet, or erased) keep their
   place in the order and are applied with ``payload=None`` (no effect). Membership
   and epoch payloads must therefore never be purged (a governance rule).

Because the state is recomputed from the whole set, arrival order cannot matter;
tests/test_messaging_room.py checks that with hypothesis over many orders.

Use :class:`RoomState` to accumulate entries as they arrive (``apply``) and to ask
what the next epoch must contain (``rekey_reason``, ``active_members``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..entry import Entry
from ..errors import DecodeError
from ..hlc import physical_ms
from .order import order_key, total_order
from .org import OrgState
from .payloads import (
    EpochKeys,
    MemberAdd,
    MemberLeave,
    MemberRemove,
    MemberRole,
    RoomCreate,
    RoomKind,
    RoomPayload,
    RoomRole,
    Sealed,
    decode_room_payload,
    room_topic,
)

__all__ = [
    "Applied",
    "Epoch",
    "Member",
    "RekeyPolicy",
    "RekeyReason",
    "Rejection",
    "RoomState",
    "RoomView",
    "resolve_room",
]


class Rejection(enum.Enum):
    """Why an entry of a room had no effect. Values are stable strings."""

    NO_ROOM = "no_room"
    """No valid creation entry is known for this topic (yet)."""
    NOT_MEMBER = "not_member"
    NOT_CERTIFIED = "not_certified"
    """The author's organisation does not accept the entry (no valid cert, revoked)."""
    NOT_ADMIN = "not_admin"
    BAD_PAYLOAD = "bad_payload"
    TARGET_NOT_MEMBER = "target_not_member"
    ALREADY_MEMBER = "already_member"
    WRONG_TOPIC = "wrong_topic"


@dataclass(frozen=True, slots=True)
class Member:
    device: bytes
    org: bytes
    role: RoomRole
    since: bytes
    """Id of the entry that made the device a member (creation or MEMBER_ADD)."""


@dataclass(frozen=True, slots=True)
class Applied:
    """An accepted entry, in order, with what it carried and who its author was then."""

    entry: Entry
    payload: RoomPayload | None
    """None if the payload is not available on this node."""
    author_role: RoomRole
    """The author's role just *before* this entry was applied."""
    author_org: bytes


@dataclass(frozen=True, slots=True)
class Epoch:
    """An epoch of the room key: started by an accepted EPOCH_KEYS entry."""

    id: bytes
    author: bytes
    timestamp: int
    recipients: Mapping[bytes, bytes]
    """device -> sealed epoch secret."""
    index: int
    """0 for the first epoch, counting in the total order."""


@dataclass(frozen=True, slots=True)
class RoomView:
    """The resolved state of a room. Produced by :func:`resolve_room`."""

    topic: bytes
    create: RoomCreate | None
    members: Mapping[bytes, Member]
    applied: tuple[Applied, ...]
    """Accepted entries (the creation entry first) in the total order."""
    rejected: Mapping[bytes, Rejection]
    epochs: tuple[Epoch, ...]

    @property
    def exists(self) -> bool:
        return self.create is not None

    @property
    def current_epoch(self) -> Epoch | None:
        return self.epochs[-1] if self.epochs else None

    @property
    def order(self) -> tuple[bytes, ...]:
        """Ids of the accepted entries in application (and display) order."""
        return tuple(a.entry.id for a in self.applied)

    def admins(self) -> frozenset[bytes]:
        return frozenset(d for d, m in self.members.items() if m.role is RoomRole.ADMIN)


def _find_creation(
    topic: bytes, entries: Iterable[Entry], payloads: Mapping[bytes, bytes | None]
) -> tuple[Entry, RoomCreate] | None:
    found: list[tuple[Entry, RoomCreate]] = []
    for entry in entries:
        raw = payloads.get(entry.id)
        if entry.seq != 1 or raw is None or room_topic(raw) != topic:
            continue
        try:
            create = decode_room_payload(raw)
        except DecodeError:
            continue
        if isinstance(create, RoomCreate) and create.creator == entry.author:
            found.append((entry, create))
    return min(found, key=lambda pair: order_key(pair[0]), default=None)


def resolve_room(
    topic: bytes,
    items: Iterable[tuple[Entry, bytes | None]],
    orgs: Mapping[bytes, OrgState],
) -> RoomView:
    """The room's state from (entry, payload or None) pairs and the orgs' states.

    A pure, deterministic function of the *set* of pairs (a payload given for an
    entry wins over None). Entries of other topics are rejected (WRONG_TOPIC).
    """
    payloads: dict[bytes, bytes | None] = {}
    entries: dict[bytes, Entry] = {}
    rejected: dict[bytes, Rejection] = {}
    for entry, payload in items:
        if entry.topic != topic:
            rejected[entry.id] = Rejection.WRONG_TOPIC
            continue
        entries[entry.id] = entry
        if payloads.get(entry.id) is None:
            payloads[entry.id] = payload
    creation = _find_creation(topic, entries.values(), payloads)
    if creation is None:
        rejected.update(dict.fromkeys(entries, Rejection.NO_ROOM))
        return RoomView(topic, None, {}, (), rejected, ())
    first, create = creation
    creator_org = orgs.get(create.creator_org)
    if creator_org is None or not creator_org.accepts_entry(first):
        rejected.update(dict.fromkeys(entries, Rejection.NO_ROOM))
        return RoomView(topic, None, {}, (), rejected, ())
    return _Resolver(topic, orgs, payloads, rejected).run(first, create, entries)


@dataclass
class _Resolver:
    topic: bytes
    orgs: Mapping[bytes, OrgState]
    payloads: Mapping[bytes, bytes | None]
    rejected: dict[bytes, Rejection]
    members: dict[bytes, Member] = field(default_factory=dict)
    applied: list[Applied] = field(default_factory=list)
    epochs: list[Epoch] = field(default_factory=list)

    def run(self, first: Entry, create: RoomCreate, entries: Mapping[bytes, Entry]) -> RoomView:
        self.members[create.creator] = Member(
            create.creator, create.creator_org, RoomRole.ADMIN, first.id
        )
        for spec in create.members:
            role = RoomRole.ADMIN if create.room_kind is RoomKind.DIRECT else spec.role
            self.members[spec.device] = Member(spec.device, spec.org, role, first.id)
        self.applied.append(Applied(first, create, RoomRole.ADMIN, create.creator_org))
        rest = [e for eid, e in entries.items() if eid != first.id]
        for entry in total_order(rest):
            problem = self._apply(entry)
            if problem is not None:
                self.rejected[entry.id] = problem
        return RoomView(
            self.topic, create, dict(self.members), tuple(self.applied), self.rejected,
            tuple(self.epochs),
        )

    def _apply(self, entry: Entry) -> Rejection | None:
        author = self.members.get(entry.author)
        if author is None:
            return Rejection.NOT_MEMBER
        org = self.orgs.get(author.org)
        if org is None or not org.accepts_entry(entry):
            return Rejection.NOT_CERTIFIED
        raw = self.payloads.get(entry.id)
        payload: RoomPayload | None = None
        if raw is not None:
            try:
                payload = decode_room_payload(raw)
            except DecodeError:
                return Rejection.BAD_PAYLOAD
        is_admin = author.role is RoomRole.ADMIN
        match payload:
            case RoomCreate():
                return Rejection.BAD_PAYLOAD
            case MemberAdd(device, org_id, role):
                if not is_admin:
                    return Rejection.NOT_ADMIN
                if device in self.members:
                    return Rejection.ALREADY_MEMBER
                self.members[device] = Member(device, org_id, role, entry.id)
            case MemberRemove(device) | MemberRole(device, _):
                if not is_admin:
                    return Rejection.NOT_ADMIN
                target = self.members.get(device)
                if target is None:
                    return Rejection.TARGET_NOT_MEMBER
                if isinstance(payload, MemberRemove):
                    del self.members[device]
                else:
                    self.members[device] = Member(
                        device, target.org, payload.role, target.since
                    )
            case MemberLeave():
                del self.members[entry.author]
            case EpochKeys(recipients):
                self.epochs.append(Epoch(
                    entry.id, entry.author, entry.header.timestamp, dict(recipients),
                    len(self.epochs),
                ))
            case _:  # Sealed, UnknownPayload, or payload unavailable: kept, no state change
                pass
        self.applied.append(Applied(entry, payload, author.role, author.org))
        return None


class RekeyReason(enum.Enum):
    """Why the current epoch must not be used for the next message."""

    NO_EPOCH = "no_epoch"
    MEMBERSHIP_CHANGED = "membership_changed"
    """The active member devices differ from the epoch's recipients (an add, remove,
    leave, revocation or certificate expiry happened)."""
    EXPIRED = "expired"
    MESSAGE_LIMIT = "message_limit"


@dataclass(frozen=True, slots=True)
class RekeyPolicy:
    """When to start a new epoch besides membership changes."""

    max_age_ms: int = 7 * 24 * 3600 * 1000
    """Rotate an epoch older than this (by its HLC physical time)."""
    max_messages: int = 10_000
    """Rotate after this many sealed messages in one epoch."""


class RoomState:
    """A room's entries as they arrive, with the resolved :class:`RoomView`.

    The node calls :meth:`apply` with every (entry, payload) it stores for the
    topic, and :meth:`update_orgs` whenever an organisation's control topic changes.
    Both recompute the view from the whole set (deterministic whatever the arrival
    order; cost O(n log n) per call — incremental application is a later
    optimisation).
    """

    def __init__(
        self,
        topic: bytes,
        orgs: Mapping[bytes, OrgState] | None = None,
        policy: RekeyPolicy | None = None,
    ) -> None:
        self.topic = topic
        self.policy = policy or RekeyPolicy()
        self._orgs: dict[bytes, OrgState] = dict(orgs or {})
        self._items: dict[bytes, tuple[Entry, bytes | None]] = {}
        self._view = resolve_room(topic, (), self._orgs)

    @property
    def view(self) -> RoomView:
        return self._view

    @property
    def orgs(self) -> Mapping[bytes, OrgState]:
        return self._orgs

    @property
    def members(self) -> Mapping[bytes, Member]:
        return self._view.members

    def items(self) -> list[tuple[Entry, bytes | None]]:
        """Every (entry, payload) known, in no particular order."""
        return list(self._items.values())

    def apply(self, items: Iterable[tuple[Entry, bytes | None]]) -> RoomView:
        """Add entries (with payload, or None if not available yet) and re-resolve."""
        for entry, payload in items:
            known = self._items.get(entry.id)
            if known is None or known[1] is None:
                self._items[entry.id] = (entry, payload)
        self._view = resolve_room(self.topic, self._items.values(), self._orgs)
        return self._view

    def update_orgs(self, orgs: Mapping[bytes, OrgState]) -> RoomView:
        """Replace or add organisation states (by root) and re-resolve."""
        self._orgs.update(orgs)
        self._view = resolve_room(self.topic, self._items.values(), self._orgs)
        return self._view

    def active_members(self, now_ms: int) -> dict[bytes, Member]:
        """Members whose device is active in its organisation now (next epoch's recipients)."""
        result: dict[bytes, Member] = {}
        for device, member in self._view.members.items():
            org = self._orgs.get(member.org)
            if org is not None and org.is_active(device, now_ms):
                result[device] = member
        return result

    def rekey_reason(self, now_ms: int) -> RekeyReason | None:
        """Why a new epoch is needed before the next message, or None."""
        epoch = self._view.current_epoch
        if epoch is None:
            return RekeyReason.NO_EPOCH
        if set(epoch.recipients) != set(self.active_members(now_ms)):
            return RekeyReason.MEMBERSHIP_CHANGED
        if now_ms - physical_ms(epoch.timestamp) >= self.policy.max_age_ms:
            return RekeyReason.EXPIRED
        sealed = sum(
            1 for a in self._view.applied
            if isinstance(a.payload, Sealed) and a.payload.epoch == epoch.id
        )
        if sealed >= self.policy.max_messages:
            return RekeyReason.MESSAGE_LIMIT
        return None
