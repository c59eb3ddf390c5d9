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
     EPOCH_KEYS, SEALED and unknown-kind payloads;
   * RELAY_ADD and RELAY_REMOVE need an admin too; RELAY_ADD of a node that is a
     relay already is ALREADY_RELAY, RELAY_REMOVE of a node that is not one is
     TARGET_NOT_RELAY.

   Entries failing a check are *rejected* (listed with a :class:`Rejection`, never
   deleted). Two admins removing each other concurrently: the one ordered first
   wins, the second is no longer admin when its op is applied — on every node.
3. Entries whose payload is not available (not fetched yet, or erased) keep their
   place in the order and are applied with ``payload=None`` (no effect). Membership
   payloads must therefore never be purged (a governance rule); an *old* epoch's
   payload may be erased on purpose (crypto-shredding,
   :func:`p2pmsg.governance.erasure.shred_epoch_payloads`): that epoch then drops
   out of this node's view, which is the point.

**Members are principals.** Payloads name device keys, but a device whose
organisation certifies it for a person (:meth:`OrgState.person_of`) makes that
*person* the member: every device the same organisation certifies for the person
(:meth:`OrgState.person_devices`, active or not) is a member device with the
person's role and ``since``, may write once its own certificate accepts the entry,
and receives epoch keys while active. MEMBER_REMOVE and MEMBER_ROLE naming any of
the person's devices act on the person; MEMBER_LEAVE by any of them removes the
person; MEMBER_ADD of a device whose person is already a member is
ALREADY_MEMBER. Devices without a person are their own principal, as before. A
person id counts only within its organisation (principal = ``org || person``).
The org states are an input, so membership stays a pure function of (entries, org
states): a device certified later for a member person becomes a member device
when the org state is updated — :meth:`RoomState.active_members` then differs
from the epoch's recipients (MEMBERSHIP_CHANGED) and the next send seals the new
epoch to it; revoking one device rotates the epoch away from it only.

**Relays are not members.** :attr:`RoomView.relays` (node key -> organisation)
lists the nodes an admin declared relays (RELAY_ADD, until a RELAY_REMOVE): the
governance policy lets them replicate the room's ciphertext (need-to-know), and
nothing else — a relay's own entries are NOT_MEMBER, it is never an epoch
recipient and :meth:`RoomState.active_members` never lists it, so declaring or
removing a relay does not rotate the epoch.

Because the state is a function of the whole set, arrival order cannot matter;
tests/test_messaging_room.py checks that with hypothesis over many orders.

Use :class:`RoomState` to accumulate entries as they arrive (``apply``) and to ask
what the next epoch must contain (``rekey_reason``, ``active_members``). It applies
an entry that is *newest* in the order directly to the kept state (O(1)) and
re-resolves from the whole set only otherwise; its docstring gives the argument
why both give the same view.
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
    RelayAdd,
    RelayRemove,
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
    ALREADY_RELAY = "already_relay"
    """RELAY_ADD of a node that is a relay of the room already."""
    TARGET_NOT_RELAY = "target_not_relay"
    """RELAY_REMOVE of a node that is not a relay of the room."""


@dataclass(frozen=True, slots=True)
class Member:
    """One member device. Devices of one member *person* share org, role, since, person."""

    device: bytes
    org: bytes
    role: RoomRole
    since: bytes
    """Id of the entry that made the device (or its person) a member (creation or MEMBER_ADD)."""
    person: bytes | None = None
    """The person the device belongs to in ``org`` (None: the device is the member)."""

    @property
    def principal(self) -> bytes:
        """Who the member is: ``org || person`` for a person's device, else the device key."""
        return self.device if self.person is None else self.org + self.person


