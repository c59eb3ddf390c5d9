"""The messenger: a trio facade tying a running node, the messaging rules and governance.

Theory of operation
-------------------
A :class:`Messenger` sits on an open :class:`~p2pmsg.node.Node` whose key **is the
device key** (the node signs every entry it appends, so the device writing to a room
must be the node; one node per device, and an organisation's always-on node is just
another node — a relay when it holds no room keys).

Nothing here decides anything: every state shown is computed from what the node
stores — ``OrgState`` per known organisation from its control topic, ``RoomState``
from the room topic — with the pure functions of :mod:`p2pmsg.messaging`. Writes go
through the ``compose_*`` functions, which refuse exactly what every receiving node
would reject when it applies the entry; the messenger adds no rule of its own.

Sending: the sealed payload is bound to the seq the entry will get, so the messenger
serialises its writes per room (a ``trio.Lock``) and computes ``head + 1`` right
before ``node.append``. If the current epoch may not be used (``RekeyRequired``: none
yet, membership changed, a device was revoked, too old, too full) it appends a new
epoch first and retries once.

Reading: :meth:`Messenger.messages` decrypts with the epoch keys held in the
:class:`~p2pmsg.messenger.keyring.Keyring` (opened from the room's EPOCH_KEYS entries
on first use; shredded epochs are never reopened). :meth:`Messenger.live` subscribes
to the room topic and yields every message that is new or changed (edited, redacted,
reacted to, or newly decryptable because its epoch arrived) after each new entry.

Cost: the messenger keeps a ``RoomState`` per room and an ``OrgState`` per org, the
contents it decrypted and the last timeline, and brings them up to date from the
store at each call (:meth:`Messenger._pull`: entries above the log heights read,
payloads that arrived since). New entries are applied, decrypted and folded
incrementally (O(new entries); out-of-order ones and org changes re-resolve the
room). A payload erased in the store (``store.erasures`` moved) or a frozen log
drops every cache, plaintext included (docs/api.md, "Cost").
:func:`open_messenger` runs a watcher subscribed to
every topic the node replicates: it wakes ``live`` and, if a
:class:`~p2pmsg.governance.GovernancePolicy` is given (or is the node's policy),
passes every room view to ``update_room`` after each change (every view the
messenger resolves for its own calls is passed too).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

import trio

from ..blobs import check_descriptor, describe
from ..certs import DeviceCertificate
from ..entry import Entry
from ..errors import LocalProtocolError, Reason, ValidationError
from ..governance.audit import AuditKind
from ..governance.policy import GovernancePolicy
from ..governance.redaction import RedactionResult, erase_redactions, redaction_audit_details
from ..hlc import COUNTER_BITS
from ..identity import short_id
from ..messaging import (
    Attachment,
    Content,
    Edit,
    FhirCommunication,
    Kind,
    Member,
    MemberSpec,
    Message,
    OrgState,
    Reaction,
    ReadReceipt,
    Redaction,
    RekeyPolicy,
    RekeyRequired,
    Reply,
    RoomKind,
    RoomRole,
    RoomState,
    Text,
    Timeline,
    compose_add,
    compose_certificate,
    compose_leave,
    compose_message,
    compose_rekey,
    compose_remove,
    compose_revocation,
    compose_role,
    control_topic,
    decrypt_timeline,
)
from ..messaging.compose import compose_relay_add, compose_relay_remove
from ..messaging.crypto import curve25519_public
from ..messaging.payloads import Sealed
from ..messaging.redaction import RedactionTombstone, plan_redactions
from ..messaging.room import Applied, Epoch, RoomView
from ..messaging.timeline import open_cached, open_epoch_key
from ..node import Node
from ..node.blobs import ProgressCallback
from ..store.tail import TopicTail
from .bootstrap import RoomPlan, plan_room
from .errors import UnknownDevice, UnknownRoom
from .history import compose_history_share, open_history_share
from .invitations import MAX_INVITATION_ORGS, compose_invitation, open_invitation
from .keyring import Keyring, MemoryKeyring

__all__ = ["Messenger", "Room", "RoomRef", "open_messenger"]

log = logging.getLogger("p2pmsg.messenger")


@dataclass(frozen=True, slots=True)
class Room:
    """A snapshot of a room as this device sees it. Re-read it after changes."""

    topic: bytes
    """The room id (its topic): pass it, or this object, to every messenger call."""
    kind: RoomKind
    creator: bytes
    members: Mapping[bytes, Member]
    """Current member devices -> (org, role)."""
    epoch: int | None
    """Index of the current epoch (0 = first), None before the first one."""
    joined: bool
    """True if this device is a member now."""
    inactive: frozenset[bytes] = frozenset()
    """Members not certified (yet) or revoked as replicated here: new epochs are not
    sealed to them. Non-empty right after creation usually means a certificate has
    not arrived yet (:meth:`Messenger.wait_certified`)."""
    name: str = ""
    """A **local** label given at creation on this device; not replicated (see docs/api.md)."""


RoomRef = Room | bytes
"""A room: its :class:`Room` snapshot or its topic id."""


_ATTACHMENT_KINDS = {k.name.lower(): k for k in (Kind.VOICE, Kind.IMAGE, Kind.DOCUMENT,
                                                  Kind.VIDEO)}


def _attachment_kind(kind: Kind | str) -> Kind:
    if isinstance(kind, str):
        if kind.lower() not in _ATTACHMENT_KINDS:
            raise ValueError(f"kind must be one of {sorted(_ATTACHMENT_KINDS)}")
        return _ATTACHMENT_KINDS[kind.lower()]
    if kind not in _ATTACHMENT_KINDS.values():
        raise ValueError("kind must be VOICE, IMAGE, DOCUMENT or VIDEO")
    return kind


def _topic(room: RoomRef) -> bytes:
    return room.topic if isinstance(room, Room) else room


def _extends(view: RoomView, old: RoomView) -> bool:
    """True if ``view`` is ``old`` with entries applied after all of old's.

    :class:`RoomState` keeps the :class:`Applied` objects of the entries applied
    before when it applies newer ones, and a full resolve creates new ones: so
    finding old's first and last at the same places identifies the prefix."""
    n = len(old.applied)
    return (0 < n <= len(view.applied) and view.create is old.create
            and view.applied[0] is old.applied[0] and view.applied[n - 1] is old.applied[n - 1])


Item = tuple[Entry, bytes | None]


@dataclass
class _Read:
    """How far the messenger has read one topic from the store (:meth:`Messenger._pull`)."""

    erasures: int | None
    """The store's erasure count when reading started (None: the store keeps none)."""
    frozen: int
    """How many logs were frozen for a bad signature when reading started."""
    tail: TopicTail = field(default_factory=TopicTail)
    """Heights read and entries still waiting for their payload."""


@dataclass
class _OrgCache:
    read: _Read
    items: dict[bytes, Item]
    state: OrgState


