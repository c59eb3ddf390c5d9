"""Rooms: creation, permission rules applied by every node, deterministic resolution."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from messaging_helpers import Item, World

from p2pmsg.entry import Entry
from p2pmsg.identity import Identity
from p2pmsg.messaging import (
    MemberSpec,
    NotPermitted,
    Rejection,
    RekeyPolicy,
    RekeyReason,
    RekeyRequired,
    RoomKind,
    RoomRole,
    RoomState,
    compose_add,
    compose_leave,
    compose_rekey,
    compose_remove,
    compose_role,
    compose_room,
    compose_text,
    room_topic,
)
from p2pmsg.messaging.payloads import (
    SEALED_SECRET_SIZE,
    EpochKeys,
    MemberAdd,
    MemberLeave,
    MemberRemove,
    MemberRole,
    RelayAdd,
    RelayRemove,
    RoomCreate,
    Sealed,
    decode_room_payload,
    encode_room_payload,
)
from p2pmsg.messaging.room import resolve_room


def _setup(kind: RoomKind = RoomKind.GROUP) -> tuple[World, Identity, Identity, Identity, bytes]:
    """Org A: alice (creator), carol. Org B: bob (initial member)."""
    w = World()
    a, b = w.new_org(), w.new_org()
    alice, carol = w.new_device(a, "alice"), w.new_device(a, "carol")
    bob = w.new_device(b, "bob")
    topic, create = compose_room(alice, a.id, kind, [MemberSpec(bob.public_key, b.id)], w.now_ms)
    w.append(alice, topic, create)
    return w, alice, bob, carol, topic


def test_creation_defines_the_room() -> None:
    w, alice, bob, _, topic = _setup()
    first = w.topics[topic][0]
    assert room_topic(first[1]) == topic  # type: ignore[arg-type]
    view = w.room(topic).view
    assert view.exists
    assert {d: m.role for d, m in view.members.items()} == {
        alice.public_key: RoomRole.ADMIN, bob.public_key: RoomRole.MEMBER}
    assert view.order == (first[0].id,)


def test_direct_room_initial_members_are_admins() -> None:
    w, _, bob, _, topic = _setup(RoomKind.DIRECT)
    assert w.room(topic).members[bob.public_key].role is RoomRole.ADMIN


def test_forged_creation_by_someone_else_makes_no_room() -> None:
    w = World()
    org = w.new_org()
    alice, mallory = w.new_device(org, "alice"), w.new_device(org, "mallory")
    create = encode_room_payload(RoomCreate(alice.public_key, org.id, RoomKind.GROUP,
                                            os.urandom(16), 1, ()))
    topic = room_topic(create)
    e = w.append(mallory, topic, create)  # mallory claims alice created it
    view = w.room(topic).view
    assert not view.exists
    assert view.rejected[e.id] is Rejection.NO_ROOM


def test_creator_must_be_certified() -> None:
    w = World()
    org = w.new_org()
    stranger = Identity.generate()  # no certificate published
    topic, create = compose_room(stranger, org.id, RoomKind.GROUP, [], w.now_ms)
    w.append(stranger, topic, create)
    assert not w.room(topic).view.exists


def test_only_admins_change_membership() -> None:
    w, alice, bob, carol, topic = _setup()
    a_org = next(iter(w.orgs))
    bad = w.append(bob, topic, encode_room_payload(MemberAdd(carol.public_key, a_org)))
    state = w.room(topic)
    assert state.view.rejected[bad.id] is Rejection.NOT_ADMIN
    assert carol.public_key not in state.members
    with pytest.raises(NotPermitted):
        compose_add(state, bob, carol.public_key, a_org)
    w.append(alice, topic, compose_add(state, alice, carol.public_key, a_org))
    state = w.room(topic)
    assert carol.public_key in state.members
    # promote bob, who may now remove carol
    w.append(alice, topic, compose_role(state, alice, bob.public_key, RoomRole.ADMIN))
    state = w.room(topic)
    w.append(bob, topic, compose_remove(state, bob, carol.public_key))
    state = w.room(topic)
    assert carol.public_key not in state.members
    assert state.members[bob.public_key].role is RoomRole.ADMIN


def test_anyone_may_leave_and_then_cannot_write() -> None:
    w, _, bob, _, topic = _setup()
    state = w.room(topic)
    w.append(bob, topic, compose_leave(state, bob))
    late = w.append(bob, topic, encode_room_payload(Sealed(os.urandom(32), os.urandom(24), b"x")))
    view = w.room(topic).view
    assert bob.public_key not in view.members
    assert view.rejected[late.id] is Rejection.NOT_MEMBER


def test_non_members_and_uncertified_devices_are_rejected() -> None:
    w, alice, _, carol, topic = _setup()
    sealed = encode_room_payload(Sealed(os.urandom(32), os.urandom(24), b"x"))
    outsider = w.append(carol, topic, sealed)
    uncert = Identity.generate()
    a_org = next(iter(w.orgs))
    state = w.room(topic)
    w.append(alice, topic, compose_add(state, alice, uncert.public_key, a_org))
    unc = w.append(uncert, topic, sealed)
    view = w.room(topic).view
    assert view.rejected[outsider.id] is Rejection.NOT_MEMBER
    assert view.rejected[unc.id] is Rejection.NOT_CERTIFIED


def test_revoked_device_entries_after_the_revocation_point_are_rejected() -> None:
    w, _, bob, _, topic = _setup()
    b_org = w.orgs[list(w.orgs)[1]]
    sealed = encode_room_payload(Sealed(os.urandom(32), os.urandom(24), b"x"))
    before = w.append(bob, topic, sealed)
    w.revoke(b_org, bob)  # seals bob's room log at `before`
    w.tick(10)
    after = w.append(bob, topic, sealed)
    view = w.room(topic).view
    assert before.id in view.order
    assert view.rejected[after.id] is Rejection.NOT_CERTIFIED


def test_concurrent_mutual_removal_resolves_to_one_winner() -> None:
    w, alice, bob, _, topic = _setup()
    state = w.room(topic)
    w.append(alice, topic, compose_role(state, alice, bob.public_key, RoomRole.ADMIN))
    state = w.room(topic)
    ts = (w.tick() << 16)
    # neither saw the other's removal: same timestamp, no deps between them
    deps = [e.id for e, _ in w.topics[topic]]
    r1 = w.append(alice, topic, compose_remove(state, alice, bob.public_key), deps=[], timestamp=ts)
    r2 = w.append(bob, topic, compose_remove(state, bob, alice.public_key), deps=deps[-1:],
                  timestamp=ts)
    view = w.room(topic).view
    winner, loser = (r1, r2) if r1.id < r2.id else (r2, r1)
    assert winner.id in view.order
    assert view.rejected[loser.id] is Rejection.NOT_MEMBER
    assert set(view.members) == {winner.author}


def test_rekey_reasons() -> None:
    w, alice, bob, carol, topic = _setup()
    state = w.room(topic)
    state.policy = RekeyPolicy(max_age_ms=1_000, max_messages=2)
    assert state.rekey_reason(w.now_ms) is RekeyReason.NO_EPOCH
    with pytest.raises(RekeyRequired):
        compose_text(state, alice, "x", seq=2, now_ms=w.now_ms)
    w.append(alice, topic, compose_rekey(state, alice, w.now_ms))
    state.apply(w.topics[topic])
    assert state.rekey_reason(w.now_ms) is None
    assert set(state.view.current_epoch.recipients) == {alice.public_key, bob.public_key}  # type: ignore[union-attr]
    for i in range(2):
        w.append(alice, topic, compose_text(state, alice, f"m{i}",
                                            seq=w.next_seq(alice, topic), now_ms=w.now_ms))
    state.apply(w.topics[topic])
    assert state.rekey_reason(w.now_ms) is RekeyReason.MESSAGE_LIMIT
    w.append(alice, topic, compose_rekey(state, alice, w.now_ms))
    state.apply(w.topics[topic])
    assert state.rekey_reason(w.now_ms + 5_000) is RekeyReason.EXPIRED
    a_org = next(iter(w.orgs))
    w.append(alice, topic, compose_add(state, alice, carol.public_key, a_org))
    state.apply(w.topics[topic])
    assert state.rekey_reason(w.now_ms) is RekeyReason.MEMBERSHIP_CHANGED
    w.append(alice, topic, compose_rekey(state, alice, w.now_ms))
    state.apply(w.topics[topic])
    assert state.rekey_reason(w.now_ms) is None
    w.revoke(w.orgs[list(w.orgs)[1]], bob)
    state.update_orgs(w.org_states())
    assert state.rekey_reason(w.now_ms + 2) is RekeyReason.MEMBERSHIP_CHANGED
    assert bob.public_key not in state.active_members(w.now_ms + 2)


# --- determinism under arbitrary arrival order ---------------------------------------

OPS = ("add",) * 3 + ("message",) * 4 + ("role",) * 2 + ("remove", "leave", "relay_add",
                                                         "relay_add", "relay_remove")
RELAY_NODES = (b"\xa0" * 32, b"\xa1" * 32)


def _scenario(seed: int, n_ops: int, persons: bool = False,
              live: bool = False) -> tuple[World, bytes]:
    """A random room history by 5 devices of 2 orgs with partial, concurrent views:
    forbidden ops included (non-admins adding, outsiders writing, removed members
    writing on), colliding timestamps, random causal deps.

    With ``persons``: a0 and a1 are devices of one person of org A, b0 and b1 of one
    person of org B, a2 has no person, and a third device of the A person (a3) is
    certified too — so ops by or on one device act on the whole person.

    With ``live``: the clock advances between most writes, as in a live room, so
    most entries are the newest when written (RoomState's incremental path)."""
    rng = random.Random(seed)
    w = World()
    a, b = w.new_org(), w.new_org()
    pa = rng.randbytes(16) if persons else None
    pb = rng.randbytes(16) if persons else None
    devices = [(w.new_device(a, f"a{i}", person=(pa, pa, None)[i]), a.id) for i in range(3)]
    devices += [(w.new_device(b, f"b{i}", person=pb), b.id) for i in range(2)]
    if persons:
        devices.append((w.new_device(a, "a3", person=pa), a.id))
    creator = devices[0][0]
    topic, create = compose_room(creator, a.id, RoomKind.GROUP,
                                 [MemberSpec(devices[3][0].public_key, b.id)], w.now_ms,
                                 nonce=rng.randbytes(16))
    w.append(creator, topic, create)
    orgs = w.org_states()
    for step in range(n_ops):
        members = RoomState(topic, orgs).apply(w.topics[topic]).members
        pool = [d for d in devices if d[0].public_key in members]
        # mostly current members act (so the room lives on); sometimes anyone does
        author, _ = rng.choice(pool if pool and rng.random() < 0.8 else devices)
        target, target_org = rng.choice(devices)
        op = rng.choice(OPS)
        if op == "add":
            payload = encode_room_payload(MemberAdd(target.public_key, target_org,
                                                    rng.choice(list(RoomRole))))
        elif op == "remove":
            payload = encode_room_payload(MemberRemove(target.public_key))
        elif op == "leave":
            payload = encode_room_payload(MemberLeave())
        elif op == "role":
            payload = encode_room_payload(MemberRole(target.public_key,
                                                     rng.choice(list(RoomRole))))
        elif op == "relay_add":  # a node, or now and then a device key
            node = rng.choice((*RELAY_NODES, target.public_key))
            payload = encode_room_payload(RelayAdd(node, rng.choice((a.id, b.id))))
        elif op == "relay_remove":
            payload = encode_room_payload(RelayRemove(rng.choice((*RELAY_NODES,
                                                                  target.public_key))))
        else:
            payload = encode_room_payload(Sealed(rng.randbytes(32), rng.randbytes(24),
                                                 b"m%d" % step))
        others = [e for e, _ in w.topics[topic] if e.author != author.public_key]
        deps = [e.id for e in rng.sample(others, k=min(len(others), rng.randint(0, 2)))]
        if live and rng.random() < 0.85:
            ts = w.tick(rng.randint(0, 2)) << 16
        else:
            ts = (w.now_ms + rng.randint(0, 3)) << 16
        w.append(author, topic, payload, deps=deps, timestamp=ts)
    if rng.random() < 0.5:
        w.revoke(b, devices[3][0], effective_ts=(w.now_ms + rng.randint(0, 3)) << 16,
                 seal_logs=False)
    return w, topic


def _replay_check(state: RoomState) -> None:
    """Independent check of the permission rules over the resolved order: replay the
    accepted ops blindly and assert each author was a member (an admin for membership
    changes) just before its op, and that the replay ends in the resolved membership.

    Membership is per principal: ``org || person`` for a device its org certifies for
    a person, else the device key; a principal's member devices are every device
    the org certifies for that person."""
    view = state.view
    orgs = state.orgs
    assert view.create is not None
    home: dict[bytes, bytes] = {}  # device -> the org its current principal was added with

    def principal(device: bytes, org: bytes) -> bytes:
        person = orgs[org].person_of(device) if org in orgs else None
        return device if person is None else org + person

    def add(device: bytes, org: bytes, role: RoomRole) -> None:
        key = principal(device, org)
        if key not in roles and device not in home:
            roles[key] = role
            home[device] = org

    def of(device: bytes) -> bytes:
        if device in home:
            return principal(device, home[device])
        for key in roles:  # another device of a member person
            if len(key) == 48 and device in orgs[key[:32]].person_devices(key[32:]):
                return key
        raise AssertionError("not a member")

    roles: dict[bytes, RoomRole] = {}
    relays: dict[bytes, bytes] = {}
    add(view.create.creator, view.create.creator_org, RoomRole.ADMIN)
    for spec in view.create.members:
        add(spec.device, spec.org, spec.role)
    for applied in view.applied[1:]:
        who = of(applied.entry.author)
        assert applied.author_role is roles[who]
        assert applied.author_person == (who[32:] if len(who) == 48 else None)
        p = applied.payload
        if isinstance(p, MemberAdd | MemberRemove | MemberRole | RelayAdd | RelayRemove):
            assert roles[who] is RoomRole.ADMIN
        if isinstance(p, RelayAdd):
            assert p.node not in relays
            relays[p.node] = p.org
        elif isinstance(p, RelayRemove):
            del relays[p.node]
        if isinstance(p, MemberAdd):
            assert principal(p.device, p.org) not in roles
            add(p.device, p.org, p.role)
        elif isinstance(p, MemberRemove | MemberLeave):
            gone = of(p.device) if isinstance(p, MemberRemove) else who
            del roles[gone]
            home = {d: o for d, o in home.items() if principal(d, o) != gone}
        elif isinstance(p, MemberRole):
            roles[of(p.device)] = p.role
    assert roles == {m.principal: m.role for m in view.members.values()}
    assert relays == view.relays
    for device, member in view.members.items():
        assert member.device == device
        if member.person is not None:  # every device of the person, no other
            assert set(orgs[member.org].person_devices(member.person)) == {
                d for d, m in view.members.items() if m.principal == member.principal}


def _arrive(items: list[Item], rng: random.Random, orgs: dict[bytes, object]) -> RoomState:
    """Feed a fresh RoomState in random chunks; some payloads arrive only later."""
    shuffled = items[:]
    rng.shuffle(shuffled)
    topic = items[0][0].topic
    state = RoomState(topic, orgs)  # type: ignore[arg-type]
    late: list[Item] = []
    while shuffled:
        k = rng.randint(1, 4)
        chunk, shuffled = shuffled[:k], shuffled[k:]
        fed: list[tuple[Entry, bytes | None]] = []
        for entry, payload in chunk:
            if rng.random() < 0.2:
                fed.append((entry, None))
                late.append((entry, payload))
            else:
                fed.append((entry, payload))
        state.apply(fed)
    state.apply(late)
    return state


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 40), st.booleans())
def test_every_arrival_order_gives_the_same_room(seed: int, n_ops: int, persons: bool) -> None:
    w, topic = _scenario(seed, n_ops, persons)
    orgs = w.org_states()
    items = w.topics[topic]
    reference = w.room(topic)
    _replay_check(reference)
    rng = random.Random(seed ^ 0x5EED)
    for _ in range(4):
        state = _arrive(items, rng, orgs)  # type: ignore[arg-type]
        assert state.view.members == reference.view.members
        assert state.view.order == reference.view.order
        assert state.view.rejected == reference.view.rejected
        assert state.view.relays == reference.view.relays
        assert [e.id for e in state.view.epochs] == [e.id for e in reference.view.epochs]


