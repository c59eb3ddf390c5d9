"""Interest changes inside an established session (INTEREST / INTEREST_GRANT):
two honest machines over a fake link, and a raw malicious peer."""

from __future__ import annotations

import os

import pytest
from chain_helpers import build_chain

from p2pmsg.errors import LocalProtocolError, RemoteProtocolError
from p2pmsg.policy import TopicPolicy
from p2pmsg.sync import (
    AddInterest,
    InterestUpdated,
    Offer,
    State,
    SyncConfig,
    TopicSynced,
)
from p2pmsg.sync.frames import encode_frame
from p2pmsg.sync.messages import (
    MAX_TOPICS,
    Close,
    Interest,
    InterestGrant,
    MsgType,
    Range,
    RangeMode,
    Recon,
    decode_message,
)
from p2pmsg.sync.testing import ConnectionPair, RawPeer, SyncPeer


def _topic() -> bytes:
    return os.urandom(32)


def _peer() -> SyncPeer:
    return SyncPeer(os.urandom(32))


def _established(a: SyncPeer, b: SyncPeer, topics_a: list[bytes], topics_b: list[bytes],
                 config: SyncConfig | None = None) -> ConnectionPair:
    pair = ConnectionPair.connect(a, b, topics_a, topics_b, config)
    pair.run()
    assert a.c.state is State.ESTABLISHED and b.c.state is State.ESTABLISHED
    return pair


def _updates(p: SyncPeer) -> list[InterestUpdated]:
    return [e for e in p.events if isinstance(e, InterestUpdated)]


def test_added_topic_is_granted_reconciled_and_pushed_live() -> None:
    t1, t2 = _topic(), _topic()
    a, b = _peer(), _peer()
    old = build_chain(4, topic=t2)
    b.add(old.entries, old.payloads)
    pair = _established(a, b, [t1], [t1])
    assert a.entry_ids([t2]) == set()  # not asked at the handshake
    a.send(AddInterest([t2]))
    pair.run()
    assert a.entry_ids([t2]) == {e.id for e in old.entries}
    assert a.c.peer_granted == {t1, t2} and b.c.granted == {t1, t2}
    assert TopicSynced(t2) in a.events
    (ua,), (ub,) = _updates(a), _updates(b)
    assert ua.received == {t2} and ua.denied == frozenset() and ua.peer_granted == {t1, t2}
    assert ub.served == {t2} and ub.topics == {t1, t2}
    # from now on new entries of t2 are pushed live
    more = build_chain(2, identity=old.identity, topic=t2, after=old.entries[-1])
    b.add(more.entries, more.payloads)
    b.send(Offer(more.entries, more.payloads))
    pair.run()
    assert a.entry_ids([t2]) == {e.id for e in old.entries + more.entries}
    assert a.c.quiescent and b.c.quiescent


def test_policy_is_asked_again_on_both_sides() -> None:
    t1, denied_by_b, denied_by_a = _topic(), _topic(), _topic()
    a, b = _peer(), _peer()
    b.policy = TopicPolicy({t1: [a.node_id]})  # A may not read denied_by_b
    a.policy = TopicPolicy({t1: [b.node_id], denied_by_b: [b.node_id]})
    secret = build_chain(2, topic=denied_by_b)
    b.add(secret.entries, secret.payloads)
    pair = _established(a, b, [t1], [t1])
    sent_before = a.c.stats.sent_by_type.get("INTEREST", 0)
    # A's own policy: B may not hold denied_by_a, so A does not even name it.
    a.send(AddInterest([denied_by_a]))
    assert a.c.stats.sent_by_type.get("INTEREST", 0) == sent_before
    a.send(AddInterest([denied_by_b]))
    pair.run()
    (ua,) = _updates(a)
    assert ua.received == frozenset() and ua.denied == {denied_by_b}
    assert a.entry_ids([denied_by_b]) == set()
    assert denied_by_b not in b.c.granted
    b.send(Offer(secret.entries, secret.payloads))  # not granted: never sent
    pair.run()
    assert a.entry_ids([denied_by_b]) == set()
    # a denied topic may be asked again (the policy may have changed meanwhile)
    b.policy = TopicPolicy({t1: [a.node_id], denied_by_b: [a.node_id]})
    b.c._policy = b.policy
    a.send(AddInterest([denied_by_b]))
    pair.run()
    assert a.entry_ids([denied_by_b]) == {e.id for e in secret.entries}


