"""Node.add_topics / remove_topics over the memory transport, in virtual time."""

from __future__ import annotations

import trio
import trio.testing
from node_helpers import T1, T2, config, ident, start

from p2pmsg.net.memory import LinkConditions, MemoryNetwork
from p2pmsg.policy import TopicPolicy


async def test_added_topic_replicates_without_reconnecting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(LinkConditions(latency=0.01))
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a", topics=(T1,)))
        b = await start(nursery, config(net, "b", peers=("a",), topics=(T1,)))
        await b.wait_for_peer(a.id)
        old = await a.append(T2, b"before")  # b does not ask for T2 yet
        await trio.sleep(5)
        assert b.read(T2) == []
        opened = b.statistics().sessions_opened
        assert b.add_topics([T2, T1]) == [T2]
        assert T2 in b.topics
        await b.wait_synced(T2, a.id)
        assert [e.id for e in b.read(T2)] == [old.id]
        # and live from now on, in both directions (a asks for T2 too)
        a.add_topics([T2])
        await a.wait_synced(T2, b.id)
        new_a = await a.append(T2, b"after")
        new_b = await b.append(T2, b"from b")
        await b.wait_for_entries(T2, 3)
        await a.wait_for_entries(T2, 3)
        assert {e.id for e in a.read(T2)} == {e.id for e in b.read(T2)} == {
            old.id, new_a.id, new_b.id}
        assert b.statistics().sessions_opened == opened  # same session throughout
        assert b.statistics().interest_changes == 1
        assert b.add_topics([T2]) == []  # nothing new
        nursery.cancel_scope.cancel()


async def test_added_topic_is_checked_against_the_peers_policy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    pa, pb = ident("a").public_key, ident("b").public_key
    policy_a = TopicPolicy({T1: [pb]}, peers=[pb])  # b may not read T2 on a
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a", policy=policy_a, topics=(T1,)))
        b = await start(nursery, config(net, "b", peers=("a",), topics=(T1,),
                                        policy=TopicPolicy({T1: [pa], T2: [pa]}, peers=[pa])))
        await b.wait_for_peer(a.id)
        await a.append(T2, b"secret")
        b.add_topics([T2])
        await trio.sleep(10)
        assert b.read(T2) == []
        assert T2 not in b._sessions[a.id].conn.peer_granted
        # a's policy now allows it: asking again (a new add after removal) is granted
        policy_a.grant(T2, pb)
        b.remove_topics([T2])  # closes the session; it is redialed with T1 only
        await trio.sleep(5)
        await b.wait_for_peer(a.id)
        assert b.statistics().sessions_reopened == 1
        b.add_topics([T2])
        await b.wait_for_entries(T2, 1)
        nursery.cancel_scope.cancel()


async def test_remove_topics_redials_without_the_topic(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(LinkConditions(latency=0.01))
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a", topics=(T1, T2)))
        b = await start(nursery, config(net, "b", peers=("a",), topics=(T1, T2)))
        await b.wait_for_peer(a.id)
        assert b.remove_topics([T2, b"\x00" * 32]) == [T2]
        assert b.topics == (T1,)
        await trio.sleep(5)
        await b.wait_for_peer(a.id)
        session = b._sessions[a.id]
        assert T2 not in session.conn.asked and T2 not in session.conn.peer_granted
        await a.append(T2, b"not for b any more")
        e1 = await a.append(T1, b"still for b")
        await b.wait_for_entries(T1, 1)
        await trio.sleep(2)
        assert [e.id for e in b.read(T1)] == [e1.id] and b.read(T2) == []
        assert b.remove_topics([T2]) == []
        nursery.cancel_scope.cancel()
