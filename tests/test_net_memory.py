"""The memory transport: conformance suite, knobs (latency, bandwidth, loss,
partitions) under a mock clock, and the plugin registry."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from p2pmsg.errors import TransportError
from p2pmsg.identity import Identity
from p2pmsg.net.base import PeerStream, available_transports, load_transport
from p2pmsg.net.memory import LinkConditions, MemoryNetwork, MemoryTransport
from p2pmsg.testing import TransportPair, check_transport

A = Identity.from_seed(b"a" * 32).public_key
B = Identity.from_seed(b"b" * 32).public_key
C = Identity.from_seed(b"c" * 32).public_key


def _maker(network: MemoryNetwork):  # type: ignore[no-untyped-def]
    async def make() -> TransportPair:
        return TransportPair(network.transport("a", A), A, network.transport("b", B), B, C)

    return make


async def test_conformance_perfect_link() -> None:
    await check_transport(_maker(MemoryNetwork()))


async def test_conformance_lossy_slow_link(autojump_clock: trio.testing.MockClock) -> None:
    conditions = LinkConditions(
        latency=0.03, jitter=0.01, loss=0.2, bandwidth=5e6, segment_size=1500
    )
    await check_transport(_maker(MemoryNetwork(conditions, seed=7, buffer_size=8192)))


async def _pair(net: MemoryNetwork, nursery: trio.Nursery) -> tuple[PeerStream, PeerStream]:
    accepted_send, accepted = trio.open_memory_channel[PeerStream](1)

    async def handler(stream: PeerStream) -> None:
        await accepted_send.send(stream)
        await trio.sleep_forever()

    await nursery.start(net.transport("b", B).serve, handler)
    dialed = await net.transport("a", A).dial("memory://b", B)
    return dialed, await accepted.receive()


async def test_latency_and_bandwidth_shape_delivery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(LinkConditions(latency=0.05, bandwidth=100_000, segment_size=10_000))
    async with trio.open_nursery() as nursery:
        dialed, served = await _pair(net, nursery)
        start = trio.current_time()
        await dialed.send_all(b"x" * 50_000)
        got = 0
        while got < 50_000:
            got += len(await served.receive_some())
        elapsed = trio.current_time() - start
        # 0.5 s serialisation at 100 kB/s plus 50 ms propagation, in virtual time.
        assert elapsed == pytest.approx(0.55)
        nursery.cancel_scope.cancel()


async def test_loss_is_retransmission_delay_and_reproducible(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def run(seed: int) -> tuple[float, int]:
        net = MemoryNetwork(LinkConditions(loss=0.5, segment_size=100), seed=seed)
        async with trio.open_nursery() as nursery:
            dialed, served = await _pair(net, nursery)
            start = trio.current_time()
            data = bytes(range(256)) * 40
            await dialed.send_all(data)
            await dialed.send_eof()
            buf = bytearray()
            while chunk := await served.receive_some():
                buf += chunk
            assert buf == data  # nothing lost or reordered, only delayed
            nursery.cancel_scope.cancel()
        return trio.current_time() - start, net.statistics().retransmissions

    first = await run(3)
    assert first == await run(3)
    assert first[1] > 0 and first[0] >= 0.2


async def test_cut_breaks_connections_and_refuses_dials_until_heal() -> None:
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        dialed, served = await _pair(net, nursery)
        net.cut("a", "b")
        with pytest.raises(trio.BrokenResourceError):
            await dialed.send_all(b"x")
        with pytest.raises(trio.BrokenResourceError):
            await served.receive_some()
        with pytest.raises(TransportError, match="partitioned"):
            await net.transport("a", A).dial("memory://b", B)
        net.heal("a", "b")
        again = await net.transport("a", A).dial("memory://b", B)
        assert again.remote_id == B
        assert net.statistics().connections_cut == 1
        nursery.cancel_scope.cancel()


async def test_wrong_key_refused_before_any_data() -> None:
    net = MemoryNetwork()
    seen: list[PeerStream] = []

    async def handler(stream: PeerStream) -> None:
        seen.append(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(net.transport("b", B).serve, handler)
        with pytest.raises(TransportError, match="expected"):
            await net.transport("a", A).dial("memory://b", C)
        with pytest.raises(TransportError, match="nothing listens"):
            await net.transport("a", A).dial("memory://nobody", B)
        await trio.testing.wait_all_tasks_blocked()
        assert seen == []
        assert net.statistics().dials_refused == 2
        nursery.cancel_scope.cancel()


async def test_serving_a_name_twice_is_refused() -> None:
    net = MemoryNetwork()

    async def handler(stream: PeerStream) -> None:
        pass

    async with trio.open_nursery() as nursery:
        await nursery.start(net.transport("b", B).serve, handler)
        with pytest.raises(TransportError, match="already"):
            await net.transport("b", B).serve(handler)
        nursery.cancel_scope.cancel()


def test_link_conditions_validate() -> None:
    with pytest.raises(ValueError):
        LinkConditions(loss=1.0)
    with pytest.raises(ValueError):
        LinkConditions(latency=-1)
    with pytest.raises(ValueError):
        LinkConditions(bandwidth=0)


def test_memory_plugin_is_registered() -> None:
    assert available_transports()["memory"] == "p2pmsg.net.memory:MemoryTransport"
    transport = load_transport("memory", network=MemoryNetwork(), name="x", node_id=A)
    assert isinstance(transport, MemoryTransport)
    assert transport.addresses() == ["memory://x"]
    with pytest.raises(TransportError):
        load_transport("no-such-transport")
