"""GovernancePolicy: federation + local rules + need-to-know, down to the sync protocol."""

from __future__ import annotations

import dataclasses

import pytest
from messaging_helpers import Org, World

from p2pmsg.governance.federation import (
    FederationRegistry,
    Organisation,
    OrgKind,
    issue_federation_list,
)
from p2pmsg.governance.policy import GovernancePolicy, LocalDefault, LocalPolicy
from p2pmsg.identity import Identity
from p2pmsg.messaging import MemberSpec, RoomKind, compose_room, control_topic
from p2pmsg.messaging.compose import compose_add, compose_rekey, compose_text
from p2pmsg.policy import AllowAllPolicy, Policy
from p2pmsg.sync.testing import ConnectionPair, SyncPeer

T0 = 1_700_000_000_000
ISSUER = Identity.from_seed(b"\x07" * 32)


class Fed:
    """Three organisations A, B, C with one node each, a room R1 (A+B), R2 (A+C)."""

    def __init__(self) -> None:
        self.world = w = World(now_ms=T0)
        self.a, self.b, self.c = w.new_org(), w.new_org(), w.new_org()
        self.node = {o.id: Identity.generate() for o in (self.a, self.b, self.c)}
        self.alice = w.new_device(self.a, "alice")
        self.bob = w.new_device(self.b, "bob")
        self.carol = w.new_device(self.c, "carol")
        self.r1 = self._room(self.alice, self.a, [MemberSpec(self.bob.public_key, self.b.id)])
        self.r2 = self._room(self.alice, self.a, [MemberSpec(self.carol.public_key, self.c.id)])
        self.now = T0 + 10_000
        self.registry = FederationRegistry(ISSUER.public_key)
        self.registry.accept(issue_federation_list(ISSUER, 1, T0, [
            Organisation(o.id, name, OrgKind.HOSPITAL, (self.node[o.id].public_key,))
            for o, name in ((self.a, "A"), (self.b, "B"), (self.c, "C"))
        ]).raw, T0)

    def _room(self, creator: Identity, org: Org, members: list[MemberSpec]) -> bytes:
        w = self.world
        topic, create = compose_room(creator, org.id, RoomKind.GROUP, members, w.now_ms)
        w.append(creator, topic, create)
        state = w.room(topic)
        w.append(creator, topic, compose_rekey(state, creator, w.now_ms))
        state = w.room(topic)
        seq = w.next_seq(creator, topic)
        w.append(creator, topic, compose_text(state, creator, "secret of " + topic.hex()[:8],
                                              seq=seq, now_ms=w.now_ms))
        return topic

    def policy(self, local: LocalPolicy | None = None) -> GovernancePolicy:
        views = [self.world.room(t).view for t in (self.r1, self.r2)]
        return GovernancePolicy(self.registry, lambda: self.now, local, views)

    def nid(self, org: Org) -> bytes:
        return self.node[org.id].public_key


def test_is_a_policy_and_applies_need_to_know() -> None:
    f = Fed()
    p = f.policy()
    assert isinstance(p, Policy)
    for org in (f.a, f.b, f.c):
        assert p.allow_peer(f.nid(org))
    assert p.may_read(f.nid(f.b), f.r1) and not p.may_read(f.nid(f.b), f.r2)
    assert p.may_read(f.nid(f.c), f.r2) and not p.may_read(f.nid(f.c), f.r1)
    # control topics: of every organisation on the list, shared room or not (the
    # certificates are needed to create the first shared room: docs/gdpr.md)
    assert p.may_read(f.nid(f.b), control_topic(f.b.id))
    assert p.may_read(f.nid(f.b), control_topic(f.a.id))
    assert p.may_read(f.nid(f.b), control_topic(f.c.id))
    assert not p.may_read(f.nid(f.b), control_topic(Identity.generate().public_key))
    assert not p.may_read(f.nid(f.b), b"\x99" * 32)  # unknown topic
    stranger = Identity.generate().public_key
    assert not p.allow_peer(stranger) and not p.may_read(stranger, f.r1)
    decision = p.decide_peer(stranger)
    assert decision.status.value == "unknown"


