"""Resource bounds of the QUIC transport: a slow reader's buffer, Initial floods,
half-open connections. (No timing is asserted: only byte and connection counts.)"""

from __future__ import annotations

import trio
import trio.testing
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from p2pmsg_quic import ALPN, QuicSettings, QuicTransport
from p2pmsg_quic._endpoint import Endpoint, NewConnectionLimiter
from test_quic import _client, _pattern, _read_all, serving

from p2pmsg.identity import Identity
from p2pmsg.net.base import PeerStream

# -- read-side backpressure ------------------------------------------------------------


async def test_a_reader_that_does_not_read_buffers_at_most_the_window() -> None:
    window = 64 * 1024
    limits = QuicSettings(max_datagram_size=16000, flow_control_window=window)
    data = _pattern(4 << 20)  # 4x the send buffer, 64x the window
    async with serving(limits) as server:
        client = _client(limits)
        async with client:
            dialed = await client.dial(server.address, server.identity.public_key)
            served = await server.accepted.receive()
            assert isinstance(served, PeerStream)
            sent = trio.Event()

            async def send() -> None:
                await dialed.send_all(data)
                await dialed.send_eof()
                sent.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                with trio.fail_after(20):
                    while served.receive_buffered < window // 2:  # type: ignore[attr-defined]
                        await trio.sleep(0.01)
                # Give the sender many loopback round trips to overrun the reader.
                peak = 0
                for _ in range(30):
                    await trio.sleep(0.01)
                    peak = max(peak, served.receive_buffered)  # type: ignore[attr-defined]
                assert peak <= window
                assert not sent.is_set(), "the sender was not held back by the reader"
                # Reading reopens the window: everything arrives, in order.
                assert await _read_all(served) == data
            assert sent.is_set()


# -- Initial floods ----------------------------------------------------------------------


def _real_initial() -> bytes:
    """A genuine client Initial (decrypts on any server): what a flood would send."""
    quic = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=[ALPN]))
    quic.connect(("127.0.0.1", 4433), now=0.0)
    datagrams = quic.datagrams_to_send(now=0.0)
    return datagrams[0][0]


def _endpoint(server: QuicTransport) -> Endpoint:
    endpoint = server._endpoint
    assert endpoint is not None
    return endpoint


def _initial_like(body: bytes) -> bytes:
    # Long header, Initial type, version 1, 8-byte dcid, empty scid, token length 0.
    return b"\xc0\x00\x00\x00\x01\x08" + body[:8].ljust(8, b"\0") + b"\x00\x00" + body[8:]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bodies=st.lists(st.binary(min_size=1200, max_size=1400), min_size=1, max_size=60),
    sources=st.integers(min_value=1, max_value=250),
)
def test_forged_initial_flood_leaves_no_connection_state(bodies: list[bytes], sources: int) -> None:
    async def main() -> None:
        server = QuicTransport(identity=Identity.generate(), host="127.0.0.1",
                               settings=QuicSettings(new_connection_burst=1000))
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, _never_called)
            endpoint = _endpoint(server)
            for i, body in enumerate(bodies):
                endpoint.datagram_received(_initial_like(body), (f"127.0.0.{i % sources + 1}", 9))
            # Whatever parsed as an Initial was refused; nothing holds state for it.
            assert endpoint.connection_count() == 0
            assert endpoint.dropped_initials <= len(bodies)
            assert endpoint.limiter is not None and len(endpoint.limiter) <= sources
            nursery.cancel_scope.cancel()

    trio.run(main)


async def _never_called(stream: PeerStream) -> None:
    raise AssertionError("a flood opened a stream")


async def test_real_initials_from_one_source_are_rate_limited() -> None:
    burst = 5
    limits = QuicSettings(new_connection_burst=burst, new_connection_rate=0.001)
    async with serving(limits) as server:
        endpoint = _endpoint(server.transport)
        for _ in range(30):
            endpoint.datagram_received(_real_initial(), ("127.0.0.2", 9))
        assert endpoint.connection_count() == burst
        assert endpoint.dropped_initials == 30 - burst
        # Another source host still gets in.
        endpoint.datagram_received(_real_initial(), ("127.0.0.3", 9))
        assert endpoint.connection_count() == burst + 1
        assert server.handler_calls == 0


async def test_max_connections_caps_initials_from_many_sources() -> None:
    limits = QuicSettings(max_connections=7)
    async with serving(limits) as server:
        endpoint = _endpoint(server.transport)
        for i in range(40):
            endpoint.datagram_received(_real_initial(), (f"127.0.1.{i + 1}", 9))
        assert endpoint.connection_count() == 7
        assert server.handler_calls == 0


async def test_half_open_connections_are_dropped_after_the_handshake_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = QuicSettings(handshake_timeout=3.0)
    async with serving(limits) as server:
        endpoint = _endpoint(server.transport)
        for i in range(5):
            endpoint.datagram_received(_real_initial(), (f"127.0.2.{i + 1}", 9))
        assert endpoint.connection_count() == 5
        start = trio.current_time()
        while endpoint.connection_count():
            await trio.sleep(0.5)
        # Well before the 60 s idle timeout that would otherwise hold them.
        assert trio.current_time() - start < limits.idle_timeout


def test_new_connection_limiter_refills_and_stays_bounded() -> None:
    limiter = NewConnectionLimiter(rate=2.0, burst=3, max_sources=10)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("a", 0.4) is False  # 0.8 token: not yet
    assert limiter.allow("a", 0.5) is True  # 1 token after 0.5 s at 2/s
    assert limiter.allow("b", 0.5) is True  # per source
    for i in range(100):
        limiter.allow(f"host{i}", 1.0)
    assert len(limiter) == 10


# -- a full kernel send buffer -----------------------------------------------------------


async def test_datagrams_refused_by_a_full_socket_buffer_are_sent_later_in_order() -> None:
    async with serving() as server:
        client = _client()
        async with client:
            dialed = await client.dial(server.address, server.identity.public_key)
            served = await server.accepted.receive()
            endpoint = _endpoint(client)
            real_transmit = endpoint.transmit
            calls = 0
            refused = 0

            def every_third_is_refused(data: bytes, addr: tuple[str, int]) -> bool:
                # What a full SO_SNDBUF looks like to the driver (EAGAIN).
                nonlocal calls, refused
                calls += 1
                if calls % 3 == 0:
                    refused += 1
                    return False
                return real_transmit(data, addr)

            endpoint.transmit = every_third_is_refused  # type: ignore[method-assign]
            data = _pattern(1 << 20)

            async def send() -> None:
                await dialed.send_all(data)
                await dialed.send_eof()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                with trio.fail_after(30):
                    assert await _read_all(served) == data
            assert refused > 0