@dataclass
class _RoomCache:
    read: _Read
    state: RoomState
    orgs: int
    """The org generation (:attr:`Messenger._orgs_gen`) ``state`` was resolved with."""
    contents: dict[bytes, Content] = field(default_factory=dict)
    """Opened SEALED contents by entry id (decrypt once)."""
    key_ids: frozenset[bytes] = frozenset()
    """Epochs whose keys opened ``contents``; one missing later drops them all."""
    timeline: tuple[RoomView, dict[bytes, bytes], Timeline] | None = None
    """The last timeline with the view and keys it was folded from."""
    versions: list[tuple[Timeline, frozenset[bytes] | None]] = field(default_factory=list)
    """Recent timelines, oldest first, each with the ids of the messages that may
    differ from the one before it (None: folded anew, any may)."""
    positions: dict[bytes, int] = field(default_factory=dict)
    """Display position of each message of the last timeline (messages never move)."""
    planned: tuple[RoomView, dict[bytes, bytes]] | None = None
    """The view and keys redactions were last planned (and enforced) from."""
    folded: dict[bytes, bytes] | None = None
    """The store's folded links of the room (:meth:`Store.folded`: erased edits and
    reactions -> their message), read once per cache: every new link moves the
    store's erasure count, which drops this cache."""


_VERSIONS_KEPT = 32


@dataclass
class _Seen:
    """What one ``live`` loop has yielded: messages by id, and the timeline last diffed."""

    messages: dict[bytes, Message] = field(default_factory=dict)
    timeline: Timeline | None = None


