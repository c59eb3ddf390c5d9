"""The sync machine's protocol paths, two honest machines over a fake link."""

from __future__ import annotations

import os

import pytest
from chain_helpers import build_chain

from p2pmsg.entry import Entry
from p2pmsg.errors import LocalProtocolError
from p2pmsg.forks import ForkProof
from p2pmsg.policy import TopicPolicy
from p2pmsg.store.base import PayloadState
from p2pmsg.sync import (
    MAX_FRAME_SIZE,
    Close,
    ConnectionClosed,
    EntriesApplied,
    EntriesNeeded,
    EntriesReceived,
    ForkProofReceived,
    HelloReceived,
    Offer,
    PayloadsReceived,
    RequestPayloads,
    SendEntries,
    SendForkProof,
    State,
    SyncConfig,
    TopicSynced,
)
from p2pmsg.sync.messages import Ping, Pong, Recon, Request, Run
from p2pmsg.sync.states import TRANSITIONS, Trigger, mermaid
from p2pmsg.sync.testing import ConnectionPair, RawPeer, SyncPeer


def _topic() -> bytes:
    return os.urandom(32)


def _peer() -> SyncPeer:
    return SyncPeer(os.urandom(32))


def _ids(entries: list[Entry]) -> set[bytes]:
    return {e.id for e in entries}


def test_hello_grant_reports_the_authorised_intersection() -> None:
    t_shared, t_secret, t_unknown = _topic(), _topic(), _topic()
    a, b = _peer(), _peer()
    # B lets A read only t_shared; A lets B read t_shared and t_secret.
    b.policy = TopicPolicy({t_shared: [a.node_id]})
    a.policy = TopicPolicy({t_shared: [b.node_id], t_secret: [b.node_id]})
    pair = ConnectionPair.connect(a, b, [t_shared, t_secret, t_unknown], [t_shared, t_secret])
    pair.run()
    assert a.c.state is State.ESTABLISHED and b.c.state is State.ESTABLISHED
    hello_b = b.of_type(HelloReceived)[0]
    assert isinstance(hello_b, HelloReceived)
    assert hello_b.peer_id == a.node_id
    assert hello_b.topics == frozenset({t_shared})  # A asked 3, B's policy grants 1
    # B does not even ask for t_secret: its policy says A may not hold it, so B
    # neither sends nor accepts it from A ("never offered to, nor accepted from").
    assert hello_b.peer_granted == frozenset({t_shared})
    hello_a = a.of_type(HelloReceived)[0]
    assert isinstance(hello_a, HelloReceived)
    assert hello_a.topics == frozenset({t_shared})
    assert hello_a.peer_granted == frozenset({t_shared})


def test_unauthorised_topic_is_never_sent() -> None:
    open_t, secret = _topic(), _topic()
    a, b = _peer(), _peer()
    a.policy = TopicPolicy({open_t: [b.node_id]})  # B may not read `secret`
    chain_open = build_chain(3, topic=open_t)
    chain_secret = build_chain(3, topic=secret)
    a.add(chain_open.entries, chain_open.payloads)
    a.add(chain_secret.entries, chain_secret.payloads)
    pair = ConnectionPair.connect(a, b, [open_t, secret], [open_t, secret])
    raw_a_to_b = bytearray()
    orig = a.take_output

    def spy() -> bytes:
        data = orig()
        raw_a_to_b.extend(data)
        return data

    a.take_output = spy  # type: ignore[method-assign]
    pair.run()
    a.c.send(Offer(chain_secret.entries, chain_secret.payloads))
    pair.run()
    assert b.entry_ids([open_t]) == _ids(chain_open.entries)
    assert b.entry_ids([secret]) == set()
    # Not a byte of the secret topic: no topic id, no author, no entry, no payload.
    for needle in [secret, chain_secret.author,
                   *(e.id for e in chain_secret.entries), *chain_secret.payloads.values()]:
        assert needle not in raw_a_to_b