# --- incremental application (RoomState.apply) ---------------------------------------


def _with_epochs(seed: int, n_ops: int) -> tuple[World, bytes]:
    """:func:`_scenario` plus EPOCH_KEYS entries and SEALED entries naming them,
    written by random devices (members or not), so epochs and per-epoch counts vary.
    Odd seeds use persons (several devices per member person); every other pair
    of seeds is a live room (mostly increasing timestamps: the incremental path)."""
    live = bool(seed & 2)
    w, topic = _scenario(seed, n_ops, persons=bool(seed & 1), live=live)
    rng = random.Random(seed ^ 0xE90C)
    devices = [d for org in w.orgs.values() for d in org.devices.values()]
    epochs: list[bytes] = []
    for _ in range(rng.randint(0, 6)):
        author = rng.choice(devices)
        if epochs and rng.random() < 0.6:
            payload = encode_room_payload(Sealed(rng.choice(epochs), rng.randbytes(24), b"x"))
        else:
            keys = sorted(d.public_key for d in rng.sample(devices, k=rng.randint(1, 3)))
            payload = encode_room_payload(EpochKeys(tuple(
                (k, rng.randbytes(SEALED_SECRET_SIZE)) for k in keys)))
        ts = (w.tick(rng.randint(0, 1)) if live else w.now_ms + rng.randint(-2, 3)) << 16
        entry = w.append(author, topic, payload, timestamp=ts)
        if isinstance(decode_room_payload(payload), EpochKeys):
            epochs.append(entry.id)
    return w, topic