def test_relay_and_membership_change() -> None:
    f = Fed()
    p = f.policy()
    p.declare_relay(f.r1, f.nid(f.c))
    assert p.may_read(f.nid(f.c), f.r1)
    # carol's org joins R1: now C reads it as a member org
    f2 = Fed()
    p2 = f2.policy()
    state = f2.world.room(f2.r1)
    f2.world.append(f2.alice, f2.r1,
                    compose_add(state, f2.alice, f2.carol.public_key, f2.c.id))
    assert not p2.may_read(f2.nid(f2.c), f2.r1)
    p2.update_room(f2.world.room(f2.r1).view)
    assert p2.may_read(f2.nid(f2.c), f2.r1)


def test_local_policy_exceptions_and_stale_list() -> None:
    f = Fed()
    deny_b = f.policy(LocalPolicy(deny_orgs=frozenset({f.b.id})))
    assert not deny_b.allow_peer(f.nid(f.b)) and not deny_b.may_read(f.nid(f.b), f.r1)
    assert deny_b.allow_peer(f.nid(f.c))
    but_node = f.policy(LocalPolicy(deny_orgs=frozenset({f.b.id}),
                                    allow_keys=frozenset({f.nid(f.b)})))
    assert but_node.allow_peer(f.nid(f.b))
    deny_all = f.policy(LocalPolicy(LocalDefault.DENY_ALL, allow_orgs=frozenset({f.c.id})))
    assert deny_all.allow_peer(f.nid(f.c)) and not deny_all.allow_peer(f.nid(f.b))
    # an allow exception never admits a key the federation list does not name
    stranger = Identity.generate().public_key
    assert not f.policy(LocalPolicy(allow_keys=frozenset({stranger}))).allow_peer(stranger)
    # stale list: fail closed, with an explicit reason
    p = f.policy()
    f.now = T0 + 72 * 3600 * 1000
    decision = p.decide_peer(f.nid(f.b))
    assert not decision.allowed and decision.status.value == "stale"
    assert not p.may_read(f.nid(f.b), f.r1)


def _node_with_everything(f: Fed) -> SyncPeer:
    peer = SyncPeer(f.nid(f.a), policy=f.policy())
    for topic, items in f.world.topics.items():
        peer.add([e for e, _ in items], {e.id: p for e, p in items if p is not None})
        assert topic in peer.store.topics()
    return peer


def test_org_never_receives_a_room_it_has_no_part_in_at_protocol_level() -> None:
    f = Fed()
    a = _node_with_everything(f)
    all_topics = sorted(f.world.topics)
    # C's node asks for everything (its own policy lets A read anything)
    c = SyncPeer(f.nid(f.c), policy=AllowAllPolicy())
    pair = ConnectionPair.connect(a, c, all_topics, all_topics)
    pair.run()
    assert c.error is None and a.error is None
    assert c.entry_ids([f.r1]) == set()  # not a single entry of R1
    # B's control topic (root-signed certificates, readable by every listed org)
    assert c.entry_ids([control_topic(f.b.id)]) == a.entry_ids([control_topic(f.b.id)])
    assert c.entry_ids([f.r2]) == a.entry_ids([f.r2]) != set()
    assert c.entry_ids([control_topic(f.a.id)]) == a.entry_ids([control_topic(f.a.id)])
    # and no byte of R1's payloads crossed the link at all
    r1_payloads = [p for _, p in f.world.topics[f.r1] if p is not None]
    received = [c.store.get_payload(i) for i in c.entry_ids(all_topics)]
    assert not any(p in r1_payloads for p in received)
    # B's node, in the same position, does get R1 (the test can fail)
    b = SyncPeer(f.nid(f.b), policy=AllowAllPolicy())
    a2 = _node_with_everything(f)
    ConnectionPair.connect(a2, b, all_topics, all_topics).run()
    assert b.entry_ids([f.r1]) == a2.entry_ids([f.r1]) != set()
    assert b.entry_ids([f.r2]) == set()


def test_refused_peer_gets_nothing() -> None:
    f = Fed()
    a = _node_with_everything(f)
    rogue = SyncPeer(Identity.generate().public_key, policy=AllowAllPolicy())
    all_topics = sorted(f.world.topics)
    pair = ConnectionPair.connect(a, rogue, all_topics, all_topics)
    pair.run()
    assert rogue.entry_ids(all_topics) == set()