@pytest.mark.parametrize(
    ("heights_a", "heights_b"),
    [
        ([3, 1, 4], []),  # B empty
        ([], [2, 2]),  # A empty
        ([5, 5, 5], [5, 5, 5]),  # equal
        ([5, 1, 5], [2, 4, 5]),  # both ahead on different logs
        ([1] * 40, [1] * 40),  # many equal (above the leaf size: splits)
    ],
)
def test_reconciliation_converges(heights_a: list[int], heights_b: list[int]) -> None:
    topic = _topic()
    a, b = _peer(), _peer()
    n = max(len(heights_a), len(heights_b))
    chains = [build_chain(max([*heights_a[i:i + 1], *heights_b[i:i + 1]]), topic=topic)
              for i in range(n)]
    for peer, heights in ((a, heights_a), (b, heights_b)):
        for chain, h in zip(chains, heights, strict=False):
            peer.add(chain.entries[:h], chain.payloads)
    pair = ConnectionPair.connect(a, b, [topic], [topic])
    pair.run()
    want = set().union(*(_ids(c.entries[: max(x, y)]) for c, x, y in zip(
        chains, heights_a + [0] * n, heights_b + [0] * n, strict=False)))
    assert a.entry_ids([topic]) == want
    assert b.entry_ids([topic]) == want
    assert a.of_type(TopicSynced) == [TopicSynced(topic)]
    assert b.of_type(TopicSynced) == [TopicSynced(topic)]
    assert a.error is None and b.error is None


def test_many_logs_with_a_few_differences_both_directions() -> None:
    topic = _topic()
    a, b = _peer(), _peer()
    chains = [build_chain(2, topic=topic, payload_size=8) for _ in range(300)]
    for i, c in enumerate(chains):
        a.add(c.entries[: 2 if i % 50 == 0 else 1], c.payloads)
        b.add(c.entries[: 2 if i % 70 == 1 else 1], c.payloads)
    only_b = build_chain(1, topic=topic)
    b.add(only_b.entries, only_b.payloads)
    pair = ConnectionPair.connect(a, b, [topic], [topic])
    pair.run()
    assert a.entry_ids([topic]) == b.entry_ids([topic])
    assert len(a.entry_ids([topic])) == 300 + 6 + 5 + 1
    needs_a = a.of_type(EntriesNeeded)
    needs_b = b.of_type(EntriesNeeded)
    assert len(needs_a) == 6 and len(needs_b) == 6  # only the differing logs moved


def test_runs_carry_payloads_or_headers_only() -> None:
    topic = _topic()
    a, b = _peer(), _peer()
    chain = build_chain(4, topic=topic)
    half = {e.id: chain.payloads[e.id] for e in chain.entries[:2]}
    a.add(chain.entries, half)  # A has payloads of seq 1-2 only
    pair = ConnectionPair.connect(a, b, [topic], [topic])
    pair.run()
    got = b.of_type(EntriesReceived)
    assert [e.seq for ev in got for e in ev.entries] == [1, 2, 3, 4]  # type: ignore[attr-defined]
    for e in chain.entries[:2]:
        assert b.store.get_payload(e.id) == chain.payloads[e.id]
    for e in chain.entries[2:]:
        assert b.store.get_payload(e.id) is PayloadState.MISSING


def test_payload_fetch_including_erased() -> None:
    topic = _topic()
    a, b = _peer(), _peer()
    chain = build_chain(3, topic=topic)
    a.add(chain.entries, chain.payloads)
    a.store.erase_payload(chain.entries[1].id)
    b.add(chain.entries)  # headers only
    pair = ConnectionPair.connect(a, b, [topic], [topic])
    pair.run()
    b.send(RequestPayloads(chain.entries))
    pair.run()
    (received,) = b.of_type(PayloadsReceived)
    assert isinstance(received, PayloadsReceived)
    assert set(received.payloads) == {chain.entries[0].id, chain.entries[2].id}
    assert received.unavailable == (chain.entries[1].id,)
    assert b.store.get_payload(chain.entries[0].id) == chain.payloads[chain.entries[0].id]
    assert b.store.get_payload(chain.entries[1].id) is PayloadState.MISSING
    assert b.c.stats.credit_in_use == 0  # applied -> credit returned


def test_entries_with_fetch_on_demand_end_to_end() -> None:
    topic = _topic()
    a, b = _peer(), _peer()
    chain = build_chain(3, topic=topic)
    a.add(chain.entries, chain.payloads)
    b.fetch_payloads = True
    pair = ConnectionPair.connect(a, b, [topic], [topic])
    # A serves headers only (simulates a relay that fetched headers first)
    a.store = type(a.store)()
    a.add(chain.entries)
    pair.run()
    assert b.entry_ids([topic]) == _ids(chain.entries)
    assert b.of_type(PayloadsReceived)  # asked, got "unavailable" for each
    assert all(b.store.get_payload(e.id) is PayloadState.MISSING for e in chain.entries)


