"""Governance policy: federation list + local allow/deny + need-to-know per topic (pure).

Theory of operation
-------------------
:class:`GovernancePolicy` implements :class:`p2pmsg.policy.Policy`, so the node and
the sync machine use it unchanged. Its two questions are answered in stages, the
TI-Messenger way:

``allow_peer(peer)`` (at connection, after the transport authenticated the key)
  1. **federation** — the trusted list (:class:`~.federation.FederationRegistry`)
     must be fresh and name the peer's node key (fail closed: STALE/NO_LIST refuse
     everyone);
  2. **local policy** (:class:`LocalPolicy`) — allow-all-listed or deny-all, with
     exceptions per organisation, per person (the pseudonymous person id of a
     version-2 certificate, :mod:`p2pmsg.certs`) and per key (a node or device
     key; the most specific rule wins: key, then person, then organisation, then
     the default). An organisation that is not admitted itself but has a person
     on the allow list is admitted *for that person*: its nodes may connect, and
     need-to-know (below) counts only the allowed persons' memberships.

``may_read(peer, topic)`` (for every topic a peer asks for), after ``allow_peer``:
  3. **need-to-know** — true only if

     * the topic is a room (known from :meth:`GovernancePolicy.update_room`) and the
       peer's organisation has a *current* member device in it that the local
       policy lets count (:meth:`LocalPolicy.member_counts`: not a denied person;
       in an organisation admitted only for some persons, one of those), or the
       peer is a relay of that room (see "Relays" below); or
     * the topic is the control topic of an organisation on the current federation
       list (root-signed certificates and revocations: every partner needs them to
       verify devices, including before the first shared room exists — the privacy
       trade-off is documented in docs/gdpr.md, "Control topics").

     A room this node was *invited* to is known provisionally from the invitation
     (:meth:`GovernancePolicy.expect_room`) until its own entries arrive.

**Relays.** A room admin declares relays *in the room* (RELAY_ADD / RELAY_REMOVE
entries, :attr:`~p2pmsg.messaging.room.RoomView.relays`: node key -> organisation),
so the declaration is replicated, resolved deterministically at its place in the
room's total order on every node, and audited (:mod:`.changes`, actions
``relay_add`` / ``relay_remove``). :meth:`GovernancePolicy.update_room` takes the
view's relays as the room's *declared-in-room* relays, replacing the previous
view's (so a RELAY_REMOVE takes effect at the next update and open sessions lose
the room through the change listeners). Such a relay may read the room only while
the federation list names its node key under the organisation the declaration
gives (a node key moved to another organisation is not a relay any more).
:meth:`GovernancePolicy.declare_relay` remains for library users and tests: it
adds a *local* relay that no view replaces or removes (any listed organisation);
a node reads the room if it is a relay in either set. A relay node itself asks
its peers for a room it relays only once its own policy knows the room: before
the room's entries reach it, its operator makes it known provisionally with
:meth:`GovernancePolicy.expect_room` (the member organisations), as an invitation
does for a member device.

Anything else — unknown topics, rooms the peer's organisation has no part in — is
denied. An organisation therefore never receives a single entry of such a room,
even over a connection to a member (tests/test_governance_policy.py shows it at the
protocol level).

Time: the policy itself reads no clock; it is constructed with a ``clock``
callable returning milliseconds (the node passes wall-clock time, tests a counter).
Every answer can be explained with :meth:`GovernancePolicy.decide_peer`, whose
reason strings go to the audit log.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ..messaging.org import OrgState, control_topic
from ..messaging.room import RoomView
from .federation import FederationRegistry, FederationStatus

__all__ = [
    "GovernancePolicy",
    "LocalDefault",
    "LocalPolicy",
    "PeerDecision",
]


class LocalDefault(enum.Enum):
    """The local policy's rule for organisations and keys without an exception."""

    ALLOW_LISTED = "allow_listed"
    """Every organisation in the federation list may connect (exceptions deny)."""
    DENY_ALL = "deny_all"
    """Nobody may connect (exceptions allow)."""