@pytest.mark.parametrize("a_initiates", [True, False])
def test_one_way_topic_becomes_mutual(a_initiates: bool) -> None:
    """A served t to B one-way; A then asks for t as well: both end with the union,
    and later anti-entropy rounds on t run without crossing."""
    t = _topic()
    a, b = _peer(), _peer()
    ca, cb = build_chain(3, topic=t), build_chain(5, topic=t)
    a.add(ca.entries, ca.payloads)
    b.add(cb.entries, cb.payloads)
    config = SyncConfig(resync_interval=30.0)
    first, second = (a, b) if a_initiates else (b, a)
    pair = ConnectionPair.connect(first, second, [] if a_initiates else [t],
                                  [t] if a_initiates else [], config)
    pair.run()
    assert b.entry_ids([t]) == {e.id for e in ca.entries + cb.entries}
    assert a.entry_ids([t]) == {e.id for e in ca.entries}  # A did not ask
    a.send(AddInterest([t]))
    pair.run()
    union = {e.id for e in ca.entries + cb.entries}
    assert a.entry_ids([t]) == union and b.entry_ids([t]) == union
    assert a.c._recon[t].opener and not b.c._recon[t].opener  # A served first
    # a later entry on B arrives through the timer round (no live offer)
    more = build_chain(1, identity=cb.identity, topic=t, after=cb.entries[-1])
    b.add(more.entries, more.payloads)
    for step in range(1, 4):
        pair.now = 40.0 * step
        a.c.handle_timer(pair.now)
        b.c.handle_timer(pair.now)
        pair.run()
    assert a.entry_ids([t]) == union | {more.entries[0].id}
    assert a.error is None and b.error is None
    assert a.c.state is State.ESTABLISHED and b.c.state is State.ESTABLISHED


@pytest.mark.parametrize("grants", [(True, True), (True, False), (False, True)])
def test_crossing_interests_agree_on_one_opener(grants: tuple[bool, bool]) -> None:
    """Both sides ask for the same new topic at once; whatever each policy grants,
    they converge without a protocol error."""
    t0, t = _topic(), _topic()
    a, b = _peer(), _peer()
    a_grants, b_grants = grants
    a.policy = TopicPolicy({t0: [b.node_id], **({t: [b.node_id]} if a_grants else {})})
    b.policy = TopicPolicy({t0: [a.node_id], **({t: [a.node_id]} if b_grants else {})})
    # An unrelated policy also filters what each side asks: ask regardless of it.
    ca, cb = build_chain(2, topic=t), build_chain(3, topic=t)
    a.add(ca.entries, ca.payloads)
    b.add(cb.entries, cb.payloads)
    pair = _established(a, b, [t0], [t0])
    # Both INTERESTs are on the wire before either is delivered.
    a.c._policy = TopicPolicy({t0: [b.node_id], t: [b.node_id]})
    b.c._policy = TopicPolicy({t0: [a.node_id], t: [a.node_id]})
    a.send(AddInterest([t]))
    b.send(AddInterest([t]))
    a.c._policy, b.c._policy = a.policy, b.policy
    pair.run()
    assert a.error is None and b.error is None
    ids_a, ids_b = {e.id for e in ca.entries}, {e.id for e in cb.entries}
    # A holds B's entries iff B granted A's ask, and vice versa
    assert a.entry_ids([t]) == ids_a | (ids_b if b_grants else set())
    assert b.entry_ids([t]) == ids_b | (ids_a if a_grants else set())
    if a_grants and b_grants:
        assert a.c._recon[t].opener and not b.c._recon[t].opener  # A initiated
    assert a.c.quiescent and b.c.quiescent


def test_add_interest_before_the_handshake_completes() -> None:
    t1, t2, t3 = _topic(), _topic(), _topic()
    a, b = _peer(), _peer()
    for t in (t2, t3):
        chain = build_chain(2, topic=t)
        b.add(chain.entries, chain.payloads)
    a.connect(b.node_id, initiator=True)
    b.connect(a.node_id, initiator=False)
    a.send(AddInterest([t2]))  # before start(): joins the HELLO
    pair = ConnectionPair(a, b)
    a.c.start([t1], now=0.0)
    b.c.start([t1], now=0.0)
    a.send(AddInterest([t3]))  # HELLO_SENT: sent once established
    assert a.c.stats.sent_by_type.get("INTEREST", 0) == 0
    pair.run()
    assert a.c.peer_granted == {t1, t2, t3}
    assert a.c.stats.sent_by_type.get("INTEREST", 0) > 0
    assert len(a.entry_ids([t2, t3])) == 4