def test_live_push_extends_head_and_heals_gaps() -> None:
    topic = _topic()
    a, b = _peer(), _peer()
    chain = build_chain(6, topic=topic)
    a.add(chain.entries[:2], chain.payloads)
    pair = ConnectionPair.connect(a, b, [topic], [topic])
    pair.run()
    assert b.entry_ids([topic]) == _ids(chain.entries[:2])
    # live: seq 3 directly extends B's head
    a.add(chain.entries[2:3], chain.payloads)
    a.send(Offer(chain.entries[2:3], chain.payloads))
    pair.run()
    live = [e for e in b.of_type(EntriesReceived) if e.live]  # type: ignore[attr-defined]
    assert [x.seq for x in live[-1].entries] == [3]  # type: ignore[attr-defined]
    # seq 5-6 offered without 4: B requests 4..6 instead of failing
    a.add(chain.entries[3:], chain.payloads)
    a.send(Offer(chain.entries[4:], chain.payloads))
    pair.run()
    assert b.error is None
    assert b.entry_ids([topic]) == _ids(chain.entries)
    # a duplicate live push is ignored silently
    a.send(Offer(chain.entries[5:], chain.payloads))
    pair.run()
    assert b.error is None and b.c.state is State.ESTABLISHED


def test_offer_ignores_topics_the_peer_did_not_ask_for() -> None:
    t1, t2 = _topic(), _topic()
    a, b = _peer(), _peer()
    pair = ConnectionPair.connect(a, b, [t1, t2], [t1])
    pair.run()
    chain = build_chain(1, topic=t2)
    a.add(chain.entries, chain.payloads)
    assert a.c.send(Offer(chain.entries, chain.payloads)) == b""


def test_flow_control_slow_receiver_never_exceeds_credit() -> None:
    topic = _topic()
    config = SyncConfig(max_in_flight=MAX_FRAME_SIZE + 4, run_target_bytes=64 * 1024)
    a, b = _peer(), _peer()
    chain = build_chain(40, topic=topic, payload_size=100_000)  # ~4 MB of payloads
    a.add(chain.entries, chain.payloads)
    b.auto_apply = False
    pair = ConnectionPair.connect(a, b, [topic], [topic], config=config)
    pair.run()
    # the link went quiet with B holding back: at most one window of data arrived
    assert b.c.stats.credit_in_use <= config.max_in_flight
    assert sum(len(ev.entries) for ev in b.of_type(EntriesReceived)) < 40  # type: ignore[attr-defined]
    assert a.c.stats.send_queue_bytes > 0  # the sender holds the rest back
    rounds = 0
    while b.unapplied:
        for token in list(b.unapplied):
            b.apply(token)
        pair.run()
        rounds += 1
        assert b.c.stats.credit_in_use <= config.max_in_flight
    assert rounds > 2  # it really took several windows
    assert b.c.stats.max_credit_in_use <= config.max_in_flight
    assert b.entry_ids([topic]) == _ids(chain.entries)


def test_fork_detected_and_proof_exchanged() -> None:
    topic = _topic()
    a, b = _peer(), _peer()
    base = build_chain(2, topic=topic)
    fork_a = build_chain(1, identity=base.identity, after=base.entries[-1], tag=b"a")
    fork_b = build_chain(1, identity=base.identity, after=base.entries[-1], tag=b"b")
    a.add(base.entries + fork_a.entries, {**base.payloads, **fork_a.payloads})
    b.add(base.entries + fork_b.entries, {**base.payloads, **fork_b.payloads})
    pair = ConnectionPair.connect(a, b, [topic], [topic])
    pair.run()
    want = ForkProof.of(fork_a.entries[0], fork_b.entries[0])
    assert want in a.forks and want in b.forks
    assert a.store.is_frozen(base.author, topic) and b.store.is_frozen(base.author, topic)
    assert a.error is None and b.error is None


def test_send_fork_proof_reaches_the_peer() -> None:
    topic = _topic()
    a, b = _peer(), _peer()
    base = build_chain(1, topic=topic)
    x = build_chain(1, identity=base.identity, after=base.entries[0], tag=b"x").entries[0]
    y = build_chain(1, identity=base.identity, after=base.entries[0], tag=b"y").entries[0]
    pair = ConnectionPair.connect(a, b, [topic], [topic])
    pair.run()
    a.send(SendForkProof(ForkProof.of(x, y)))
    pair.run()
    got = b.of_type(ForkProofReceived)
    assert got == [ForkProofReceived(ForkProof.of(x, y))]