@dataclass(frozen=True, slots=True)
class LocalPolicy:
    """The operator's own allow/deny rules on top of the federation list.

    Exceptions override the default; a key exception overrides an organisation
    exception (so "deny org X except this device" and "allow org Y except this
    node" both work). Being allowed here never admits a peer the federation list
    does not name.
    """

    default: LocalDefault = LocalDefault.ALLOW_LISTED
    allow_orgs: frozenset[bytes] = frozenset()
    deny_orgs: frozenset[bytes] = frozenset()
    allow_keys: frozenset[bytes] = frozenset()
    """Node or person-device keys allowed despite the default or their organisation."""
    deny_keys: frozenset[bytes] = frozenset()
    allow_persons: frozenset[bytes] = frozenset()
    """Person ids (16 bytes) allowed: their devices may connect, and an organisation
    otherwise not admitted is admitted for the rooms these persons are in."""
    deny_persons: frozenset[bytes] = frozenset()
    """Person ids denied: their devices may not connect and their room memberships
    do not let their organisation's nodes read a room."""

    def __post_init__(self) -> None:
        if (self.allow_orgs & self.deny_orgs or self.allow_keys & self.deny_keys
                or self.allow_persons & self.deny_persons):
            raise ValueError("an organisation, person or key is both allowed and denied")

    def org_admitted(self, org: bytes) -> bool:
        """Whether ``org`` is admitted by the organisation rules and the default."""
        if org in self.deny_orgs:
            return False
        return org in self.allow_orgs or self.default is LocalDefault.ALLOW_LISTED

    def member_counts(self, org: bytes, person: bytes | None) -> bool:
        """Whether a room member of ``org`` (with ``person``, if known) counts for
        need-to-know: the person rules first, then the organisation's admission."""
        if person is not None and person in self.deny_persons:
            return False
        if person is not None and person in self.allow_persons:
            return True
        return self.org_admitted(org)

    def decide(self, key: bytes, org: bytes, person: bytes | None = None,
               org_persons: frozenset[bytes] = frozenset()) -> tuple[bool, str]:
        """(allowed, reason) for a peer ``key`` of organisation ``org``; ``person`` is
        the key's own person (a person's device), ``org_persons`` the persons known
        in ``org`` (an organisation with an allowed person is admitted for it)."""
        if key in self.deny_keys:
            return False, "key denied by local policy"
        if key in self.allow_keys:
            return True, "key allowed by local policy"
        if person is not None and person in self.deny_persons:
            return False, "person denied by local policy"
        if person is not None and person in self.allow_persons:
            return True, "person allowed by local policy"
        if not self.org_admitted(org) and org_persons & self.allow_persons:
            return True, "organisation admitted for its allowed persons"
        if org in self.deny_orgs:
            return False, "organisation denied by local policy"
        if org in self.allow_orgs:
            return True, "organisation allowed by local policy"
        if self.default is LocalDefault.ALLOW_LISTED:
            return True, "listed organisation (allow-all-listed)"
        return False, "not an exception to deny-all"


@dataclass(frozen=True, slots=True)
class PeerDecision:
    """Why a peer may or may not connect (for logs and the audit log)."""

    allowed: bool
    status: FederationStatus
    org: bytes | None
    reason: str


@dataclass
class _Room:
    orgs: frozenset[bytes]
    members: tuple[tuple[bytes, bytes], ...] = ()
    """(device, org) of the view's members, kept to recount when rules change."""
    relays: set[bytes] = field(default_factory=set)
    """Node keys declared relays locally (:meth:`GovernancePolicy.declare_relay`)."""
    view_relays: Mapping[bytes, bytes] = field(default_factory=dict)
    """node key -> organisation: the relays the room's latest view declares."""
    expected: frozenset[bytes] = frozenset()
    """Organisations an invitation says take part (:meth:`GovernancePolicy.expect_room`),
    kept until the room's own entries show them all (then the view alone counts)."""
    viewed: bool = False
    """True once ``update_room`` gave a real view (the store then decides)."""