@dataclass(frozen=True, slots=True)
class Applied:
    """An accepted entry, in order, with what it carried and who its author was then."""

    entry: Entry
    payload: RoomPayload | None
    """None if the payload is not available on this node."""
    author_role: RoomRole
    """The author's role just *before* this entry was applied."""
    author_org: bytes
    author_person: bytes | None = None
    """The author device's person in ``author_org`` (None: a device-only member)."""


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
    relays: Mapping[bytes, bytes] = field(default_factory=dict)
    """node key -> organisation of the nodes declared relays (RELAY_ADD, not removed
    since): they may replicate the room's ciphertext; they are not members."""

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
    relays: dict[bytes, bytes] = field(default_factory=dict)

    def run(self, first: Entry, create: RoomCreate, entries: Mapping[bytes, Entry]) -> RoomView:
        self._admit(create.creator, create.creator_org, RoomRole.ADMIN, first.id)
        for spec in create.members:  # a second device of an earlier principal: no effect
            role = RoomRole.ADMIN if create.room_kind is RoomKind.DIRECT else spec.role
            self._admit(spec.device, spec.org, role, first.id)
        creator = self.members[create.creator]
        self.applied.append(Applied(first, create, RoomRole.ADMIN, create.creator_org,
                                    creator.person))
        rest = [e for eid, e in entries.items() if eid != first.id]
        for entry in total_order(rest):
            problem = self._apply(entry)
            if problem is not None:
                self.rejected[entry.id] = problem
        return RoomView(
            self.topic, create, dict(self.members), tuple(self.applied), self.rejected,
            tuple(self.epochs), dict(self.relays),
        )

    @classmethod
    def resume(
        cls, view: RoomView, orgs: Mapping[bytes, OrgState], payloads: Mapping[bytes, bytes | None]
    ) -> _Resolver:
        """A resolver whose state is ``view``'s, ready to :meth:`_apply` entries that
        come after all of the view's (used by :meth:`RoomState.apply`).

        Keep in step with :meth:`run`: every piece of state :meth:`_apply` reads must
        be restored from the view here (tests/test_messaging_room.py compares the
        incremental state with :func:`resolve_room` and fails otherwise)."""
        return cls(view.topic, orgs, payloads, dict(view.rejected), dict(view.members),
                   list(view.applied), list(view.epochs), dict(view.relays))

    def _admit(self, device: bytes, org_id: bytes, role: RoomRole, since: bytes) -> bool:
        """Make ``device`` — or, if ``org_id`` certifies it for a person, that person
        with every device ``org_id`` ever certified for them — a member. False (and no
        change) if any of those devices is a member already."""
        org = self.orgs.get(org_id)
        person = None if org is None else org.person_of(device)
        devices = [device]
        if org is not None and person is not None:
            devices += [d for d in org.person_devices(person) if d != device]
        if any(d in self.members for d in devices):
            return False
        for d in devices:
            self.members[d] = Member(d, org_id, role, since, person)
        return True

    def _principal_devices(self, member: Member) -> list[bytes]:
        """The member devices of ``member``'s principal (its person's, or just itself)."""
        if member.person is None:
            return [member.device]
        return [d for d, m in self.members.items()
                if m.person == member.person and m.org == member.org]

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
                if not self._admit(device, org_id, role, entry.id):
                    return Rejection.ALREADY_MEMBER
            case MemberRemove(device) | MemberRole(device, _):
                if not is_admin:
                    return Rejection.NOT_ADMIN
                target = self.members.get(device)
                if target is None:
                    return Rejection.TARGET_NOT_MEMBER
                for d in self._principal_devices(target):  # the person, not one device
                    if isinstance(payload, MemberRemove):
                        del self.members[d]
                    else:
                        m = self.members[d]
                        self.members[d] = Member(d, m.org, payload.role, m.since, m.person)
            case MemberLeave():
                for d in self._principal_devices(author):
                    del self.members[d]
            case RelayAdd(node, org_id):
                if not is_admin:
                    return Rejection.NOT_ADMIN
                if node in self.relays:
                    return Rejection.ALREADY_RELAY
                self.relays[node] = org_id
            case RelayRemove(node):
                if not is_admin:
                    return Rejection.NOT_ADMIN
                if self.relays.pop(node, None) is None:
                    return Rejection.TARGET_NOT_RELAY
            case EpochKeys(recipients):
                self.epochs.append(Epoch(
                    entry.id, entry.author, entry.header.timestamp, dict(recipients),
                    len(self.epochs),
                ))
            case _:  # Sealed, UnknownPayload, or payload unavailable: kept, no state change
                pass
        self.applied.append(Applied(entry, payload, author.role, author.org, author.person))
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
    :attr:`view` is always exactly ``resolve_room(topic, items(), orgs)``, whatever
    the arrival order and batching.

    **Incremental application.** :func:`~.order.total_order` is Kahn's algorithm
    with a min-heap keyed by ``order_key`` = (HLC timestamp, id). Let X be a new
    entry of the topic such that

    (a) ``order_key(X)`` is greater than the key of every entry known so far, and
    (b) no known entry names X (as a dep or backlink) — X has no known dependants.

    Then total_order over the known entries plus X is total_order over the known
    entries followed by X: by (b) X releases nobody, so the heap pops every other
    entry exactly as before; by (a) X, once released, loses every comparison in
    the heap, and the heap cannot run empty before the other entries are placed
    (that needs a cycle of hash links, i.e. a BLAKE2b preimage). (a) also keeps the
    creation entry (the smallest-keyed valid ROOM_CREATE) unchanged. So resolving
    the larger set replays the same applications and then applies X to the state
    reached after all the others — which is what this class keeps: it applies X
    to the kept resolver state (O(1), no re-decoding) and appends it to the view.

    Anything else re-resolves from the whole set (O(n log n)): an entry older than
    the newest known one (concurrent writes, sync catching up), one a known entry
    depends on, a payload arriving for an entry known without one, no valid room
    yet, and :meth:`update_orgs`. In a busy room where entries arrive in order (a
    device's own sends; a live peer) nearly every entry takes the fast path.
    :attr:`full_resolves` counts the others.

    :meth:`rekey_reason` reads a running count of SEALED entries per epoch, kept
    the same way (recounted on a full resolve).
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
        self._payloads: dict[bytes, bytes | None] = {}
        """Payloads of the topic's entries (what the resolver reads)."""
        self._named: set[bytes] = set()
        """Ids named as dep or backlink by a known entry of the topic."""
        self._newest: tuple[int, bytes] | None = None
        """The greatest order key among the known entries of the topic."""
        self._resolver: _Resolver | None = None
        self._sealed: dict[bytes, int] = {}
        """epoch id -> accepted SEALED entries naming it."""
        self.full_resolves = 0
        """How many times the view was recomputed from the whole set (a statistic)."""
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
        """Add entries (with payload, or None if not available yet); update the view.

        Entries newest in the order are applied incrementally, anything else
        re-resolves (see the class docstring)."""
        fresh: list[tuple[Entry, bytes | None]] = []
        full = False
        for entry, payload in items:
            known = self._items.get(entry.id)
            if known is not None:
                if known[1] is None and payload is not None:
                    self._items[entry.id] = (entry, payload)
                    if entry.topic == self.topic:
                        self._payloads[entry.id] = payload
                        full = True  # a payload for an entry applied without one
                continue
            self._items[entry.id] = (entry, payload)
            fresh.append((entry, payload))
        if not fresh and not full:
            return self._view
        fresh.sort(key=lambda pair: order_key(pair[0]))
        resolver = None if full else self._resolver
        full = resolver is None  # no valid room yet: every change re-resolves
        rejected: dict[bytes, Rejection] = {}
        for entry, payload in fresh:
            if entry.topic != self.topic:
                rejected[entry.id] = Rejection.WRONG_TOPIC
                continue
            key = order_key(entry)
            if resolver is not None and (
                entry.id in self._named or (self._newest is not None and key < self._newest)
            ):
                resolver = None
                full = True
            self._payloads[entry.id] = payload
            self._named.update(entry.header.deps)
            if entry.header.backlink is not None:
                self._named.add(entry.header.backlink)
            if self._newest is None or key > self._newest:
                self._newest = key
            if resolver is None:
                full = True
                continue
            before = len(resolver.applied)
            problem = resolver._apply(entry)
            if problem is not None:
                rejected[entry.id] = problem
            elif len(resolver.applied) > before:
                self._count_sealed(resolver.applied[-1])
        if full:
            return self._resolve()
        assert self._resolver is not None and self._view.create is not None
        r = self._resolver
        view = self._view
        if rejected:
            r.rejected.update(rejected)
        self._view = RoomView(
            self.topic, view.create, dict(r.members), tuple(r.applied),
            dict(r.rejected) if rejected else view.rejected,
            tuple(r.epochs) if len(r.epochs) != len(view.epochs) else view.epochs,
            dict(r.relays) if r.relays != view.relays else view.relays,
        )
        return self._view

    def update_orgs(self, orgs: Mapping[bytes, OrgState]) -> RoomView:
        """Replace or add organisation states (by root) and re-resolve."""
        self._orgs.update(orgs)
        return self._resolve()

    def sealed_count(self, epoch: bytes) -> int:
        """Accepted SEALED entries naming ``epoch`` (what MESSAGE_LIMIT counts)."""
        return self._sealed.get(epoch, 0)

    def _count_sealed(self, applied: Applied) -> None:
        if isinstance(applied.payload, Sealed):
            epoch = applied.payload.epoch
            self._sealed[epoch] = self._sealed.get(epoch, 0) + 1

    def _resolve(self) -> RoomView:
        """Recompute the view from the whole set; keep a resolver at its state."""
        self.full_resolves += 1
        view = resolve_room(self.topic, self._items.values(), self._orgs)
        self._view = view
        self._sealed = {}
        for applied in view.applied:
            self._count_sealed(applied)
        self._resolver = (_Resolver.resume(view, self._orgs, self._payloads)
                          if view.exists else None)
        return view

    def active_members(self, now_ms: int) -> dict[bytes, Member]:
        """Member devices active in their organisation now (next epoch's recipients):
        a member person contributes every active device of theirs."""
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
        if self.sealed_count(epoch.id) >= self.policy.max_messages:
            return RekeyReason.MESSAGE_LIMIT
        return None
