"""Real mDNS on this host's loopback interface: nodes find each other and leave.

Everything is restricted to 127.0.0.1 so the tests never multicast on other
networks. zeroconf's registration probing takes ~1.5 s per service, so the
instances start concurrently; ``fail_after`` bounds are generous hang guards, not
speed assertions (latency is measured in benchmarks/bench_discovery.py).
"""

from __future__ import annotations

import os
from functools import partial

import pytest
import trio
from p2pmsg_mdns import SERVICE_TYPE, MdnsDiscovery, multicast_unavailable_reason
from zeroconf import IPVersion, ServiceInfo, Zeroconf

from p2pmsg.errors import TransportError
from p2pmsg.net.base import PeerHint

LOOPBACK = "127.0.0.1"
HANG_GUARD = 15.0

_reason = multicast_unavailable_reason(LOOPBACK)
pytestmark = pytest.mark.skipif(
    _reason is not None, reason=f"IPv4 multicast unavailable on loopback: {_reason}"
)


def node(ports: dict[str, int], org: bytes = b"\x01" * 32) -> MdnsDiscovery:
    return MdnsDiscovery(node_id=os.urandom(32), org_id=org, ports=ports, interfaces=[LOOPBACK])


async def first_hint_from(mdns: MdnsDiscovery, node_id: bytes, seen: list[PeerHint]) -> None:
    """Collect ``mdns``'s hints into ``seen`` until one for ``node_id`` arrives."""
    async for hint in mdns.hints():
        seen.append(hint)
        if hint.node_id == node_id:
            return


async def test_two_nodes_find_each_other_and_forget_on_leave() -> None:
    a = node({"quic": 40001, "tcp": 40002})
    b = node({"quic": 40011})
    a_seen: list[PeerHint] = []
    b_seen: list[PeerHint] = []
    async with trio.open_nursery() as nursery:
        # Subscribe before starting, so nothing can be missed.
        with trio.fail_after(HANG_GUARD):
            async with trio.open_nursery() as waiters:
                waiters.start_soon(first_hint_from, a, b._node_id, a_seen)
                waiters.start_soon(first_hint_from, b, a._node_id, b_seen)
                b_scope = trio.CancelScope()

                async def run_b() -> None:
                    with b_scope:
                        await b.run()

                nursery.start_soon(a.run)  # both probe concurrently (~1.5 s each)
                nursery.start_soon(run_b)

        # Right ids and ports; each advertisement hinted, never our own.
        assert b_seen[-1].node_id == a._node_id
        assert b_seen[-1].address == "quic://127.0.0.1:40001"  # preferred transport first
        assert a_seen[-1] == PeerHint(b._node_id, "quic://127.0.0.1:40011", "mdns")
        assert a._node_id not in {h.node_id for h in a_seen}
        assert b._node_id not in {h.node_id for h in b_seen}
        with trio.fail_after(HANG_GUARD):
            while not any(p.advertisement.node_id == a._node_id for p in b.peers()):
                await b.wait_peers_changed()
        peer_a = next(p for p in b.peers() if p.advertisement.node_id == a._node_id)
        assert peer_a.advertisement.ports == (("quic", 40001), ("tcp", 40002))
        assert peer_a.advertisement.org_id == b"\x01" * 32
        assert {h.address for h in peer_a.hints()} == {
            "quic://127.0.0.1:40001",
            "tcp://127.0.0.1:40002",
        }

        # b leaves (goodbye packets): a forgets it.
        b_scope.cancel()
        with trio.fail_after(HANG_GUARD):
            while any(p.advertisement.node_id == b._node_id for p in a.peers()):
                await a.wait_peers_changed()
        assert a.statistics().removed >= 1
        nursery.cancel_scope.cancel()


async def test_hints_end_when_discovery_stops() -> None:
    a = node({"quic": 40021})
    ended = trio.Event()

    async def consume() -> None:
        async for _ in a.hints():
            pass
        ended.set()

    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            async with a.running():
                assert a.instance_name is not None
                assert a.instance_name.endswith(SERVICE_TYPE)
            await ended.wait()
    assert a.statistics().subscribers == 0
    with pytest.raises(RuntimeError):
        await a.run()  # single use