def test_keepalive_ping_then_idle_timeout() -> None:
    config = SyncConfig(keepalive_interval=10.0, idle_timeout=30.0)
    a, b = _peer(), _peer()
    pair = ConnectionPair.connect(a, b, [], [], config=config)
    pair.run()
    assert a.c.get_timer() == 10.0
    a.c.handle_timer(5.0)  # early: nothing
    assert a.take_output() == b""
    a.c.handle_timer(10.0)
    assert a.c.get_timer() == 30.0
    pair.now = 10.0
    pair.run()  # B answers PONG, which refreshes A's idle timer
    assert a.c.get_timer() == 20.0
    # now B goes silent: A pings at 20, then closes at 10 + 30 = 40
    a.c.handle_timer(20.0)
    a.take_output()
    a.c.handle_timer(39.9)
    assert a.c.state is State.ESTABLISHED
    a.c.handle_timer(40.0)
    assert a.c.state is State.CLOSED
    a.process()
    assert a.events[-1] == ConnectionClosed("idle_timeout", None)
    assert a.c.get_timer() is None


def test_ping_is_answered_with_pong() -> None:
    b = _peer()
    raw = RawPeer(b)
    raw.establish([])
    raw.read()
    raw.send(Ping(7))
    assert raw.read() == [Pong(7)]


def test_close_both_sides() -> None:
    a, b = _peer(), _peer()
    pair = ConnectionPair.connect(a, b, [], [])
    pair.run()
    a.send(Close("bye"))
    pair.run()
    a.process()
    assert a.c.state is State.CLOSED and b.c.state is State.CLOSED
    assert isinstance(a.events[-1], ConnectionClosed) and a.events[-1].reason == "closed"
    assert b.events[-1] == ConnectionClosed("peer_closed", None, "closed")
    # after close: no-ops
    assert a.c.send(Close()) == b""
    a.c.receive_data(b"garbage")
    assert a.c.next_event() is None


def test_eof_closes() -> None:
    a, b = _peer(), _peer()
    pair = ConnectionPair.connect(a, b, [], [])
    pair.run()
    b.c.receive_data(b"")
    assert b.c.state is State.CLOSED
    b.process()
    assert b.events[-1] == ConnectionClosed("eof", None)


def test_local_misuse_raises_local_protocol_error() -> None:
    a, b = _peer(), _peer()
    pair = ConnectionPair.connect(a, b, [], [])
    with pytest.raises(LocalProtocolError):
        a.c.start([])  # twice
    pair.run()
    with pytest.raises(LocalProtocolError):
        a.c.send(SendEntries([]))  # no EntriesNeeded outstanding
    with pytest.raises(LocalProtocolError):
        a.c.send(EntriesApplied(99))  # unknown token


def test_handshake_tolerates_peer_hello_before_start() -> None:
    a, b = _peer(), _peer()
    a.connect(b.node_id, initiator=True)
    b.connect(a.node_id, initiator=False)
    a.c.start([])
    b.c.receive_data(a.take_output(), now=0.0)
    assert b.c.state is State.HELLO_RECEIVED
    b.c.start([], now=0.0)
    assert b.c.state is State.AWAIT_GRANT
    pair = ConnectionPair(a, b)
    pair.run()
    assert a.c.state is State.ESTABLISHED and b.c.state is State.ESTABLISHED


def test_state_diagram_in_docs_matches_transition_table() -> None:
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "protocol-sync.md")
    with open(path, encoding="utf-8") as f:
        doc = f.read()
    assert mermaid() in doc
    for (src, trig), dst in TRANSITIONS.items():
        if trig in (Trigger.CLOSE, Trigger.RECV_CLOSE, Trigger.EOF, Trigger.PROTOCOL_ERROR,
                    Trigger.IDLE_TIMEOUT):
            assert dst is State.CLOSED
        else:
            assert f"{src.name} --> {dst.name}: {trig.value}" in doc


def test_message_types_are_stable() -> None:
    # Wire type codes are part of the protocol; renumbering is a breaking change.
    assert [Recon(_topic(), False, ()).encode()[1], Request(_topic(), ((b"a" * 32, 1, 1),)
            ).encode()[1], Run(_topic(), b"a" * 32, 2, (), ()).encode()[1]] == [2, 3, 4]
