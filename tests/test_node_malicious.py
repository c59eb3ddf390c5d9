"""A malicious peer cannot crash a node or get bad entries stored.

The peer speaks raw bytes over an authenticated memory connection (it holds a
valid node key the policy admits), so only the sync protocol stands between it and
the store. After each attack the node must still replicate with an honest peer and
every log in its store must verify.
"""

from __future__ import annotations

import dataclasses

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from node_helpers import T1, assert_store_valid, config, ident, start

from p2pmsg.entry import create_entry, entry_id
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.node import Node, open_node
from p2pmsg.store.memory import MemoryStore


async def _attack(net: MemoryNetwork, target: Node, chunks: list[bytes]) -> None:
    mallory = ident("mallory").public_key
    stream = await net.transport("mallory", mallory).dial("memory://a", target.id)
    try:
        for chunk in chunks:
            await stream.send_all(chunk)
        with trio.move_on_after(2):
            while await stream.receive_some():
                pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()


async def _honest_sync_still_works(net: MemoryNetwork, nursery: trio.Nursery, a: Node) -> None:
    b = await start(nursery, config(net, "b", peers=("a",)))
    await a.append(T1, b"after the attack")
    await b.wait_for_entries(T1, len(a.read(T1)))
    assert [e.id for e in b.read(T1)] == [e.id for e in a.read(T1)]
    assert_store_valid(a.store)
    assert_store_valid(b.store)


async def _scenario(chunks: list[bytes]) -> None:
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a"))
        await a.append(T1, b"before the attack")
        await _attack(net, a, chunks)
        await _honest_sync_still_works(net, nursery, a)
        nursery.cancel_scope.cancel()


async def test_garbage_bytes(autojump_clock: trio.testing.MockClock) -> None:
    await _scenario([b"\xff" * 64, b"not cbor at all"])


async def test_oversized_frame_header(autojump_clock: trio.testing.MockClock) -> None:
    await _scenario([(0xFFFF_FFFF).to_bytes(4, "big") + b"x" * 1000])


async def test_flood(autojump_clock: trio.testing.MockClock) -> None:
    await _scenario([b"\x00\x00\x10\x00" + bytes(4096)] * 500)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_fuzzed_bytes_never_crash_the_node(chunks: list[bytes]) -> None:
    trio.run(_scenario, chunks, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_bad_signature_inside_a_run_is_caught_lazily(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The run [e1 (bad signature), e2 (good, links to e1)] passes chain
    verification; the background checker must flag the author and hide the log."""
    author = ident("author")
    good1 = create_entry(author, T1, 1, None, 1, b"one")
    bad_sig = bytes(64)
    bad1 = dataclasses.replace(good1, signature=bad_sig, id=entry_id(good1.raw + bad_sig))
    e2 = create_entry(author, T1, 2, bad1.id, 2, b"two")
    poisoned = MemoryStore()  # stores do not check signatures: the carrier "a" serves it
    poisoned.append([bad1, e2], {bad1.id: b"one", e2.id: b"two"})
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        await start(nursery, config(net, "a", store=poisoned))
        b = await start(nursery, config(net, "b", peers=("a",)))
        await b.wait_for_entries(T1, 2)
        while not b.bad_signatures():
            await trio.sleep(0.1)
        evidence = b.bad_signatures()
        assert [x.entry.id for x in evidence] == [bad1.id]
        assert evidence[0].peer_id == ident("a").public_key
        assert b.read(T1) == []  # frozen from the bad entry on
        assert b.statistics().bad_signature_logs == 1
        nursery.cancel_scope.cancel()
    # The evidence is in b's store: a restarted b still knows and still hides the log.
    b_store = b.store
    assert [m.entry.id for m in b_store.misbehaviours()] == [bad1.id]
    async with open_node(config(MemoryNetwork(), "b", store=b_store)) as b2:
        assert [x.entry.id for x in b2.bad_signatures()] == [bad1.id]
        assert b2.bad_signatures()[0].peer_id == ident("a").public_key
        assert b2.read(T1) == []
