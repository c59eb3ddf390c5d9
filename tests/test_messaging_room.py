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
    MemberAdd,
    MemberLeave,
    MemberRemove,
    MemberRole,
    RoomCreate,
    Sealed,
    encode_room_payload,
)


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

OPS = ("add",) * 3 + ("message",) * 4 + ("role",) * 2 + ("remove", "leave")


def _scenario(seed: int, n_ops: int) -> tuple[World, bytes]:
    """A random room history by 5 devices of 2 orgs with partial, concurrent views:
    forbidden ops included (non-admins adding, outsiders writing, removed members
    writing on), colliding timestamps, random causal deps."""
    rng = random.Random(seed)
    w = World()
    a, b = w.new_org(), w.new_org()
    devices = [(w.new_device(a, f"a{i}"), a.id) for i in range(3)]
    devices += [(w.new_device(b, f"b{i}"), b.id) for i in range(2)]
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
        else:
            payload = encode_room_payload(Sealed(rng.randbytes(32), rng.randbytes(24),
                                                 b"m%d" % step))
        others = [e for e, _ in w.topics[topic] if e.author != author.public_key]
        deps = [e.id for e in rng.sample(others, k=min(len(others), rng.randint(0, 2)))]
        ts = (w.now_ms + rng.randint(0, 3)) << 16
        w.append(author, topic, payload, deps=deps, timestamp=ts)
    if rng.random() < 0.5:
        w.revoke(b, devices[3][0], effective_ts=(w.now_ms + rng.randint(0, 3)) << 16,
                 seal_logs=False)
    return w, topic


def _replay_check(state: RoomState) -> None:
    """Independent check of the permission rules over the resolved order: replay the
    accepted ops blindly and assert each author was a member (an admin for membership
    changes) just before its op, and that the replay ends in the resolved membership."""
    view = state.view
    assert view.create is not None
    roles = {view.create.creator: RoomRole.ADMIN}
    roles.update({m.device: m.role for m in view.create.members})
    for applied in view.applied[1:]:
        who = applied.entry.author
        assert who in roles
        assert applied.author_role is roles[who]
        p = applied.payload
        if isinstance(p, MemberAdd | MemberRemove | MemberRole):
            assert roles[who] is RoomRole.ADMIN
        if isinstance(p, MemberAdd):
            roles[p.device] = p.role
        elif isinstance(p, MemberRemove):
            del roles[p.device]
        elif isinstance(p, MemberRole):
            roles[p.device] = p.role
        elif isinstance(p, MemberLeave):
            del roles[who]
    assert roles == {d: m.role for d, m in view.members.items()}


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
@given(st.integers(0, 2**32), st.integers(1, 40))
def test_every_arrival_order_gives_the_same_room(seed: int, n_ops: int) -> None:
    w, topic = _scenario(seed, n_ops)
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
        assert [e.id for e in state.view.epochs] == [e.id for e in reference.view.epochs]