def test_add_interest_rejects_bad_topics_and_too_many() -> None:
    a, b = _peer(), _peer()
    pair = _established(a, b, [], [])
    with pytest.raises(LocalProtocolError):
        a.c.send(AddInterest([b"short"]))
    many = [os.urandom(32) for _ in range(MAX_TOPICS + 1)]
    with pytest.raises(LocalProtocolError):
        a.c.send(AddInterest(many))
    pair.run()
    assert a.c.state is State.ESTABLISHED


# -- a malicious peer ----------------------------------------------------------------

def _raw(topics: list[bytes], victim_topics: list[bytes] | None = None) -> RawPeer:
    raw = RawPeer(SyncPeer(os.urandom(32)))
    raw.establish(topics, victim_topics=victim_topics)
    raw.read()
    return raw


def _expect(raw: RawPeer, reason: str, msg: object) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        raw.send(msg)  # type: ignore[arg-type]
    assert info.value.reason == reason
    assert raw.victim.c.state is State.CLOSED
    assert Close(reason, "") in raw.read()


def test_interest_for_an_already_granted_topic() -> None:
    t = _topic()
    _expect(_raw([t]), "unexpected_topic", Interest((t,)))


def test_interest_grant_without_interest() -> None:
    _expect(_raw([]), "unexpected_message", InterestGrant(()))


def test_interest_grant_naming_an_unasked_topic() -> None:
    t, other = _topic(), _topic()
    raw = _raw([])
    raw.victim.send(AddInterest([t]))
    assert Interest((t,)) in raw.read()
    _expect(raw, "unexpected_topic", InterestGrant((other,)))


def test_interest_before_established() -> None:
    raw = RawPeer(SyncPeer(os.urandom(32)))
    raw.victim.connect(raw.node_id, initiator=False)
    raw.victim.c.start([])
    _expect(raw, "unexpected_message", Interest((_topic(),)))


def test_interest_beyond_the_topic_limit() -> None:
    raw = _raw([])
    first = tuple(sorted(os.urandom(32) for _ in range(MAX_TOPICS)))
    raw.send(Interest(first))
    (grant,) = [m for m in raw.read() if isinstance(m, InterestGrant)]
    assert len(grant.topics) == MAX_TOPICS
    _expect(raw, "too_many_topics", Interest((_topic(),)))


def test_granted_topic_is_pushed_and_nothing_unverified_stored() -> None:
    """The victim grants the raw peer's INTEREST and pushes its item list; a RECON
    asking for an answer on that (one-way) topic is a protocol error."""
    t = _topic()
    raw = _raw([])
    chain = build_chain(2, topic=t)
    raw.victim.add(chain.entries, chain.payloads)
    raw.send(Interest((t,)))
    out = raw.read()
    assert out[0] == InterestGrant((t,))
    assert any(isinstance(m, Recon) and m.topic == t for m in out[1:])
    _expect(raw, "unexpected_recon",
            Recon(t, False, (Range(None, RangeMode.FINGERPRINT, fingerprint=bytes(16)),)))


def test_interest_messages_decode_strictly() -> None:
    t = bytes(32)
    assert decode_message(Interest((t,)).encode()) == Interest((t,))
    assert decode_message(InterestGrant(()).encode()) == InterestGrant(())
    assert Interest((t,)).encode()[1] == MsgType.INTEREST == 13
    assert InterestGrant((t,)).encode()[1] == MsgType.INTEREST_GRANT == 14
    for bad in (Interest(()), Interest((t, t)), InterestGrant((b"x",))):
        with pytest.raises(RemoteProtocolError) as info:
            decode_message(bad.encode())
        assert info.value.reason == "malformed_frame"
    assert encode_frame(Interest((t,)).encode())[:4] == len(Interest((t,)).encode()).to_bytes(
        4, "big")