def _batches(items: list[Item], rng: random.Random, mode: str) -> list[list[Item]]:
    """Arrival of ``items`` in batches: ``ordered`` (as written: causal, the usual
    live case), ``swapped`` (as written with a few neighbours swapped) or
    ``shuffled``; some payloads arrive only in a later batch, some never."""
    order = items[:]
    if mode == "shuffled":
        rng.shuffle(order)
    elif mode == "swapped":
        for _ in range(max(1, len(order) // 8)):
            i = rng.randrange(len(order))
            j = min(len(order) - 1, i + 1)
            order[i], order[j] = order[j], order[i]
    batches: list[list[Item]] = []
    late: list[Item] = []
    while order:
        k = rng.choice((1, 1, 1, 2, 3, 5))
        chunk, order = order[:k], order[k:]
        batch: list[Item] = []
        for entry, payload in chunk:
            roll = rng.random()
            if roll < 0.1:
                batch.append((entry, None))
                late.append((entry, payload))
            elif roll < 0.13:
                batch.append((entry, None))  # payload never arrives (erased elsewhere)
            else:
                batch.append((entry, payload))
        if late and rng.random() < 0.3:
            batch.append(late.pop(0))
        batches.append(batch)
    if late:
        batches.append(late)
    return batches


def _same_view(state: RoomState, orgs: dict[bytes, object]) -> None:
    reference = resolve_room(state.topic, state.items(), orgs)  # type: ignore[arg-type]
    view = state.view
    assert view.create == reference.create
    assert view.members == reference.members
    assert view.order == reference.order
    assert view.applied == reference.applied
    assert view.rejected == reference.rejected
    assert view.epochs == reference.epochs
    assert view.relays == reference.relays
    for epoch in reference.epochs:
        assert state.sealed_count(epoch.id) == sum(
            1 for a in reference.applied
            if isinstance(a.payload, Sealed) and a.payload.epoch == epoch.id)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 30),
       st.sampled_from(["ordered", "ordered", "swapped", "shuffled"]))