class GovernancePolicy:
    """The node's :class:`~p2pmsg.policy.Policy`: federation, local rules, need-to-know.

    Keep it fed: call :meth:`update_room` whenever a room's view changes (the node
    already recomputes :class:`~p2pmsg.messaging.room.RoomState` on every stored
    entry); the room's relays come with its view (RELAY_ADD entries), and
    :meth:`declare_relay` adds local ones. A membership or relay
    change takes effect for new sessions (the sync machine asks ``may_read`` at
    handshake); every change also calls the listeners registered with
    :meth:`add_change_listener` — the node registers its
    :meth:`~p2pmsg.node.Node.revalidate_sessions`, which closes open sessions whose
    organisation lost a room they were granted (the peer reconnects without it).
    """

    def __init__(
        self,
        federation: FederationRegistry,
        clock: Callable[[], int],
        local: LocalPolicy | None = None,
        rooms: Iterable[RoomView] = (),
    ) -> None:
        self.federation = federation
        self.local = local or LocalPolicy()
        self._clock = clock
        self._rooms: dict[bytes, _Room] = {}
        self._persons: dict[bytes, bytes] = {}
        """device -> person (from :meth:`update_persons`)."""
        self._org_persons: dict[bytes, frozenset[bytes]] = {}
        self._listeners: list[Callable[[], None]] = []
        self.version = 0
        """Counts changes that can narrow or widen access (see :meth:`notify_changed`)."""
        for view in rooms:
            self.update_room(view)

    # --- change notification -------------------------------------------------------
    def add_change_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every change of who may read what.

        The node registers :meth:`p2pmsg.node.Node.revalidate_sessions` here so that
        open sessions lose topics their organisation no longer may read."""
        self._listeners.append(callback)

    def remove_change_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def notify_changed(self) -> None:
        """Tell listeners access may have changed. Called by the feeding methods; call
        it yourself after replacing :attr:`local` or accepting a new federation list."""
        self.version += 1
        for callback in list(self._listeners):
            callback()

    # --- feeding -------------------------------------------------------------------
    def update_room(self, view: RoomView) -> None:
        """Record which organisations currently have a member device in the room, and
        which nodes the room declares relays (replacing the previous view's relays;
        relays from :meth:`declare_relay` are kept).

        A provisional entry from :meth:`expect_room` is kept (added to the view's
        organisations) until the view names every expected organisation: a view
        resolved from the first replicated entries may not show the invitee yet."""
        room = self._rooms.get(view.topic)
        if room is None:
            room = self._rooms[view.topic] = _Room(frozenset())
        room.viewed = True
        room.members = tuple((m.device, m.org) for m in view.members.values())
        relays_changed = room.view_relays != view.relays
        if relays_changed:
            room.view_relays = dict(view.relays)
        if self._recount(room) or relays_changed:
            self.notify_changed()

    def _recount(self, room: _Room) -> bool:
        """Recompute ``room.orgs`` from its members and the rules; True if changed."""
        if not room.viewed:
            return False
        seen = frozenset(org for device, org in room.members
                         if self.local.member_counts(org, self._persons.get(device)))
        if room.expected <= frozenset(org for _, org in room.members):
            room.expected = frozenset()
        orgs = seen | room.expected
        if room.orgs == orgs:
            return False
        room.orgs = orgs
        return True

    def update_persons(self, orgs: Mapping[bytes, OrgState]) -> None:
        """Learn which person each certified device belongs to (version-2
        certificates), for the per-person rules. The daemon calls it with the
        organisations' control-topic states whenever it re-resolves rooms."""
        persons = {key: device.person for state in orgs.values()
                   for key, device in state.devices.items() if device.person is not None}
        if persons == self._persons:
            return
        self._persons = persons
        by_org: dict[bytes, set[bytes]] = {}
        for state in orgs.values():
            for device in state.devices.values():
                if device.person is not None:
                    by_org.setdefault(state.root, set()).add(device.person)
        self._org_persons = {org: frozenset(p) for org, p in by_org.items()}
        for room in self._rooms.values():
            self._recount(room)
        self.notify_changed()

    def set_local(self, local: LocalPolicy) -> None:
        """Replace the local rules (recounting every room) and notify listeners."""
        self.local = local
        for room in self._rooms.values():
            self._recount(room)
        self.notify_changed()

    def expect_room(self, topic: bytes, orgs: Iterable[bytes]) -> None:
        """Provisionally let ``orgs`` take part in room ``topic`` before its entries
        are stored here.

        Why: a device invited to a room knows it only from the invitation, and the
        sync rule (ask a peer only for topics it may hold) would otherwise stop it
        from asking the inviter for the room. The messenger calls this when it
        accepts a valid invitation (author: an active device of a known org), with
        the inviter's and the invitee's organisations. The room's own view replaces
        it once it names them (:meth:`update_room`); once a view is known this is a
        no-op (an old invitation re-read after a restart cannot widen access)."""
        wanted = frozenset(orgs)
        room = self._rooms.get(topic)
        if room is None:
            room = self._rooms[topic] = _Room(frozenset())
        elif room.viewed:
            return  # the room's own entries are stored here: they decide
        missing = wanted - room.orgs
        if not missing:
            return
        room.expected |= missing
        room.orgs |= missing
        self.notify_changed()

    def forget_room(self, topic: bytes) -> None:
        if self._rooms.pop(topic, None) is not None:
            self.notify_changed()

    def declare_relay(self, topic: bytes, node_key: bytes) -> None:
        """Let ``node_key`` (a listed node) replicate ``topic`` as a relay (ciphertext only).

        A *local* declaration (library use, tests): it is not replicated nor audited,
        no view removes it, and it admits the key whatever organisation lists it. In a
        deployment an admin declares relays in the room instead (RELAY_ADD, fed
        through :meth:`update_room`); the two sets are combined (either admits)."""
        relays = self._rooms.setdefault(topic, _Room(frozenset())).relays
        if node_key not in relays:
            relays.add(node_key)
            self.notify_changed()

    def room_orgs(self, topic: bytes) -> frozenset[bytes]:
        room = self._rooms.get(topic)
        return room.orgs if room is not None else frozenset()

    def room_relays(self, topic: bytes) -> dict[bytes, bytes | None]:
        """node key -> organisation of ``topic``'s relays: the view's, and local ones
        (:meth:`declare_relay`, organisation None)."""
        room = self._rooms.get(topic)
        if room is None:
            return {}
        return {**dict.fromkeys(room.relays), **room.view_relays}

    # --- the Policy protocol -----------------------------------------------------------
    def decide_peer(self, peer_id: bytes) -> PeerDecision:
        """Stages 1 and 2 with the reason (log it; audit refused connections)."""
        found = self.federation.lookup(peer_id, self._clock())
        if not found.allowed or found.org is None:
            return PeerDecision(False, found.status, None, found.reason)
        org = found.org.org_id
        ok, why = self.local.decide(peer_id, org, self._persons.get(peer_id),
                                    self._org_persons.get(org, frozenset()))
        return PeerDecision(ok, found.status, found.org.org_id, why)

    def allow_peer(self, peer_id: bytes) -> bool:
        return self.decide_peer(peer_id).allowed

    def may_read(self, peer_id: bytes, topic: bytes) -> bool:
        decision = self.decide_peer(peer_id)
        if not decision.allowed or decision.org is None:
            return False
        org = decision.org
        room = self._rooms.get(topic)
        if room is not None:
            return (org in room.orgs or peer_id in room.relays
                    or room.view_relays.get(peer_id) == org)
        return self._may_read_control(org, topic)

    def _may_read_control(self, org: bytes, topic: bytes) -> bool:
        # Control topics hold root-signed certificates and revocations: every
        # federation partner needs them to verify devices, and a first shared room
        # cannot be created without the member's certificate (docs/gdpr.md,
        # "Control topics"). So any listed organisation may read any listed one's.
        flist = self.federation.current
        if flist is None:
            return topic == control_topic(org)
        return any(topic == control_topic(o.org_id) for o in flist.organisations)

    def readable_topics(self, peer_id: bytes, topics: Iterable[bytes]) -> list[bytes]:
        """The subset of ``topics`` that ``peer_id`` may read (for breach triage)."""
        return [t for t in topics if self.may_read(peer_id, t)]
