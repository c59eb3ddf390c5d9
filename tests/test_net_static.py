"""Static discovery, and proof that the conformance suite can fail."""

from __future__ import annotations

import pytest
import trio

from p2pmsg.identity import Identity
from p2pmsg.net.base import PeerHint
from p2pmsg.net.memory import MemoryNetwork, MemoryPeerStream, MemoryTransport
from p2pmsg.net.static import StaticDiscovery
from p2pmsg.testing import TransportPair, check_transport

A = Identity.from_seed(b"a" * 32).public_key
B = Identity.from_seed(b"b" * 32).public_key
C = Identity.from_seed(b"c" * 32).public_key


async def test_static_discovery_yields_configured_then_added_hints() -> None:
    first = PeerHint(A, "memory://a")
    source = StaticDiscovery([first])
    later = PeerHint(B, "memory://b", source="config-reload")
    source.add(later)
    got = []
    async for hint in source.hints():
        got.append(hint)
        if len(got) == 2:
            break
    assert got == [first, later]


class _NoKeyCheck(MemoryTransport):
    """A broken transport: it accepts any expected key (no authentication)."""

    async def dial(self, address: str, expected_peer: bytes) -> MemoryPeerStream:
        name = address.removeprefix("memory://")
        listener = self.network._listeners[name]
        return await super().dial(address, listener.node_id)


async def test_conformance_suite_catches_missing_authentication() -> None:
    net = MemoryNetwork()

    async def make() -> TransportPair:
        return TransportPair(
            _NoKeyCheck(network=net, name="a", node_id=A),
            A,
            MemoryTransport(network=net, name="b", node_id=B),
            B,
            C,
        )

    with pytest.RaisesGroup(
        pytest.RaisesExc(AssertionError, match="wrong expected key"), flatten_subgroups=True
    ):
        await check_transport(make)
    await trio.lowlevel.checkpoint()