def test_incremental_state_equals_full_resolution(seed: int, n_ops: int, mode: str) -> None:
    """After every batch, in any arrival order, RoomState.view (mostly applied
    incrementally) equals resolve_room over the entries known so far."""
    w, topic = _with_epochs(seed, n_ops)
    orgs = w.org_states()
    rng = random.Random(seed ^ 0xBA7C)
    items = list(w.topics[topic])
    if rng.random() < 0.3:  # an entry of another topic slipped in
        items.insert(rng.randrange(len(items) + 1), next(iter(w.topics.values()))[0])
    state = RoomState(topic, orgs)  # type: ignore[arg-type]
    for batch in _batches(items, rng, mode):
        state.apply(batch)
        _same_view(state, orgs)  # type: ignore[arg-type]
    if rng.random() < 0.3:  # an org update re-resolves and keeps going incrementally
        state.update_orgs(orgs)
        _same_view(state, orgs)  # type: ignore[arg-type]


def test_entries_in_order_take_the_incremental_path() -> None:
    """Appending newest entries one by one re-resolves only until the room exists
    and when an older entry arrives."""
    w, alice, bob, _carol, topic = _setup()
    state = w.room(topic)
    w.append(alice, topic, compose_rekey(state, alice, w.now_ms))
    state.apply(w.topics[topic])
    base = state.full_resolves
    for i in range(20):
        author = alice if i % 2 else bob
        w.append(author, topic, compose_text(state, author, f"m{i}",
                                             seq=w.next_seq(author, topic), now_ms=w.now_ms))
        state.apply(w.topics[topic][-1:])
    assert state.full_resolves == base
    epoch = state.view.current_epoch
    assert epoch is not None and state.sealed_count(epoch.id) == 20
    # concurrent with alice's newest (no deps, stamped before it): a full resolve
    late = w.append(bob, topic, compose_text(state, bob, "late", seq=w.next_seq(bob, topic),
                                             now_ms=w.now_ms),
                    deps=[], timestamp=(w.now_ms - 1) << 16)
    state.apply([(late, w.topics[topic][-1][1])])
    assert state.full_resolves == base + 1
    assert state.view.order.index(late.id) < len(state.view.order) - 1
    assert state.view == resolve_room(topic, state.items(), state.orgs)


