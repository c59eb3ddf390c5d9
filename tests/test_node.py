"""Node runtime over the memory transport: convergence, live push, reconnect,
duplicate-dial dedup, policy, subscriptions. All under a mock clock."""

from __future__ import annotations

import trio
import trio.testing
from chain_helpers import build_chain
from node_helpers import T1, T2, assert_store_valid, config, ident, ids, start

from p2pmsg.forks import ForkProof
from p2pmsg.net.base import PeerHint
from p2pmsg.net.memory import LinkConditions, MemoryNetwork
from p2pmsg.node import open_node
from p2pmsg.policy import TopicPolicy
from p2pmsg.store.memory import MemoryStore


async def test_two_nodes_converge(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(LinkConditions(latency=0.01))
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a"))
        for i in range(30):
            await a.append(T1, b"a%d" % i)
        b = await start(nursery, config(net, "b", peers=("a",)))
        for i in range(5):
            await b.append(T1, b"b%d" % i)
        await b.wait_synced(T1, a.id)
        await a.wait_synced(T1, b.id)
        await b.wait_for_entries(T1, 35)
        await a.wait_for_entries(T1, 35)
        assert ids(a.read(T1)) == ids(b.read(T1))
        assert len(a.read(T1)) == 35
        assert b.payload(a.read(T1)[0]) is not None
        for node in (a, b):
            assert_store_valid(node.store)
        nursery.cancel_scope.cancel()


async def test_three_nodes_relay_through_middle(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(LinkConditions(latency=0.02, jitter=0.01), seed=5)
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a"))
        b = await start(nursery, config(net, "b", peers=("a",)))
        c = await start(nursery, config(net, "c", peers=("b",)))
        for i in range(10):
            await a.append(T1, b"from a %d" % i)
            await c.append(T1, b"from c %d" % i)
        for node in (a, b, c):
            await node.wait_for_entries(T1, 20)
        assert ids(a.read(T1)) == ids(b.read(T1)) == ids(c.read(T1))
        assert a.connected_peers() == [b.id]  # a and c never met: b relayed
        nursery.cancel_scope.cancel()


async def test_live_push_reaches_subscriber(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(LinkConditions(latency=0.01))
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a"))
        b = await start(nursery, config(net, "b", peers=("a",)))
        await b.wait_synced(T1, a.id)
        async with b.subscribe(T1) as sub:
            sent = [await a.append(T1, b"live %d" % i) for i in range(3)]
            got = []
            async for entry in sub:
                got.append(entry)
                if len(got) == 3:
                    break
        assert ids(got) == ids(sent)
        nursery.cancel_scope.cancel()


async def test_reconnect_after_cut_and_heal(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(LinkConditions(latency=0.01))
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a"))
        b = await start(nursery, config(net, "b", peers=("a",)))
        await b.wait_for_peer(a.id)
        net.cut("a", "b")
        await a.append(T1, b"while partitioned")
        await trio.sleep(5)
        assert b.read(T1) == []
        assert b.statistics().dial_failures > 0
        net.heal("a", "b")
        await b.wait_for_entries(T1, 1)
        assert ids(b.read(T1)) == ids(a.read(T1))
        assert b.statistics().sessions_opened >= 2
        nursery.cancel_scope.cancel()


async def test_simultaneous_dials_keep_one_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a"))
        b = await start(nursery, config(net, "b"))
        # Both learn of each other at the same instant and dial at once.
        a.add_peer(PeerHint(b.id, "memory://b"))
        b.add_peer(PeerHint(a.id, "memory://a"))
        await a.wait_for_peer(b.id)
        await b.wait_for_peer(a.id)
        await trio.sleep(3)
        await a.append(T1, b"x")
        await b.wait_for_entries(T1, 1)
        lower = min(a.id, b.id)
        assert a._sessions[b.id].initiator_id == lower
        assert b._sessions[a.id].initiator_id == lower
        assert a.statistics().sessions == b.statistics().sessions == 1
        assert net.statistics().connections == 2  # both dialed; one was dropped
        closed = a.statistics().duplicate_connections_closed
        assert closed + b.statistics().duplicate_connections_closed >= 2
        nursery.cancel_scope.cancel()


async def test_unauthorised_topic_never_replicated(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    a_id, b_id = ident("a").public_key, ident("b").public_key
    # a lets b read T1 only; b wants both topics and would accept both.
    a_policy = TopicPolicy({T1: [b_id], T2: []})
    b_policy = TopicPolicy({T1: [a_id], T2: [a_id]})
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a", policy=a_policy, topics=(T1, T2)))
        await a.append(T1, b"shared")
        await a.append(T2, b"secret")
        b = await start(
            nursery, config(net, "b", peers=("a",), policy=b_policy, topics=(T1, T2))
        )
        await b.wait_synced(T1, a.id)
        await a.append(T2, b"secret, live")
        await a.append(T1, b"shared, live")
        await b.wait_for_entries(T1, 2)
        await trio.sleep(2)
        assert b.read(T2) == []
        assert b.store.heads(T2) == []
        assert len(b.read(T1)) == 2
        nursery.cancel_scope.cancel()


async def test_policy_refuses_unknown_peer(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a", policy=TopicPolicy({T1: []})))
        await a.append(T1, b"private")
        b = await start(nursery, config(net, "b", peers=("a",)))
        await trio.sleep(3)
        assert a.statistics().peers_refused >= 1
        assert b.read(T1) == []
        assert a.connected_peers() == []
        nursery.cancel_scope.cancel()


async def test_slow_subscriber_is_dropped_not_waited_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    async with open_node(config(net, "a", subscriber_buffer=2)) as a:
        sub = a.subscribe(T1)
        for i in range(5):
            await a.append(T1, b"%d" % i)  # never blocks on the full subscriber
        assert sub.overflowed
        got = [e async for e in sub]
        assert len(got) == 2
        assert a.statistics().subscriber_overflows == 1
        assert len(a.read(T1)) == 5


async def test_read_order_is_hlc_then_id(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    async with open_node(config(net, "a", topics=(T1,))) as a:
        written = [await a.append(T1, b"%d" % i) for i in range(5)]
        stamps = [e.header.timestamp for e in written]
        assert stamps == sorted(stamps) and len(set(stamps)) == 5
        assert ids(a.read(T1)) == ids(written)
        assert written[1].header.backlink == written[0].id


async def test_restart_loads_heads_from_store(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    cfg = config(net, "a")
    async with open_node(cfg) as a:
        first = await a.append(T1, b"one")
    async with open_node(cfg) as a2:
        second = await a2.append(T1, b"two")
        assert a2.index.head(a2.id, T1) == second
    assert second.header.seq == 2 and second.header.backlink == first.id
    assert second.header.timestamp > first.header.timestamp


async def test_equivocating_author_is_proven_and_frozen_on_both_nodes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The author signed two branches at seq 3: x3 on node a, y3..y4 on node b.
    a sees y4 not extending x3, fetches b's seq 3, builds the proof; both nodes
    record it and freeze the log (neither silently picks a branch)."""
    base = build_chain(2, topic=T1)
    x = build_chain(1, identity=base.identity, after=base.entries[-1], tag=b"x")
    y = build_chain(2, identity=base.identity, after=base.entries[-1], tag=b"y")
    store_a, store_b = MemoryStore(), MemoryStore()
    store_a.append(base.entries + x.entries, {**base.payloads, **x.payloads})
    store_b.append(base.entries + y.entries, {**base.payloads, **y.payloads})
    net = MemoryNetwork()
    want = ForkProof.of(x.entries[0], y.entries[0])
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a", store=store_a))
        b = await start(nursery, config(net, "b", peers=("a",), store=store_b))
        await b.wait_synced(T1, a.id)
        await a.wait_synced(T1, b.id)
        while not (a.store.forks() and b.store.forks()):
            await trio.sleep(0.05)
        for node in (a, b):
            assert node.store.forks() == [want]
            assert node.store.is_frozen(base.author, T1)
            assert node.statistics().forks == 1
        assert a.statistics().diverged_logs + b.statistics().diverged_logs == 1
        assert a.statistics().protocol_errors == b.statistics().protocol_errors == 0
        nursery.cancel_scope.cancel()


async def test_wait_converged_returns_when_both_hold_the_same(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a", topics=(T1, T2)))
        for i in range(30):
            await a.append(T1, b"m%d" % i)
        b = await start(nursery, config(net, "b", peers=("a",), topics=(T1, T2)))
        await b.append(T2, b"from b")
        await b.wait_converged([a.id], [T1, T2])
        await a.wait_converged([b.id], [T1, T2])
        for t in (T1, T2):
            assert ids(a.read(t)) == ids(b.read(t))
        assert len(b.read(T1)) == 30 and len(a.read(T2)) == 1
        nursery.cancel_scope.cancel()