def _register_raw(zc: Zeroconf, name: str, properties: dict[bytes, bytes | None]) -> ServiceInfo:
    info = ServiceInfo(
        SERVICE_TYPE,
        f"{name}.{SERVICE_TYPE}",
        port=40031,
        properties=properties,
        server=f"{name}.local.",
        parsed_addresses=[LOOPBACK],
    )
    zc.register_service(info)
    return info


async def test_garbage_advertisements_are_ignored() -> None:
    """Hostile records on the link are dropped; a valid one next to them still works."""
    observer = node({"quic": 40041})
    honest = node({"quic": 40051})
    garbage = [
        {b"txtvers": b"1", b"id": b"zz" * 32, b"org": b"00" * 32, b"proto": b"1"},
        {
            b"txtvers": b"1",
            b"id": os.urandom(32).hex().encode(),
            b"org": b"00" * 32,
            b"proto": b"1",
            b"transports": b"quic",
            b"quic": b"99999",
        },
        {b"\xff\xfe": b"\x00" * 200, b"id": None},
    ]
    claimed_id = bytes.fromhex(garbage[1][b"id"].decode())  # type: ignore[union-attr]
    names = [f"garbage{i}-{os.getpid()}-{os.urandom(4).hex()}" for i in range(len(garbage))]
    zc = await trio.to_thread.run_sync(
        partial(Zeroconf, interfaces=[LOOPBACK], ip_version=IPVersion.V4Only)
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(observer.run)
            seen: list[PeerHint] = []
            with trio.fail_after(HANG_GUARD):
                async with trio.open_nursery() as registrations:
                    registrations.start_soon(first_hint_from, observer, honest._node_id, seen)
                    registrations.start_soon(nursery.start, honest.run)
                    for name, props in zip(names, garbage, strict=True):
                        registrations.start_soon(
                            trio.to_thread.run_sync, partial(_register_raw, zc, name, props)
                        )
                # All garbage services get resolved and rejected (not crashed on).
                # (Other test runs on this host may add their own services: filter.)
                while not set(names) <= {n.partition(".")[0] for n, _ in observer.rejections()}:
                    await trio.sleep(0.05)
            reasons = {n.partition(".")[0]: why for n, why in observer.rejections()}
            assert "id is not 64 lowercase hex digits" in reasons[names[0]]
            assert "port of 'quic'" in reasons[names[1]]
            assert "missing value for 'txtvers'" in reasons[names[2]]
            assert claimed_id not in {h.node_id for h in seen}
            known = {p.advertisement.node_id for p in observer.peers()}
            assert honest._node_id in known
            assert claimed_id not in known
            nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(zc.close)


async def test_cancel_during_registration_closes_cleanly() -> None:
    a = node({"quic": 40061})
    ended = trio.Event()

    async def consume() -> None:
        async for _ in a.hints():
            pass
        ended.set()

    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            nursery.start_soon(a.run)
            await trio.sleep(0.2)  # inside the ~1.5 s probing
            nursery.cancel_scope.cancel()
        # The consumer was cancelled with the nursery; a new subscriber ends at once.
        async for _ in a.hints():
            raise AssertionError("no hints after shutdown")
    assert a.instance_name is None
    assert not ended.is_set()


async def test_unknown_interface_raises_transport_error() -> None:
    import ifaddr

    absent = "198.51.100.254"  # TEST-NET-2
    local = {str(ip.ip) for adapter in ifaddr.get_adapters() for ip in adapter.ips}
    if absent in local:
        pytest.skip(f"{absent} is configured on this host")
    mdns = MdnsDiscovery(
        node_id=os.urandom(32), org_id=b"\x01" * 32, ports={"quic": 1}, interfaces=[absent]
    )
    with pytest.raises(TransportError, match="could not open"):
        async with mdns.running():
            raise AssertionError("must not start")