# --- persons: membership per principal -------------------------------------------------


def _person_setup() -> tuple[World, Identity, Identity, Identity, Identity, bytes, bytes]:
    """Org A: alice (creator, no person). Org B: person P with phone and laptop; the
    room is created with the phone only."""
    w = World()
    a, b = w.new_org(), w.new_org()
    alice = w.new_device(a, "alice")
    p = os.urandom(16)
    phone = w.new_device(b, "phone", person=p)
    laptop = w.new_device(b, "laptop", person=p)
    other = w.new_device(b, "ward-tablet")  # no person: a device principal
    topic, create = compose_room(alice, a.id, RoomKind.GROUP,
                                 [MemberSpec(phone.public_key, b.id)], w.now_ms)
    w.append(alice, topic, create)
    return w, alice, phone, laptop, other, topic, p


def test_adding_a_persons_device_makes_the_person_the_member() -> None:
    w, alice, phone, laptop, other, topic, p = _person_setup()
    state = w.room(topic)
    members = state.members
    assert set(members) == {alice.public_key, phone.public_key, laptop.public_key}
    assert members[laptop.public_key].person == p == members[phone.public_key].person
    assert members[laptop.public_key].principal == members[phone.public_key].principal
    assert members[alice.public_key].person is None
    assert members[alice.public_key].principal == alice.public_key
    w.append(alice, topic, compose_rekey(state, alice, w.now_ms))
    state = w.room(topic)
    epoch = state.view.current_epoch
    assert epoch is not None
    assert set(epoch.recipients) == {alice.public_key, phone.public_key, laptop.public_key}
    # the laptop (never named in the room) writes, attributed to the person
    text = w.append(laptop, topic, compose_text(state, laptop, "hi", seq=1, now_ms=w.now_ms))
    view = w.room(topic).view
    assert text.id in view.order
    applied = view.applied[view.order.index(text.id)]
    assert applied.author_person == p and applied.author_role is RoomRole.MEMBER
    # a device without a person stays outside
    with pytest.raises(NotPermitted):
        compose_text(state, other, "x", seq=1, now_ms=w.now_ms)
    # the person is one member: adding another of its devices is "already member"
    with pytest.raises(NotPermitted):
        compose_add(state, alice, laptop.public_key, w.orgs[list(w.orgs)[1]].id)
    dup = w.append(alice, topic, encode_room_payload(
        MemberAdd(laptop.public_key, w.orgs[list(w.orgs)[1]].id)))
    assert w.room(topic).view.rejected[dup.id] is Rejection.ALREADY_MEMBER


