"""The shared transport conformance suite (p2pmsg.testing) run against QUIC, and
a fuzz test: garbage datagrams never crash the endpoint or open a stream."""

from __future__ import annotations

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from p2pmsg_quic import QuicSettings, QuicTransport

from p2pmsg.identity import Identity
from p2pmsg.net.base import PeerStream
from p2pmsg.testing import TransportPair, check_transport

LOOPBACK = QuicSettings(max_datagram_size=16000, close_timeout=2.0)


async def test_conformance_suite() -> None:
    a_key, b_key = Identity.generate(), Identity.generate()
    a = QuicTransport(identity=a_key, host="127.0.0.1", settings=LOOPBACK)
    b = QuicTransport(identity=b_key, host="127.0.0.1", settings=LOOPBACK)

    async def make_pair() -> TransportPair:
        return TransportPair(a, a_key.public_key, b, b_key.public_key,
                             Identity.generate().public_key)

    # The dialing side must be running to dial (it owns the UDP socket and the
    # connection tasks); the suite itself starts b.serve.
    async with a:
        await check_transport(make_pair)


def _initial_like(body: bytes) -> bytes:
    # Long header, Initial type, version 1, 8-byte dcid: reaches the accept path.
    return b"\xc0\x00\x00\x00\x01\x08" + body


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datagrams=st.lists(
    st.one_of(st.binary(max_size=1500), st.binary(min_size=1200, max_size=1400).map(_initial_like)),
    min_size=1, max_size=8,
))
def test_garbage_datagrams_never_crash_or_open_streams(datagrams: list[bytes]) -> None:
    async def main() -> None:
        server = QuicTransport(identity=Identity.generate(), host="127.0.0.1", settings=LOOPBACK)
        handled: list[PeerStream] = []

        async def handler(stream: PeerStream) -> None:
            handled.append(stream)

        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, handler)
            endpoint = server._endpoint
            assert endpoint is not None
            for data in datagrams:
                endpoint.datagram_received(data, ("127.0.0.1", 9))
            await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert handled == []

    trio.run(main)
