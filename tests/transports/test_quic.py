"""The QUIC transport on loopback: authentication, streams, close, timeouts."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from aioquic.quic.configuration import QuicConfiguration
from p2pmsg_quic import QuicSettings, QuicTransport, format_address, parse_address
from p2pmsg_quic._cert import node_certificate, peer_key_from_certificate

from p2pmsg.errors import TransportError
from p2pmsg.identity import Identity
from p2pmsg.net.base import PeerStream, available_transports, load_transport

LOOPBACK = QuicSettings(max_datagram_size=16000)


def _pattern(size: int, salt: bytes = b"") -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.blake2b(salt + counter.to_bytes(8, "big"), digest_size=64).digest()
        counter += 1
    return bytes(out[:size])


async def _read_all(stream: PeerStream) -> bytes:
    buf = bytearray()
    while chunk := await stream.receive_some():
        buf += chunk
    return bytes(buf)


class Server:
    """A served QuicTransport whose handler hands accepted streams to the test."""

    def __init__(self, transport: QuicTransport) -> None:
        self.transport = transport
        self.identity = transport.identity
        self.accepted_send, self.accepted = trio.open_memory_channel[PeerStream](100)
        self.handler_calls = 0

    @property
    def address(self) -> str:
        return self.transport.addresses()[0]

    async def handler(self, stream: PeerStream) -> None:
        self.handler_calls += 1
        await self.accepted_send.send(stream)
        await trio.sleep_forever()


@asynccontextmanager
async def serving(
    settings: QuicSettings = LOOPBACK, allow_peer: Callable[[bytes], bool] | None = None
) -> AsyncIterator[Server]:
    transport = QuicTransport(
        identity=Identity.generate(), host="127.0.0.1", settings=settings, allow_peer=allow_peer
    )
    server = Server(transport)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve, server.handler)
        yield server
        nursery.cancel_scope.cancel()


def _client(settings: QuicSettings = LOOPBACK) -> QuicTransport:
    return QuicTransport(identity=Identity.generate(), host="127.0.0.1", settings=settings)


# -- pure helpers -------------------------------------------------------------------


def test_addresses_round_trip() -> None:
    assert parse_address("quic://127.0.0.1:4433") == ("127.0.0.1", 4433)
    assert parse_address("[::1]:5") == ("::1", 5)
    assert format_address("::1", 5) == "quic://[::1]:5"
    for bad in ("quic://host", "tcp://1.2.3.4:5", "quic://:80", "quic://h:0", "quic://h:x"):
        with pytest.raises(TransportError):
            parse_address(bad)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        QuicSettings(max_datagram_size=1000)
    with pytest.raises(ValueError):
        QuicSettings(idle_timeout=10, keepalive_interval=10)


def test_certificate_carries_the_node_key() -> None:
    identity = Identity.generate()
    cert, _key = node_certificate(identity)
    assert peer_key_from_certificate(cert) == identity.public_key
    with pytest.raises(TransportError):
        peer_key_from_certificate(None)


def test_plugin_is_registered() -> None:
    assert available_transports()["quic"] == "p2pmsg_quic.transport:QuicTransport"
    transport = load_transport("quic", identity=Identity.generate(), host="127.0.0.1")
    assert isinstance(transport, QuicTransport)
    assert transport.addresses() == []  # not running yet


# -- connections ----------------------------------------------------------------------


async def test_dial_authenticates_both_ends_and_echoes() -> None:
    async with serving() as server:
        client = _client()
        async with client:
            dialed = await client.dial(server.address, server.identity.public_key)
            served = await server.accepted.receive()
            assert dialed.remote_id == server.identity.public_key
            assert served.remote_id == client.identity.public_key
            await dialed.send_all(b"ping")
            assert await served.receive_some() == b"ping"
            await served.send_all(b"pong")
            assert await dialed.receive_some() == b"pong"
            await dialed.aclose()
            await served.aclose()


async def test_dial_before_running_is_refused() -> None:
    with pytest.raises(TransportError, match="not running"):
        await _client().dial("quic://127.0.0.1:9", b"\x00" * 32)


async def test_wrong_expected_key_fails_before_any_data() -> None:
    async with serving() as server:
        client = _client()
        async with client:
            with pytest.raises(TransportError, match="expected"):
                await client.dial(server.address, Identity.generate().public_key)
            # The server never saw a stream, so no byte reached its application.
            await trio.sleep(0.2)
            assert server.handler_calls == 0


class _NoCertTransport(QuicTransport):
    """A client that presents no certificate (plain aioquic client behaviour)."""

    def _configuration(self, *, is_client: bool) -> QuicConfiguration:
        config = super()._configuration(is_client=is_client)
        config.certificate = None
        config.private_key = None
        return config


class _OtherKeyTransport(QuicTransport):
    """A client presenting a valid certificate for a key other than its identity."""

    def _configuration(self, *, is_client: bool) -> QuicConfiguration:
        config = super()._configuration(is_client=is_client)
        config.certificate, config.private_key = node_certificate(Identity.generate())
        return config


async def test_client_without_certificate_is_rejected() -> None:
    async with serving() as server:
        client = _NoCertTransport(identity=Identity.generate(), host="127.0.0.1", settings=LOOPBACK)
        async with client:
            with pytest.raises(TransportError):
                await client.dial(server.address, server.identity.public_key)
        assert server.handler_calls == 0


async def test_server_policy_rejects_unknown_client_keys() -> None:
    allowed = Identity.generate()
    seen: list[bytes] = []

    def allow(key: bytes) -> bool:
        seen.append(key)
        return key == allowed.public_key

    async with serving(allow_peer=allow) as server:
        stranger = _client()
        async with stranger:
            with pytest.raises(TransportError, match="not allowed"):
                await stranger.dial(server.address, server.identity.public_key)
        assert seen == [stranger.identity.public_key]
        # The key the policy sees is the certificate's, not a claimed identity.
        impostor = _OtherKeyTransport(identity=allowed, host="127.0.0.1", settings=LOOPBACK)
        async with impostor:
            with pytest.raises(TransportError):
                await impostor.dial(server.address, server.identity.public_key)
        assert seen[1] != allowed.public_key
        friend = QuicTransport(identity=allowed, host="127.0.0.1", settings=LOOPBACK)
        async with friend:
            stream = await friend.dial(server.address, server.identity.public_key)
            assert (await server.accepted.receive()).remote_id == allowed.public_key
            await stream.aclose()
        assert server.handler_calls == 1


async def test_dial_to_silent_port_times_out(autojump_clock: trio.testing.MockClock) -> None:
    settings = QuicSettings(handshake_timeout=3.0, max_datagram_size=16000)
    silent = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await silent.bind(("127.0.0.1", 0))
    with silent:
        client = _client(settings)
        async with client:
            start = trio.current_time()
            with pytest.raises(TransportError, match="timed out"):
                await client.dial(format_address(*silent.getsockname()), b"\x01" * 32)
            assert trio.current_time() - start >= 3.0


async def test_large_transfer_arrives_intact() -> None:
    data = _pattern(20 * 1024 * 1024, b"large")
    async with serving() as server:
        client = _client()
        async with client:
            dialed = await client.dial(server.address, server.identity.public_key)
            served = await server.accepted.receive()

            async def send() -> None:
                await dialed.send_all(data)
                await dialed.send_eof()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                received = await _read_all(served)
            assert len(received) == len(data)
            assert received == data
            await dialed.aclose()


async def test_send_all_waits_for_acknowledgements() -> None:
    settings = QuicSettings(max_datagram_size=16000, send_buffer=64 * 1024)
    async with serving(settings) as server:
        client = _client(settings)
        async with client:
            dialed = await client.dial(server.address, server.identity.public_key)
            served = await server.accepted.receive()
            driver = dialed._driver  # type: ignore[attr-defined]
            peak = 0

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, driver.unacked())
                    await trio.sleep(0)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                nursery.start_soon(dialed.send_all, _pattern(2 * 1024 * 1024))
                got = 0
                while got < 2 * 1024 * 1024:
                    got += len(await served.receive_some())
                nursery.cancel_scope.cancel()
            assert 0 < peak <= 64 * 1024


async def test_half_close_keeps_the_other_direction_open() -> None:
    async with serving() as server:
        client = _client()
        async with client:
            dialed = await client.dial(server.address, server.identity.public_key)
            served = await server.accepted.receive()
            await dialed.send_all(b"request")
            await dialed.send_eof()
            assert await _read_all(served) == b"request"
            assert await served.receive_some() == b""
            with pytest.raises(trio.ClosedResourceError):
                await dialed.send_all(b"more")
            await served.send_all(b"response")
            await served.send_eof()
            assert await _read_all(dialed) == b"response"


async def test_many_peers_share_one_server_socket() -> None:
    peers = 12
    async with serving() as server:
        clients = [_client() for _ in range(peers)]

        async def echo_server() -> None:
            async with trio.open_nursery() as nursery:
                for _ in range(peers):
                    stream = await server.accepted.receive()

                    async def echo(s: PeerStream = stream) -> None:
                        while chunk := await s.receive_some():
                            await s.send_all(chunk)
                        await s.send_eof()

                    nursery.start_soon(echo)

        async def one(client: QuicTransport, i: int) -> None:
            async with client:
                stream = await client.dial(server.address, server.identity.public_key)
                data = _pattern(100_000, bytes([i]))

                async def send() -> None:
                    await stream.send_all(data)
                    await stream.send_eof()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send)
                    assert await _read_all(stream) == data
                await stream.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo_server)
            for i, client in enumerate(clients):
                nursery.start_soon(one, client, i)
        endpoint = server.transport._endpoint
        assert endpoint is not None
        with trio.move_on_after(10):  # close completes after the draining period
            while endpoint.connection_count():
                await trio.sleep(0.05)
        assert endpoint.connection_count() == 0


async def test_cancelled_receive_loses_no_data_and_close_is_clean() -> None:
    async with serving() as server:
        client = _client()
        async with client:
            dialed = await client.dial(server.address, server.identity.public_key)
            served = await server.accepted.receive()
            with trio.move_on_after(0.05) as scope:
                await served.receive_some()
            assert scope.cancelled_caught
            await dialed.send_all(b"after cancel")
            assert await served.receive_some() == b"after cancel"
            # Graceful close: what was sent before aclose still arrives, then EOF.
            await dialed.send_all(b"last words")
            await dialed.aclose()
            assert await _read_all(served) == b"last words"
            with pytest.raises(trio.ClosedResourceError):
                await dialed.receive_some()
            with pytest.raises(trio.BrokenResourceError):
                await served.send_all(b"too late")


def _crash_silently(server: Server) -> None:
    """Make the server vanish without CONNECTION_CLOSE (power loss, network cut)."""
    endpoint = server.transport._endpoint
    assert endpoint is not None

    def blackhole(data: bytes, addr: tuple[str, int]) -> bool:
        return True  # "sent", and lost

    endpoint.transmit = blackhole  # type: ignore[method-assign]


async def test_stopping_serve_tells_peers_at_once() -> None:
    client = _client()
    async with client:
        async with serving() as server:
            dialed = await client.dial(server.address, server.identity.public_key)
            await server.accepted.receive()
        # serve() was cancelled: its endpoint sent CONNECTION_CLOSE on the way out,
        # so the peer learns now, not after its 60 s idle timeout.
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
            await dialed.receive_some()


async def test_idle_timeout_detects_a_vanished_peer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = QuicSettings(idle_timeout=20.0, keepalive_interval=5.0, max_datagram_size=16000)
    client = _client(settings)
    async with client:
        async with serving(settings) as server:
            dialed = await client.dial(server.address, server.identity.public_key)
            await server.accepted.receive()
            _crash_silently(server)
        vanished = trio.current_time()
        with pytest.raises(trio.BrokenResourceError, match=r"[Ii]dle"):
            await dialed.receive_some()
        assert trio.current_time() - vanished >= 20.0


async def test_keepalive_holds_an_idle_connection_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = QuicSettings(idle_timeout=20.0, keepalive_interval=5.0, max_datagram_size=16000)
    async with serving(settings) as server:
        client = _client(settings)
        async with client:
            dialed = await client.dial(server.address, server.identity.public_key)
            served = await server.accepted.receive()
            await trio.sleep(120.0)  # six idle timeouts of silence from the application
            await dialed.send_all(b"still here")
            assert await served.receive_some() == b"still here"


async def test_without_keepalive_an_idle_connection_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = QuicSettings(idle_timeout=20.0, keepalive_interval=None, max_datagram_size=16000)
    async with serving(settings) as server:
        client = _client(settings)
        async with client:
            dialed = await client.dial(server.address, server.identity.public_key)
            served = await server.accepted.receive()
            with pytest.raises(trio.BrokenResourceError):
                await served.receive_some()
            with pytest.raises(trio.BrokenResourceError):
                await dialed.send_all(b"x")


async def test_other_alpn_is_rejected() -> None:
    class _OtherAlpn(QuicTransport):
        def _configuration(self, *, is_client: bool) -> QuicConfiguration:
            config = super()._configuration(is_client=is_client)
            config.alpn_protocols = ["h3"]
            config.verify_mode = ssl.CERT_NONE
            return config

    async with serving() as server:
        client = _OtherAlpn(identity=Identity.generate(), host="127.0.0.1", settings=LOOPBACK)
        async with client:
            with pytest.raises(TransportError):
                await client.dial(server.address, server.identity.public_key)
        assert server.handler_calls == 0


def _ipv6_loopback_available() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback on this host")
async def test_ipv6_round_trip() -> None:
    server = QuicTransport(identity=Identity.generate(), host="::1", settings=LOOPBACK)
    box = Server(server)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, box.handler)
        client = QuicTransport(identity=Identity.generate(), host="::1", settings=LOOPBACK)
        async with client:
            assert box.address.startswith("quic://[::1]:")
            dialed = await client.dial(box.address, server.identity.public_key)
            served = await box.accepted.receive()
            await dialed.send_all(b"over IPv6")
            await dialed.send_eof()
            assert await _read_all(served) == b"over IPv6"
        nursery.cancel_scope.cancel()