def test_ops_naming_any_device_act_on_the_person() -> None:
    w, alice, phone, laptop, _, topic, _ = _person_setup()
    state = w.room(topic)
    # role change naming the laptop applies to the phone too
    w.append(alice, topic, compose_role(state, alice, laptop.public_key, RoomRole.ADMIN))
    state = w.room(topic)
    assert state.members[phone.public_key].role is RoomRole.ADMIN
    assert state.members[laptop.public_key].role is RoomRole.ADMIN
    # removal naming the laptop removes the person (both devices)
    w.append(alice, topic, compose_remove(state, alice, laptop.public_key))
    state = w.room(topic)
    assert set(state.members) == {alice.public_key}
    late = w.append(phone, topic, encode_room_payload(
        Sealed(os.urandom(32), os.urandom(24), b"x")))
    assert w.room(topic).view.rejected[late.id] is Rejection.NOT_MEMBER


def test_leave_by_any_device_removes_the_person() -> None:
    w, alice, _, laptop, _, topic, _ = _person_setup()
    state = w.room(topic)
    w.append(laptop, topic, compose_leave(state, laptop))
    assert set(w.room(topic).members) == {alice.public_key}


def test_revoking_one_device_keeps_the_person_in_the_room() -> None:
    w, alice, phone, laptop, _, topic, _ = _person_setup()
    state = w.room(topic)
    w.append(alice, topic, compose_rekey(state, alice, w.now_ms))
    state = w.room(topic)
    assert state.rekey_reason(w.now_ms) is None
    b = w.orgs[list(w.orgs)[1]]
    w.revoke(b, phone)
    w.tick(5)
    state.update_orgs(w.org_states())
    assert state.rekey_reason(w.now_ms) is RekeyReason.MEMBERSHIP_CHANGED
    assert set(state.active_members(w.now_ms)) == {alice.public_key, laptop.public_key}
    assert phone.public_key in state.members  # still a member device, inactive
    w.append(laptop, topic, compose_rekey(state, laptop, w.now_ms))
    state = w.room(topic)
    epoch = state.view.current_epoch
    assert epoch is not None and set(epoch.recipients) == {alice.public_key, laptop.public_key}
    assert state.rekey_reason(w.now_ms) is None
    w.append(laptop, topic, compose_text(state, laptop, "still here",
                                         seq=w.next_seq(laptop, topic), now_ms=w.now_ms))
    assert not w.room(topic).view.rejected