def test_control_topics_of_listed_orgs_only_and_fail_closed() -> None:
    """Fix for the first cross-org room: a listed org with no shared room yet reads
    another listed org's control topic; an unlisted org's control topic, or any
    topic once the list is stale, is refused."""
    f = Fed()
    p = GovernancePolicy(f.registry, lambda: f.now)  # no rooms known at all
    for reader in (f.a, f.b, f.c):
        for owner in (f.a, f.b, f.c):
            assert p.may_read(f.nid(reader), control_topic(owner.id))
    outsider = f.world.new_org()
    assert not p.may_read(f.nid(f.b), control_topic(outsider.id))
    assert not p.may_read(f.nid(f.b), f.r1)  # rooms still need-to-know
    f.now = T0 + 72 * 3600 * 1000
    assert not p.may_read(f.nid(f.b), control_topic(f.a.id))


def test_expect_room_is_provisional_until_the_view_names_the_orgs() -> None:
    """An invitation makes the room readable by inviter and invitee orgs before any
    of its entries is stored; the room's own view then takes over."""
    f = Fed()
    p = GovernancePolicy(f.registry, lambda: f.now)
    changes: list[int] = []
    p.add_change_listener(lambda: changes.append(p.version))
    assert not p.may_read(f.nid(f.a), f.r1)
    p.expect_room(f.r1, (f.a.id, f.b.id))
    assert p.may_read(f.nid(f.a), f.r1) and p.may_read(f.nid(f.b), f.r1)
    assert not p.may_read(f.nid(f.c), f.r1)
    assert len(changes) == 1
    p.expect_room(f.r1, (f.a.id,))  # nothing new: no change announced
    assert len(changes) == 1
    # a partial view (only the create entry: the creator's org) keeps the invitee
    w = f.world
    full = w.room(f.r1).view
    partial = dataclasses.replace(full, members={
        k: m for k, m in full.members.items() if m.org == f.a.id})
    p.update_room(partial)
    assert p.may_read(f.nid(f.b), f.r1) and p.may_read(f.nid(f.a), f.r1)
    # the full view names both: provisional entry dropped, view alone decides
    p.update_room(w.room(f.r1).view)
    assert p.room_orgs(f.r1) == frozenset({f.a.id, f.b.id})
    # once a view is known, a (re-read) invitation cannot widen access
    p.expect_room(f.r1, (f.c.id,))
    assert not p.may_read(f.nid(f.c), f.r1)


def test_person_exceptions_admit_and_count_by_person() -> None:
    """deny_persons: a denied person's membership does not let their organisation's
    nodes read a room; allow_persons in deny-all mode: the organisation is admitted
    for exactly the rooms that person is in."""
    f = Fed()
    px = b"\x42" * 16
    dr_x = f.world.new_device(f.b, "dr-x", person=px)
    f.world.append(f.alice, f.r2, compose_add(f.world.room(f.r2), f.alice,
                                               dr_x.public_key, f.b.id))
    views = [f.world.room(t).view for t in (f.r1, f.r2)]

    def policy(local: LocalPolicy) -> GovernancePolicy:
        p = GovernancePolicy(f.registry, lambda: f.now, local, views)
        p.update_persons(f.world.org_states())
        return p

    plain = policy(LocalPolicy())
    assert plain.may_read(f.nid(f.b), f.r1) and plain.may_read(f.nid(f.b), f.r2)
    denied = policy(LocalPolicy(deny_persons=frozenset({px})))
    assert denied.allow_peer(f.nid(f.b))  # the node itself is not the person
    assert denied.may_read(f.nid(f.b), f.r1) and not denied.may_read(f.nid(f.b), f.r2)
    only_x = policy(LocalPolicy(LocalDefault.DENY_ALL, allow_persons=frozenset({px})))
    decision = only_x.decide_peer(f.nid(f.b))
    assert decision.allowed and decision.reason == "organisation admitted for its allowed persons"
    assert only_x.may_read(f.nid(f.b), f.r2) and not only_x.may_read(f.nid(f.b), f.r1)
    assert not only_x.allow_peer(f.nid(f.c))  # no allowed person in C
    # rules changed at runtime are recounted (and listeners told)
    calls: list[int] = []
    plain.add_change_listener(lambda: calls.append(1))
    plain.set_local(LocalPolicy(deny_persons=frozenset({px})))
    assert calls and not plain.may_read(f.nid(f.b), f.r2)
    # a person's own device: the person rule decides unless a key rule is more specific
    local = LocalPolicy(deny_persons=frozenset({px}), allow_keys=frozenset({b"k" * 32}))
    assert local.decide(dr_x.public_key, f.b.id, px) == (False, "person denied by local policy")
    assert local.decide(b"k" * 32, f.b.id, px)[0]
    with pytest.raises(ValueError, match="both allowed and denied"):
        LocalPolicy(allow_persons=frozenset({px}), deny_persons=frozenset({px}))