class Messenger:
    """A device's view of its organisation and rooms, on top of a running node.

    Build one with :func:`open_messenger` (which also runs the governance feed), or
    directly on an open node. ``org`` is the device's organisation (root key);
    ``orgs`` every other organisation whose members it talks to — their control
    topics give the certificates and revocations needed to accept entries and seal
    epochs. The node must replicate those control topics and the room topics
    (:meth:`required_topics`, :meth:`missing_topics`).
    """

    def __init__(
        self,
        node: Node,
        org: bytes,
        *,
        orgs: Iterable[bytes] = (),
        keyring: Keyring | None = None,
        rekey_policy: RekeyPolicy | None = None,
        governance: GovernancePolicy | None = None,
        enforce_redactions: bool = True,
    ) -> None:
        self.node = node
        self.identity = node.identity
        self.device: bytes = node.id
        self.org = org
        self.orgs: tuple[bytes, ...] = tuple(sorted(set(orgs) | {org}))
        self.keyring: Keyring = keyring if keyring is not None else MemoryKeyring()
        self.rekey_policy = rekey_policy
        if governance is None and isinstance(node.policy, GovernancePolicy):
            governance = node.policy
        self.governance = governance
        self.enforce_redactions = enforce_redactions
        """Erase redacted payloads and attachments on this node (:meth:`apply_redactions`)."""
        self._redactions_seen: dict[bytes, tuple[int, int]] = {}
        """room topic -> (entries, missing payloads) when its redactions were last enforced."""
        self._names: dict[bytes, str] = {}
        self._locks: dict[bytes, trio.Lock] = {}
        self._version = 0
        self._changed = trio.lowlevel.ParkingLot()
        self._watching = False
        self._watch_nursery: trio.Nursery | None = None
        self._invites_seen: set[bytes] = set()
        self._invited: set[tuple[bytes, bytes]] = set()
        """(room topic, device) invitations this messenger wrote since it started."""
        self._devices_checked: dict[bytes, tuple[RoomView, int]] = {}
        """room topic -> (view, org generation) :meth:`invite_new_devices` last checked."""
        self._shares_seen: set[bytes] = set()
        self._shared: dict[tuple[bytes, bytes], bytes] = {}
        """(room topic, epoch id) -> epoch key shared by a device of this device's person
        (:meth:`share_history`); used only for epochs not sealed to this device."""
        self._topic_listeners: list[Callable[[bytes], None]] = []
        self._org_cache: dict[bytes, _OrgCache] = {}
        self._orgs_gen = 0
        """Bumped whenever a cached organisation state is replaced."""
        self._room_cache: dict[bytes, _RoomCache] = {}
        self._cache_marks: tuple[int | None, int] = (None, 0)
        """(store erasures, frozen logs) the caches were built under."""
        self._ensure_interest(control_topic(o) for o in self.orgs)

    def __repr__(self) -> str:
        return f"Messenger({short_id(self.device)})"

    # -- state (kept in step with the node's store) --------------------------------

    def _items(self, topic: bytes) -> list[tuple[Entry, bytes | None]]:
        """Every (entry, payload) of ``topic`` as the node shows it (uncached)."""
        return [(e, self.node.payload(e)) for e in self.node.read(topic)]

    def _new_read(self) -> _Read:
        erasures = getattr(self.node.store, "erasures", None)
        return _Read(erasures if isinstance(erasures, int) else None,
                     len(self.node.bad_signatures()))

    def _pull(self, topic: bytes, read: _Read) -> list[Item] | None:
        """What the store holds for ``topic`` beyond ``read`` (which is advanced):
        entries above the heights read (as :meth:`Node.read` shows them) and
        payloads that arrived for entries read without one. None if cached state
        must be dropped instead: a payload was erased (retention, redaction,
        erasure) or a log was frozen since, or the store counts no erasures."""
        current = self._new_read()
        if current.erasures is None or (current.erasures, current.frozen) != (
                read.erasures, read.frozen):
            return None
        frozen = {b.entry.log_id: b.entry.header.seq for b in self.node.bad_signatures()}
        return read.tail.pull(self.node.store, topic, frozen)

    def _read_all(self, topic: bytes) -> tuple[list[Item], _Read]:
        read = self._new_read()
        if read.erasures is None:
            return self._items(topic), read
        items = self._pull(topic, read)
        assert items is not None  # the counts were just taken
        return items, read

    def _org_views(self) -> dict[bytes, OrgState]:
        """Every known organisation's state, brought up to date (cached; do not mutate).

        First of every state read: if a payload was erased or a log frozen since
        the caches were built, every cache goes (rooms' states, decrypted
        contents and timelines included), so no plaintext of an erased payload
        outlives the next call."""
        now = self._new_read()
        marks = (now.erasures, now.frozen)
        if now.erasures is None or marks != self._cache_marks:
            self._room_cache.clear()
            self._org_cache.clear()
            self._cache_marks = marks
        changed = False
        for o in self.orgs:
            topic = control_topic(o)
            cache = self._org_cache.get(o)
            new = None if cache is None else self._pull(topic, cache.read)
            if cache is None or new is None:
                items, read = self._read_all(topic)
                by_id = {e.id: (e, p) for e, p in items}
                self._org_cache[o] = _OrgCache(read, by_id, OrgState.from_entries(o, items))
                changed = True
            elif new:
                for entry, payload in new:
                    known = cache.items.get(entry.id)
                    if known is None or known[1] is None:
                        cache.items[entry.id] = (entry, payload)
                cache.state = OrgState.from_entries(o, cache.items.values())
                changed = True
        if changed:
            self._orgs_gen += 1
        return {o: self._org_cache[o].state for o in self.orgs}

    def org_states(self) -> dict[bytes, OrgState]:
        """Every known organisation's resolved control topic, by root key.

        Re-resolved only when its control topic changed in the store; the states
        are shared with the messenger's cache: read them, do not modify them."""
        return self._org_views()

    def certificate(self) -> DeviceCertificate | None:
        """This device's current certificate as its org's control topic says, or None
        (not replicated here yet, expired, or revoked)."""
        return self.org_states()[self.org].active_devices(self._now_ms()).get(self.device)

    @property
    def person(self) -> bytes | None:
        """This device's pseudonymous person id, fixed by its first accepted certificate
        in its org's control topic; None for a device-only certificate or before the
        certificate is replicated here. Messages this device writes carry it
        (:attr:`Message.person`), and every room it is a member of counts the person:
        the person's other devices read and write there too (docs/messaging.md)."""
        return self.org_states()[self.org].person_of(self.device)

    def my_devices(self) -> dict[bytes, DeviceCertificate]:
        """The active devices of this device's person (itself included), or just this
        device if it has no person; empty if it is not active itself."""
        state = self.org_states()[self.org]
        now = self._now_ms()
        person = state.person_of(self.device)
        if person is None:
            mine = state.active_devices(now).get(self.device)
            return {} if mine is None else {self.device: mine}
        return state.devices_of(person, now)

    def _state(self, topic: bytes, orgs: Mapping[bytes, OrgState] | None = None) -> RoomState:
        """The room's state, brought up to date with the store (cached per topic).

        New entries are applied incrementally (:meth:`RoomState.apply`); a change
        of an organisation re-resolves; an erased payload or a frozen log drops
        the cache (state and decrypted contents) and re-reads the topic. ``orgs``
        is accepted for callers that already hold :meth:`org_states`; the cached
        organisation states are used either way (they are the same). The returned
        state is shared: it changes as the store does; read it, do not apply to it."""
        current = self._org_views()
        cache = self._room_cache.get(topic)
        new = None if cache is None else self._pull(topic, cache.read)
        if cache is None or new is None:
            items, read = self._read_all(topic)
            state = RoomState(topic, current, self.rekey_policy)
            state.apply(items)
            if read.erasures is not None:  # without an erasure count nothing is kept
                self._room_cache[topic] = _RoomCache(read, state, self._orgs_gen)
            else:
                self._room_cache.pop(topic, None)
        else:
            state = cache.state
            if self.rekey_policy is not None:
                state.policy = self.rekey_policy
            if cache.orgs != self._orgs_gen:
                state.update_orgs(current)
                cache.orgs = self._orgs_gen
            if new:
                state.apply(new)
        if self.governance is not None and state.view.exists:
            self.governance.update_room(state.view)
        return state

    def _room_state(self, room: RoomRef) -> RoomState:
        topic = _topic(room)
        state = self._state(topic)
        if not state.view.exists:
            raise UnknownRoom(f"no valid room is stored for topic {short_id(topic)}")
        return state

    def _snapshot(self, state: RoomState) -> Room:
        view = state.view
        assert view.create is not None
        epoch = view.current_epoch
        inactive = frozenset(view.members) - set(state.active_members(self._now_ms()))
        return Room(view.topic, view.create.room_kind, view.create.creator, view.members,
                    None if epoch is None else epoch.index, self.device in view.members,
                    inactive, self._names.get(view.topic, ""))

    def room(self, room: RoomRef) -> Room:
        """The current snapshot of a room. Raises :class:`UnknownRoom`."""
        return self._snapshot(self._room_state(room))

    def rooms(self) -> list[Room]:
        """Rooms stored on the node in which this device is a member now, by topic."""
        controls = {control_topic(o) for o in self.orgs}
        found: list[Room] = []
        for topic in sorted(self.node.store.topics()):
            if topic in controls:
                continue
            state = self._state(topic)
            if state.view.exists and self.device in state.view.members:
                found.append(self._snapshot(state))
        return found

    # -- interest ------------------------------------------------------------------

    def required_topics(self) -> list[bytes]:
        """Topics the node must replicate for this device: known orgs' control topics,
        the rooms it is a member of, and rooms it created here."""
        topics = {control_topic(o) for o in self.orgs} | set(self._names)
        topics.update(r.topic for r in self.rooms())
        return sorted(topics)

    def missing_topics(self) -> list[bytes]:
        """:meth:`required_topics` that the node does not ask its peers for.

        Normally empty: the messenger adds every topic it needs to the node's
        interest (``Node.add_topics``) when it creates, joins or is invited to a room.
        Non-empty only if someone removed them from the node (``remove_topics``)."""
        asked = set(self.node.topics)
        return [t for t in self.required_topics() if t not in asked]

    def add_topic_listener(self, callback: Callable[[bytes], None]) -> None:
        """Call ``callback(topic)`` for each topic the messenger adds to the node's
        interest from now on (rooms created, invitations accepted, new orgs)."""
        self._topic_listeners.append(callback)

    def _ensure_interest(self, topics: Iterable[bytes]) -> list[bytes]:
        """Make the node replicate ``topics`` (in-protocol, no reconnect); watch them."""
        new = self.node.add_topics(topics)
        for topic in new:
            log.info("%s: now replicating topic %s", self, short_id(topic))
            if self._watch_nursery is not None:
                self._watch_nursery.start_soon(self._watch, topic)
            for callback in list(self._topic_listeners):
                callback(topic)
        return new

    # -- invitations ----------------------------------------------------------------

    async def _invite(self, device: bytes, org: bytes, topic: bytes) -> None:
        """Tell ``device`` about room ``topic``: an invitation in its org's control topic
        (see :mod:`p2pmsg.messenger.invitations`)."""
        if device == self.device:
            return
        ctrl = control_topic(org)
        self._ensure_interest([ctrl])
        await self.node.append(ctrl, compose_invitation(device, topic, self._room_orgs(topic)))
        self._invited.add((topic, device))

    def _room_orgs(self, topic: bytes) -> tuple[bytes, ...]:
        """The organisations taking part in a room as this device sees it: members'
        and declared relays' (named in invitations, so an invitee may fetch the room
        from any of their nodes before it holds the room's own entries)."""
        view = self._state(topic).view
        orgs = {m.org for m in view.members.values()} | set(view.relays.values())
        return tuple(sorted(orgs))[:MAX_INVITATION_ORGS]

    def _uninvited_devices(self, state: RoomState, since: Epoch | None) -> dict[bytes, Member]:
        """Active member devices of member *persons* that are not recipients of epoch
        ``since`` (every one if None), this device excluded: a device certified for
        the person after the epoch was written (see :meth:`invite_new_devices`)."""
        given = set() if since is None else set(since.recipients)
        return {d: m for d, m in state.active_members(self._now_ms()).items()
                if m.person is not None and d != self.device and d not in given}

    async def _invite_new_recipients(self, topic: bytes, previous: Epoch | None,
                                     state: RoomState) -> None:
        """After this device wrote an epoch: invite the devices of member persons it
        sealed to that were not recipients of ``previous`` and that it has not
        invited itself (the epoch author's half of the rule in
        :meth:`invite_new_devices`)."""
        view = state.view
        current = view.current_epoch
        if current is None or current is previous:
            return
        given = set() if previous is None else set(previous.recipients)
        for device in sorted(set(current.recipients) - given - {self.device}):
            member = view.members.get(device)
            if (member is not None and member.person is not None
                    and (topic, device) not in self._invited):
                await self._invite(device, member.org, topic)

    async def invite_new_devices(self) -> list[tuple[bytes, bytes]]:
        """Invite devices certified for a member person after the person joined a room
        (their organisation certifies a new device for the person); returns the
        (room topic, device) pairs invited now. The watcher of
        :func:`open_messenger` calls it after every new entry.

        A device D of member person P needs an invitation when it is an active
        member device that is not a recipient of the room's current epoch although
        P was a member before that epoch (P added later: the adder invited P's
        devices). Who writes it — so that not every member does:

        * every *other* active device of P that this messenger runs on (the
          person's own devices, usually few);
        * if P has no other active device, the room's active admin devices;
        * and whoever writes the next epoch (:meth:`send`, :meth:`rekey`) invites
          every device of a member person it seals to that was not a recipient of
          the previous epoch, so a device is invited even when those devices are
          offline.

        Each messenger invites a (room, device) at most once while it runs (a
        restart before the next epoch may repeat it: one small control entry; the
        invitee ignores a room it already replicates). The invitation only makes D
        replicate the room: D reads epochs sealed to it from the next one on, and
        earlier messages only if the person shares them (:meth:`share_history`)."""
        invited: list[tuple[bytes, bytes]] = []
        for topic in self._room_topics():
            state = self._state(topic)
            view = state.view
            if not view.exists or self.device not in view.members:
                continue
            mark = (view, self._orgs_gen)
            checked = self._devices_checked.get(topic)
            if checked is not None and checked[0] is mark[0] and checked[1] == mark[1]:
                continue
            self._devices_checked[topic] = mark
            epoch = view.current_epoch
            if epoch is None:
                continue  # the creator invites every member with the first epoch
            order = {entry_id: i for i, entry_id in enumerate(view.order)}
            active = state.active_members(self._now_ms())
            if self.device not in active:
                continue
            me = view.members[self.device]
            for device, member in sorted(self._uninvited_devices(state, epoch).items()):
                if (topic, device) in self._invited or order.get(
                        member.since, len(order)) > order[epoch.id]:
                    continue
                siblings = {d for d, m in active.items()
                            if m.principal == member.principal and d != device}
                if siblings:
                    if self.device not in siblings:
                        continue
                elif me.role is not RoomRole.ADMIN:
                    continue
                await self._invite(device, member.org, topic)
                invited.append((topic, device))
                log.info("%s: invited %s, a new device of a member person, to room %s",
                         self, short_id(device), short_id(topic))
        return invited

    def accept_invitations(self) -> list[bytes]:
        """Replicate every room this device was invited to (invitations in its org's
        control topic, authored by an active device of a known org). Returns the room
        topics newly added to the node's interest. :func:`open_messenger` calls it
        after every new entry; call it yourself on a bare :class:`Messenger`."""
        now = self._now_ms()
        active: dict[bytes, bytes] = {}  # device -> its organisation
        for org, state in self.org_states().items():
            active.update(dict.fromkeys(state.active_devices(now), org))
        rooms: list[bytes] = []
        for entry in self.node.read(control_topic(self.org)):
            if entry.id in self._invites_seen or entry.author == self.device:
                continue
            inviter_org = active.get(entry.author)
            if inviter_org is None:
                continue  # maybe its certificate has not arrived yet: look again later
            self._invites_seen.add(entry.id)
            payload = self.node.payload(entry)
            invitation = (open_invitation(self.identity, payload)
                          if payload is not None else None)
            if invitation is not None:
                rooms.append(invitation.topic)
                if self.governance is not None:
                    # Before asking for the room: our policy must let the inviter's
                    # organisation (and those it names: members', relays') hold it,
                    # or the sync rule would not ask them for it.
                    self.governance.expect_room(
                        invitation.topic, (inviter_org, self.org, *invitation.orgs))
        new = self._ensure_interest(rooms)
        self.accept_history_shares()
        return new

    # -- a person's devices: history shares ------------------------------------------

    def accept_history_shares(self) -> int:
        """Take the epoch keys that another active device of this device's person
        shared with it (:meth:`share_history`); returns how many new keys. Called by
        :meth:`accept_invitations`. Shares by any other author are ignored."""
        state = self.org_states()[self.org]
        person = state.person_of(self.device)
        if person is None:
            return 0
        siblings = set(state.devices_of(person, self._now_ms())) - {self.device}
        added = 0
        for entry in self.node.read(control_topic(self.org)):
            if entry.id in self._shares_seen or entry.author not in siblings:
                continue  # an author not (yet) active stays unseen: look again later
            self._shares_seen.add(entry.id)
            payload = self.node.payload(entry)
            opened = open_history_share(self.identity, payload) if payload is not None else None
            if opened is None:
                continue
            topic, keys = opened
            for epoch_id, key in keys.items():
                if (topic, epoch_id) not in self._shared:
                    self._shared[(topic, epoch_id)] = key
                    added += 1
            log.info("%s: %d epoch key(s) of room %s shared by %s", self, len(keys),
                     short_id(topic), short_id(entry.author))
        return added

    async def share_history(self, room: RoomRef, device: bytes) -> bytes | None:
        """Give ``device`` — another active device of this device's *person* — every
        epoch key of ``room`` this device can open and ``device`` was not given, and
        invite it to the room. Returns the share's entry id (None: nothing to share).

        Explicit on purpose: call it when the person approves their new device (the
        organisation admin could otherwise certify a device and read the person's
        whole history). Shredded epochs are never shared (the keyring refuses them).
        Calling it again shares the same keys again (harmless, one more entry).
        Raises :class:`UnknownDevice` if ``device`` is not an active sibling device."""
        topic = _topic(room)
        state = self.org_states()[self.org]
        person = state.person_of(self.device)
        if (person is None or device == self.device
                or device not in state.devices_of(person, self._now_ms())):
            raise UnknownDevice(f"device {short_id(device)} is not another active device "
                                "of this device's person")
        view = self._room_state(topic).view
        given = {e.id for e in view.epochs if device in e.recipients}
        keys = {e: k for e, k in self._keys(view).items() if e not in given}
        await self._invite(device, self.org, topic)
        if not keys:
            return None
        entry = await self.node.append(control_topic(self.org),
                                       compose_history_share(device, topic, keys))
        log.info("%s: shared %d epoch key(s) of room %s with %s", self, len(keys),
                 short_id(topic), short_id(device))
        return entry.id

    # -- writing -------------------------------------------------------------------

    def _now_ms(self) -> int:
        return self.node.config.wall_clock()

    def _lock(self, topic: bytes) -> trio.Lock:
        return self._locks.setdefault(topic, trio.Lock())

    def _next_seq(self, topic: bytes) -> int:
        head = self.node.store.head(self.device, topic)
        return 1 if head is None else head.header.seq + 1

    async def _append(self, topic: bytes, payload: bytes, seq: int | None = None) -> Entry:
        entry = await self.node.append(topic, payload)
        if seq is not None and entry.header.seq != seq:
            raise LocalProtocolError(
                "another task appended to this room's log outside the messenger; "
                "the message was sealed for another seq and will not decrypt")
        return entry

    async def _change(self, room: RoomRef, compose: Callable[[RoomState], bytes]) -> bytes:
        """Append a membership payload composed from the current state."""
        topic = _topic(room)
        async with self._lock(topic):
            state = self._room_state(topic)
            payload = compose(state)
            entry = await self._append(topic, payload)
        self._state(topic)  # feeds governance
        return entry.id

    async def create_room(
        self,
        members: Sequence[MemberSpec | bytes] = (),
        *,
        kind: RoomKind = RoomKind.GROUP,
        name: str = "",
    ) -> Room:
        """Create a room with ``members`` (MemberSpec for other orgs' devices, or bare
        keys of devices some known org certifies) and open its first epoch.

        The room topic is added to the node's interest at once (peers replicate it
        without reconnecting), and every other member device gets an invitation in
        its organisation's control topic, so its messenger starts replicating the
        room too (:meth:`accept_invitations`).
        """
        specs = [self._spec(m) for m in members]
        plan = plan_room(self.identity, self.org, specs, kind=kind, created_ms=self._now_ms())
        return await self.create_room_from(plan, name=name)

    async def create_room_from(self, plan: RoomPlan, *, name: str = "") -> Room:
        """Write a room composed earlier with :func:`plan_room`, then its first epoch."""
        if plan.creator != self.device:
            raise LocalProtocolError("the plan was made for another creator device")
        self._ensure_interest([plan.topic])
        async with self._lock(plan.topic):
            if self._next_seq(plan.topic) != 1:
                raise LocalProtocolError("this device already wrote to that topic")
            await self._append(plan.topic, plan.payload, 1)
            if name:
                self._names[plan.topic] = name
            state = self._room_state(plan.topic)
            if state.rekey_reason(self._now_ms()) is not None:
                await self._append(plan.topic, compose_rekey(state, self.identity,
                                                              self._now_ms()))
        for device, member in sorted(state.view.members.items()):
            await self._invite(device, member.org, plan.topic)
        return self.room(plan.topic)

    def _spec(self, member: MemberSpec | bytes, role: RoomRole = RoomRole.MEMBER) -> MemberSpec:
        if isinstance(member, MemberSpec):
            return member
        now = self._now_ms()
        for org, state in self.org_states().items():
            if member in state.active_devices(now):
                return MemberSpec(member, org, role)
        raise UnknownDevice(f"no known organisation certifies device {short_id(member)}")

    async def add_member(
        self, room: RoomRef, member: MemberSpec | bytes, role: RoomRole = RoomRole.MEMBER
    ) -> bytes:
        """Add a device (admins only). The next message sent opens a new epoch for it.

        If its organisation certifies it for a person, the person becomes the member:
        every device of the person is invited."""
        spec = self._spec(member, role)
        entry_id = await self._change(room, lambda s: compose_add(
            s, self.identity, spec.device, spec.org, spec.role))
        added = self._room_state(room).view.members.get(spec.device)
        devices = [spec.device] if added is None else sorted(
            d for d, m in self._room_state(room).view.members.items()
            if m.principal == added.principal)
        for device in devices:
            await self._invite(device, spec.org, _topic(room))
        return entry_id

    async def remove_member(self, room: RoomRef, device: bytes) -> bytes:
        """Remove a device (admins only). Every later message is sealed in an epoch
        without it (the next sender rekeys; the removed device cannot read on)."""
        return await self._change(room, lambda s: compose_remove(s, self.identity, device))

    async def change_role(self, room: RoomRef, device: bytes, role: RoomRole) -> bytes:
        """Make a member an admin or a plain member (admins only)."""
        return await self._change(room, lambda s: compose_role(s, self.identity, device, role))

    def relays(self, room: RoomRef) -> dict[bytes, bytes]:
        """node key -> organisation of the nodes the room declares relays
        (:attr:`~p2pmsg.messaging.room.RoomView.relays`). Raises :class:`UnknownRoom`."""
        return dict(self._room_state(room).view.relays)

    async def add_relay(self, room: RoomRef, node_key: bytes, org: bytes) -> bytes:
        """Declare ``node_key`` (a node of organisation ``org`` on the federation list)
        a relay of the room (admins only): every member node's governance policy then
        lets it replicate the room's ciphertext. It is not a member: it cannot write
        and gets no keys, so no rekey follows. The relay node is also invited (the
        room topic sealed to its key in its organisation's control topic), so it
        starts asking for the room, and the other member devices are invited again
        naming the relay's organisation. Returns the RELAY_ADD entry id."""
        try:
            curve25519_public(node_key)  # the invitation is sealed to it
        except ValueError:
            raise ValidationError(Reason.MALFORMED,
                                  "relay node key is not a valid Ed25519 public key") from None
        entry = await self._change(room, lambda s: compose_relay_add(
            s, self.identity, node_key, org))
        topic = _topic(room)
        await self._invite(node_key, org, topic)
        # Members invited earlier know only the organisations named then; invite
        # them again naming the relay's, so one whose only reachable node is the
        # relay can fetch the room from it before holding the room's entries.
        for device, member in sorted(self._state(topic).view.members.items()):
            await self._invite(device, member.org, topic)
        return entry

    async def remove_relay(self, room: RoomRef, node_key: bytes) -> bytes:
        """Stop ``node_key`` relaying the room (admins only): member nodes close its
        sessions for the room (what it already stored stays there, ciphertext only).
        Returns the RELAY_REMOVE entry id."""
        return await self._change(room, lambda s: compose_relay_remove(
            s, self.identity, node_key))

    async def leave(self, room: RoomRef) -> bytes:
        """Leave the room; the remaining members rekey on their next message."""
        return await self._change(room, lambda s: compose_leave(s, self.identity))

    async def rekey(self, room: RoomRef) -> bytes:
        """Open a new epoch now (normally automatic when sending). Invites the
        devices of member persons that get an epoch for the first time
        (:meth:`invite_new_devices`)."""
        topic = _topic(room)
        previous = self._room_state(topic).view.current_epoch
        entry_id = await self._change(room, lambda s: compose_rekey(s, self.identity,
                                                                    self._now_ms()))
        await self._invite_new_recipients(topic, previous, self._room_state(topic))
        return entry_id

    async def send(self, room: RoomRef, content: Content) -> bytes:
        """Seal ``content`` for the room and append it; returns the message id.

        Rekeys first when the current epoch may not be used. Raises
        :class:`~p2pmsg.messaging.NotPermitted` if this device is not a member."""
        topic = _topic(room)
        rekeyed: tuple[Epoch | None] | None = None
        async with self._lock(topic):
            for attempt in range(2):
                state = self._room_state(topic)
                now = self._now_ms()
                seq = self._next_seq(topic)
                try:
                    payload = compose_message(state, self.identity, content, seq=seq, now_ms=now)
                except RekeyRequired:
                    if attempt:
                        raise
                    reason = state.rekey_reason(now)
                    log.info("%s: new epoch in room %s (%s)", self, short_id(topic),
                             reason.value if reason is not None else "not sealed to us")
                    rekeyed = (state.view.current_epoch,)
                    await self._append(topic, compose_rekey(state, self.identity, now), seq)
                    continue
                message = (await self._append(topic, payload, seq)).id
                break
            else:  # pragma: no cover
                raise AssertionError("unreachable")
        if rekeyed is not None:  # after the message: it is what the invitee comes for
            await self._invite_new_recipients(topic, rekeyed[0], self._room_state(topic))
        return message

    async def send_file(
        self,
        room: RoomRef,
        file: bytes | str | os.PathLike[str],
        *,
        kind: Kind | str = Kind.DOCUMENT,
        mime: str = "application/octet-stream",
        name: str = "",
        caption: str = "",
    ) -> bytes:
        """Send a file (bytes or a path) as a voice/image/document/video message.

        The file is encrypted with a fresh per-file key and chunked into the node's
        blob store, registered under the room (members' nodes may fetch it from
        ours); the key travels only inside the sealed message, whose clear refs name
        the blob root so relays can fetch and serve it too. Returns the message
        id. Needs ``NodeConfig.blob_store``. ``name`` defaults to the path's name.
        """
        kind = _attachment_kind(kind)
        topic = _topic(room)
        self._room_state(topic)  # UnknownRoom before anything is stored
        if not name and not isinstance(file, bytes):
            name = os.path.basename(os.fspath(file))
        manifest, key = await self.node.put_blob(file, topic, org=self.org)
        return await self.send(room, Attachment(kind, describe(manifest, key, mime, name),
                                                caption))

    async def download(
        self,
        message: Message,
        dest: str | os.PathLike[str] | BinaryIO,
        *,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Fetch an attachment's blob from connected peers and decrypt it to ``dest``
        (a path or a binary file); returns the plaintext bytes written.

        Chunks are verified on arrival and kept in the blob store, so an
        interrupted download resumes with what is missing. ``progress(done,
        total)`` reports plaintext bytes. Raises ``LocalProtocolError`` if the
        message has no attachment, :class:`~p2pmsg.blobs.BlobUnavailableError` if
        no connected peer serves it.
        """
        content = message.content
        if not isinstance(content, Attachment):
            raise LocalProtocolError("message carries no attachment")
        entry = self.node.store.get_entry(message.id)
        if entry is None:
            raise UnknownRoom("the message is not stored on this node")
        desc = content.descriptor
        await self.node.fetch_blob(desc.content_hash, entry.topic, org=self.org,
                                   progress=progress)
        store = self.node._require_blob_store()
        manifest = store.get_manifest(desc.content_hash)
        assert manifest is not None  # fetch_blob returned: complete
        check_descriptor(desc, manifest)
        if isinstance(dest, (str, os.PathLike)):
            with open(dest, "wb") as f:
                return store.export(desc.content_hash, desc.file_key, f)
        return store.export(desc.content_hash, desc.file_key, dest)

    async def send_text(self, room: RoomRef, text: str) -> bytes:
        return await self.send(room, Text(text))

    async def send_reply(self, room: RoomRef, target: bytes, text: str) -> bytes:
        """A text answering message ``target`` (thread reference)."""
        return await self.send(room, Reply(target, text))

    async def send_edit(self, room: RoomRef, target: bytes, text: str) -> bytes:
        """Replace the text of one of this device's texts/replies (history is kept)."""
        return await self.send(room, Edit(target, text))

    async def redact(self, room: RoomRef, target: bytes, reason: str = "") -> bytes:
        """Delete for everyone (own messages, or any message as a room admin).

        The redaction is a SEALED v2 payload naming ``target`` in its clear refs, so
        every node holding the room — members and relays — erases the target's
        payload and its attachment; members also erase its author's edits
        (:meth:`apply_redactions`). This node does so before returning (unless
        ``enforce_redactions`` is off)."""
        redaction = await self.send(room, Redaction(target, reason))
        if self.enforce_redactions:
            self.apply_redactions(room)
        return redaction

    async def react(self, room: RoomRef, target: bytes, key: str) -> bytes:
        return await self.send(room, Reaction(target, key))

    async def mark_read(self, room: RoomRef, up_to: bytes | None = None) -> bytes | None:
        """Declare everything up to ``up_to`` (default: the last message) read.

        Returns the receipt's id, or None if the room has no message yet."""
        if up_to is None:
            messages = self.messages(room)
            if not messages:
                return None
            up_to = messages[-1].id
        return await self.send(room, ReadReceipt(up_to))

    async def send_fhir(
        self, room: RoomRef, communication_json: str, fallback_text: str, *, profile: str = ""
    ) -> bytes:
        """A FHIR R4 ``Communication`` (JSON) with the text shown by clients without FHIR."""
        return await self.send(room, FhirCommunication(communication_json, fallback_text,
                                                       profile))

    # -- organisation administration (ADMIN devices) ----------------------------------

    async def publish_certificate(self, cert: DeviceCertificate) -> bytes:
        """Append a root-signed certificate to this org's control topic (ADMIN devices;
        receivers ignore it otherwise)."""
        entry = await self.node.append(control_topic(self.org), compose_certificate(cert))
        return entry.id

    async def revoke_device(self, device: bytes, reason: str = "") -> bytes:
        """Revoke a device of this org from now on (ADMIN devices).

        Its logs this node holds are sealed at their current heads (cutoffs), so the
        device cannot back-date later entries into them; rooms rekey away from it."""
        cutoffs = {}
        for topic in self.node.store.topics():
            head = self.node.store.head(device, topic)
            if head is not None:
                cutoffs[topic] = head.header.seq
        effective = self._now_ms() << COUNTER_BITS
        payload = compose_revocation(device, effective, cutoffs, reason)
        entry = await self.node.append(control_topic(self.org), payload)
        return entry.id

    # -- redaction enforcement -------------------------------------------------------

    def apply_redactions(self, room: RoomRef | None = None) -> list[RedactionResult]:
        """Erase, on this node, what the applied redactions of ``room`` (default:
        every stored room) removed: payloads of the targets and their authors'
        edits (secure delete; headers stay), and their attachment blobs. One
        REDACTION audit record per redaction that erased something.

        Called by the watcher of :func:`open_messenger` whenever entries arrive and
        by :meth:`redact`; idempotent. Only redactions this device can decrypt are
        seen (docs/gdpr.md, "Redaction"). Without ``room``, rooms with no new
        entries since the last call are skipped. Returns what changed now."""
        topics = [_topic(room)] if room is not None else self._room_topics()
        orgs = self.org_states()
        results: list[RedactionResult] = []
        for topic in topics:
            count = (sum(h.seq for h in self.node.store.heads(topic)),
                     len(self.node.store.missing_payloads(topic)))
            if room is None and self._redactions_seen.get(topic) == count:
                continue
            self._redactions_seen[topic] = count
            view = self._state(topic, orgs).view
            if not view.exists:
                continue
            plan = self._plan_redactions(topic, view, self._keys(view))
            if not plan:
                continue
            # erased edits and reactions are linked to their message in the store,
            # atomically with the erasure: the timeline folds them, restarts included
            done = erase_redactions(self.node.store, plan, blobs=self.node.blob_store)
            for result in done:
                self.node.audit.record(AuditKind.REDACTION, **redaction_audit_details(result))
                log.info("%s: redaction %s applied in room %s (%d payloads, %d blobs)",
                         self, short_id(result.tombstone.redaction), short_id(topic),
                         len(result.erased), result.blobs_deleted)
            results.extend(done)
        return results

    def _room_topics(self) -> list[bytes]:
        controls = {control_topic(o) for o in self.orgs}
        return sorted(t for t in self.node.store.topics() if t not in controls)

    # -- reading -------------------------------------------------------------------

    def _keys(self, view: RoomView) -> dict[bytes, bytes]:
        keys: dict[bytes, bytes] = {}
        for epoch in view.epochs:
            if self.keyring.is_forgotten(epoch.id):
                continue
            key = self.keyring.get(epoch.id)
            if key is None:
                if self.device not in epoch.recipients:
                    shared = self._shared.get((view.topic, epoch.id))
                    if shared is not None:  # from a device of this person: keep it
                        self.keyring.put(epoch.id, shared)
                        keys[epoch.id] = shared
                    continue
                key = open_epoch_key(view.topic, epoch, self.identity)
                if key is None:
                    continue  # a member sealed garbage to us: that epoch stays unreadable
                self.keyring.put(epoch.id, key)
            keys[epoch.id] = key
        return keys

    def timeline(self, room: RoomRef) -> Timeline:
        """Messages in display order plus read receipts (device -> last read id).

        Each entry is decrypted once (contents are cached per room, dropped when a
        payload is erased or an epoch key forgotten); when the room only grew by
        entries applied after the others, only those are folded into the last
        timeline (``decrypt_timeline(previous=...)``), else it is folded again. The
        messages are shared with that cache: read them, do not modify them."""
        topic = _topic(room)
        view = self._room_state(topic).view
        keys = self._keys(view)
        cache = self._room_cache.get(topic)
        if cache is None:  # a store without an erasure count: nothing is kept
            return decrypt_timeline(view, self.identity, keys,
                                    folded=self.node.store.folded(topic))
        if cache.folded is None:  # a new link moves the erasure count: a new cache
            cache.folded = self.node.store.folded(topic)
        folded = cache.folded
        previous: tuple[Timeline, int] | None = None
        if cache.timeline is not None and cache.timeline[1] == keys:
            old_view, _, old = cache.timeline
            if old_view is view:
                return old
            if _extends(view, old_view):
                previous = (old, len(old_view.applied))
        changed: set[bytes] = set()
        timeline = decrypt_timeline(view, self.identity, keys, self._contents(topic, keys),
                                    previous=previous, changed=changed, folded=folded)
        cache.timeline = (view, keys, timeline)
        if previous is None:
            cache.versions = [(timeline, None)]
            cache.positions = {mid: i for i, mid in enumerate(timeline.by_id)}
        else:  # new messages come last, in display order
            for mid in itertools.islice(timeline.by_id, len(cache.positions), None):
                cache.positions[mid] = len(cache.positions)
            cache.versions.append((timeline, frozenset(changed)))
            del cache.versions[:-_VERSIONS_KEPT]
        return timeline

    def _contents(self, topic: bytes, keys: Mapping[bytes, bytes]) -> dict[bytes, Content] | None:
        """The room's cache of opened contents for folding with ``keys`` (None if the
        room is not cached). Every cached content belongs to an epoch of the keys
        last used; if one of those is missing now (forgotten: crypto-shredded), the
        whole cache goes so no plaintext of it stays in memory."""
        cache = self._room_cache.get(topic)
        if cache is None:
            return None
        if not cache.key_ids <= keys.keys():
            cache.contents.clear()
        cache.key_ids = frozenset(keys)
        return cache.contents

    def _plan_redactions(
        self, topic: bytes, view: RoomView, keys: dict[bytes, bytes]
    ) -> list[RedactionTombstone]:
        """:func:`plan_redactions` of the room — or ``[]`` when the plan last
        computed (and executed) from an earlier view still holds.

        It holds if the room only grew by entries applied after the others, with
        the same keys, and none of them is a redaction (clear refs, or opened) or
        an edit: a redaction names an *earlier* entry as its target, so later
        entries are never targets of the redactions already planned, and only
        an edit adds payloads to erase for one. Anything else (late entries, a
        payload arriving, an erasure, a new key) plans from the whole view."""
        cache = self._room_cache.get(topic)
        contents = self._contents(topic, keys)
        if cache is not None and cache.planned is not None:
            old, old_keys = cache.planned
            if old_keys == keys and (old is view or _extends(view, old)) and not any(
                    self._may_redact(view, a, keys, contents)
                    for a in view.applied[len(old.applied):]):
                cache.planned = (view, keys)
                return []
        plan = plan_redactions(view, keys, contents=contents)
        if cache is not None:
            cache.planned = (view, keys)
        return plan

    @staticmethod
    def _may_redact(view: RoomView, applied: Applied, keys: Mapping[bytes, bytes],
                    contents: dict[bytes, Content] | None) -> bool:
        payload = applied.payload
        if not isinstance(payload, Sealed):
            return False
        if payload.version != 1 and payload.refs.redacts is not None:
            return True
        return isinstance(open_cached(view, applied, keys, contents), Edit | Redaction)

    def _changed_since(self, topic: bytes, old: Timeline | None) -> list[bytes] | None:
        """Ids of the messages that may differ between ``old`` and the room's last
        timeline, in display order; None if unknown (then compare them all)."""
        cache = self._room_cache.get(topic)
        if old is None or cache is None:
            return None
        for i in range(len(cache.versions) - 1, -1, -1):
            if cache.versions[i][0] is old:
                ids: set[bytes] = set()
                for _, changed in cache.versions[i + 1:]:
                    if changed is None:
                        return None
                    ids |= changed
                return sorted(ids, key=cache.positions.__getitem__)
        return None

    def messages(self, room: RoomRef) -> list[Message]:
        """Decrypted messages in display order (causal, HLC, entry id): the same list
        on every member device holding the same entries."""
        return list(self.timeline(room).messages)

    async def live(self, room: RoomRef, *, history: bool = False) -> AsyncIterator[Message]:
        """Yield messages as they arrive: every message that is new or changed
        (edited, redacted, reacted to, newly decryptable) after each new entry.

        ``history=True`` first yields the messages already stored. The room need not
        have arrived yet (a device added elsewhere waits for it). Never ends by
        itself; cancel the loop (or break) to stop.

        Under :func:`open_messenger` it wakes on a new entry in *any* replicated
        topic (so a certificate or revocation that changes the room counts too);
        on a bare :class:`Messenger` it subscribes to the room topic only. A
        subscriber overflow is healed by resubscribing and diffing: nothing is
        skipped."""
        topic = _topic(room)
        if self._watching:
            seen = _Seen()
            if not history:
                self._diff(topic, seen)
            while True:
                version = self._version
                for msg in self._diff(topic, seen):
                    yield msg
                while self._version == version:
                    await self._changed.park()
        seen_sub: _Seen | None = None
        while True:
            async with self.node.subscribe(topic) as sub:
                if seen_sub is None:
                    seen_sub = _Seen()
                    if not history:
                        self._diff(topic, seen_sub)
                for msg in self._diff(topic, seen_sub):
                    yield msg
                async for _entry in sub:
                    for msg in self._diff(topic, seen_sub):
                        yield msg
                overflowed = sub.overflowed
            if not overflowed:
                return

    def _current(self, topic: bytes) -> Timeline | None:
        try:
            return self.timeline(topic)
        except UnknownRoom:
            return None  # the creation entry has not arrived yet: live() waits for it

    def _diff(self, topic: bytes, seen: _Seen) -> list[Message]:
        """Messages new or changed since ``seen`` (which is updated). Nothing to do
        (no fold, no comparison) while the room's timeline is the one last seen."""
        timeline = self._current(topic)
        if timeline is None or timeline is seen.timeline:
            return []
        ids = self._changed_since(topic, seen.timeline)
        seen.timeline = timeline
        known = seen.messages
        if ids is None:
            candidates: Iterable[Message] = timeline.messages
        else:  # folded incrementally since: only what the new entries touched
            candidates = [timeline.by_id[i] for i in ids]
        changed = [m for m in candidates if (prev := known.get(m.id)) is not m and prev != m]
        for m in changed:
            seen.messages[m.id] = m
        return changed

    async def wait_certified(self, devices: Iterable[bytes] = ()) -> None:
        """Wait until this device and ``devices`` are active (certified, not revoked)
        in the known organisations' control topics as replicated here.

        Call it before creating a room or adding members: an epoch is sealed only to
        devices whose certificate this node holds, so a message sent earlier stays
        unreadable for a member whose certificate had not arrived yet."""
        wanted = {self.device, *devices}
        while True:
            now = self._now_ms()
            active: set[bytes] = set()
            for state in self.org_states().values():
                active.update(state.active_devices(now))
            if wanted <= active:
                await trio.lowlevel.checkpoint()
                return
            await self._wait_any_control_entry()

    async def _wait_any_control_entry(self) -> None:
        counts = {t: sum(h.seq for h in self.node.store.heads(t))
                  for t in (control_topic(o) for o in self.orgs)}
        async with trio.open_nursery() as nursery:
            async def one(topic: bytes, count: int) -> None:
                await self.node.wait_for_entries(topic, count + 1)
                nursery.cancel_scope.cancel()
            for topic, count in counts.items():
                nursery.start_soon(one, topic, count)

    # -- watcher: live wake-ups and the governance feed ------------------------------

    async def _watch_all(self, *, task_status: trio.TaskStatus[None]
                         = trio.TASK_STATUS_IGNORED) -> None:
        """Bump :attr:`_version` on every new entry of a replicated topic (waking
        ``live``) and pass every room view to ``governance.update_room``."""
        async with trio.open_nursery() as nursery:
            for topic in self.node.topics:
                await nursery.start(self._watch, topic)
            self._watching = True
            self._watch_nursery = nursery
            try:
                task_status.started()
                seen = -1
                while True:
                    while self._version == seen:
                        await self._changed.park()
                    seen = self._version
                    self.accept_invitations()
                    await self.invite_new_devices()
                    if self.enforce_redactions:
                        self.apply_redactions()  # rooms with new entries
                    if self.governance is not None:
                        self.rooms()  # _state feeds governance for every room it resolves
                    await trio.sleep(0)
            finally:
                self._watching = False
                self._watch_nursery = None

    async def _watch(self, topic: bytes, *, task_status: trio.TaskStatus[None]
                     = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            async with self.node.subscribe(topic) as sub:
                if not started:
                    task_status.started()
                    started = True
                async for _entry in sub:
                    self._version += 1
                    self._changed.unpark_all()
                if not sub.overflowed:
                    return
            self._version += 1  # entries may have been dropped: make everyone re-read
            self._changed.unpark_all()


@asynccontextmanager
async def open_messenger(
    node: Node,
    org: bytes,
    *,
    orgs: Iterable[bytes] = (),
    keyring: Keyring | None = None,
    rekey_policy: RekeyPolicy | None = None,
    governance: GovernancePolicy | None = None,
    enforce_redactions: bool = True,
) -> AsyncIterator[Messenger]:
    """``async with open_messenger(node, my_org, orgs=[...]) as m:`` — a
    :class:`Messenger` on an open node, with its watcher running until the block
    exits: it wakes :meth:`Messenger.live` on any replicated topic's new entries and
    feeds ``update_room`` of a ``GovernancePolicy`` (given, or the node's policy),
    accepts invitations, invites devices certified later for a member person
    (:meth:`Messenger.invite_new_devices`), and enforces redactions on this node
    (:meth:`Messenger.apply_redactions`)."""
    messenger = Messenger(node, org, orgs=orgs, keyring=keyring, rekey_policy=rekey_policy,
                          governance=governance, enforce_redactions=enforce_redactions)
    async with trio.open_nursery() as nursery:
        await nursery.start(messenger._watch_all)
        yield messenger
        nursery.cancel_scope.cancel()