def test_a_new_device_of_a_member_person_triggers_a_rekey() -> None:
    w, alice, _, _, _, topic, p = _person_setup()
    state = w.room(topic)
    w.append(alice, topic, compose_rekey(state, alice, w.now_ms))
    state = w.room(topic)
    assert state.rekey_reason(w.now_ms) is None
    tablet = w.new_device(w.orgs[list(w.orgs)[1]], "tablet", person=p)
    state.update_orgs(w.org_states())
    assert tablet.public_key in state.members
    assert state.rekey_reason(w.now_ms) is RekeyReason.MEMBERSHIP_CHANGED
    assert tablet.public_key in state.active_members(w.now_ms)
    w.append(tablet, topic, compose_rekey(state, tablet, w.now_ms))
    state = w.room(topic)
    epoch = state.view.current_epoch
    assert epoch is not None and tablet.public_key in epoch.recipients
    assert not state.view.rejected


def test_person_of_another_org_is_not_the_same_member() -> None:
    """Person ids are scoped by their organisation: the same 16 bytes in another org
    is another principal."""
    w, alice, phone, _, _, topic, p = _person_setup()
    a = w.orgs[next(iter(w.orgs))]
    namesake = w.new_device(a, "namesake", person=p)
    state = w.room(topic)
    assert namesake.public_key not in state.members
    w.append(alice, topic, compose_add(state, alice, namesake.public_key, a.id))
    state = w.room(topic)
    assert state.members[namesake.public_key].principal != state.members[phone.public_key].principal