def test_relay_declared_in_the_room_reads_it_at_protocol_level() -> None:
    """Org C's node is made a relay of R1 (A+B) by a RELAY_ADD entry: A's node serves
    it R1 only after that entry is in A's view, and stops after RELAY_REMOVE. (C is
    a member org of R2: that is unrelated.)"""
    from p2pmsg.messaging.compose import compose_relay_add, compose_relay_remove

    f = Fed()
    w = f.world
    relay = f.nid(f.c)
    p = f.policy()
    changes: list[int] = []
    p.add_change_listener(lambda: changes.append(p.version))
    all_topics = sorted(w.topics)

    def sync_from_a() -> SyncPeer:
        a = SyncPeer(f.nid(f.a), policy=p)
        for items in w.topics.values():
            a.add([e for e, _ in items], {e.id: q for e, q in items if q is not None})
        c = SyncPeer(relay, policy=AllowAllPolicy())
        ConnectionPair.connect(a, c, all_topics, all_topics).run()
        assert a.error is None and c.error is None
        return c

    assert sync_from_a().entry_ids([f.r1]) == set()
    add = w.append(f.alice, f.r1, compose_relay_add(w.room(f.r1), f.alice, relay, f.c.id))
    assert not p.may_read(relay, f.r1)  # the policy has not seen the entry yet
    p.update_room(w.room(f.r1).view)
    assert changes and p.may_read(relay, f.r1)
    assert p.room_relays(f.r1) == {relay: f.c.id}
    assert p.room_orgs(f.r1) == frozenset({f.a.id, f.b.id})  # a relay is no member org
    got = sync_from_a()
    r1_ids = {e.id for e, _ in w.topics[f.r1]}
    assert got.entry_ids([f.r1]) == r1_ids and add.id in r1_ids
    # another node of org C (not the declared key) gets nothing
    assert not p.may_read(Identity.generate().public_key, f.r1)

    w.append(f.alice, f.r1, compose_relay_remove(w.room(f.r1), f.alice, relay))
    before = len(changes)
    p.update_room(w.room(f.r1).view)
    assert len(changes) == before + 1  # listeners (Node.revalidate_sessions) are told
    assert not p.may_read(relay, f.r1)
    assert sync_from_a().entry_ids([f.r1]) == set()


def test_declared_relay_must_be_listed_under_the_declared_org() -> None:
    f = Fed()
    w = f.world
    p = f.policy()
    from p2pmsg.messaging.compose import compose_relay_add

    # the admin names org B for C's node: the federation list says C -> no access
    w.append(f.alice, f.r1, compose_relay_add(w.room(f.r1), f.alice, f.nid(f.c), f.b.id))
    p.update_room(w.room(f.r1).view)
    assert not p.may_read(f.nid(f.c), f.r1)


def test_declare_relay_is_kept_alongside_the_views_relays() -> None:
    """Library use: a local declare_relay is not replaced by a later view."""
    from p2pmsg.messaging.compose import compose_relay_add, compose_relay_remove

    f = Fed()
    w = f.world
    p = f.policy()
    p.declare_relay(f.r1, f.nid(f.c))
    w.append(f.alice, f.r1, compose_relay_add(w.room(f.r1), f.alice, f.nid(f.c), f.c.id))
    w.append(f.alice, f.r1, compose_relay_remove(w.room(f.r1), f.alice, f.nid(f.c)))
    p.update_room(w.room(f.r1).view)
    assert p.may_read(f.nid(f.c), f.r1)
    assert p.room_relays(f.r1) == {f.nid(f.c): None}
