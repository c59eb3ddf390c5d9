"""QUIC as a p2pmsg transport: :class:`QuicTransport` and its :class:`QuicSettings`.

Addresses look like ``quic://127.0.0.1:4433`` or ``quic://[::1]:4433``.

Identity and trust: each node presents a self-signed certificate over its own
Ed25519 node key, and *both* sides present one (the server requests the client's).
Certificate chains are not verified — there is no CA; after the TLS handshake the
key inside the peer's certificate is pinned instead: the dialer requires it to
equal ``expected_peer``, the server passes it to ``allow_peer`` (if given) and to
the handler as ``stream.remote_id``. TLS 1.3's CertificateVerify proves the peer
holds the private key. A mismatch closes the connection before any stream byte is
delivered and ``dial`` raises :class:`~p2pmsg.errors.TransportError`.

Lifecycle: the transport owns one UDP socket and the background tasks that drive
its connections, so it must be running to dial: either ``serve`` is running
(``await nursery.start(transport.serve, handler)``), or the transport is open as
``async with transport:`` (dial-only use). Cancelling ``serve`` / leaving the
``async with`` abandons every connection of the transport.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import TracebackType

import trio
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.packet import QuicProtocolVersion

from p2pmsg.errors import TransportError
from p2pmsg.identity import Identity
from p2pmsg.net.base import StreamHandler, Transport

from ._aioquic import MutualQuicConnection
from ._cert import node_certificate
from ._connection import ALPN, Address, ConnectionDriver
from ._endpoint import CONNECTION_ID_LENGTH, Endpoint, NewConnectionLimiter
from ._stream import QuicPeerStream

__all__ = ["SCHEME", "QuicSettings", "QuicTransport", "format_address", "parse_address"]

SCHEME = "quic"
_PREFIX = SCHEME + "://"


@dataclass(frozen=True, slots=True)
class QuicSettings:
    """Tunables of a :class:`QuicTransport`. The defaults suit the internet."""

    idle_timeout: float = 60.0
    """Close a connection after this many seconds without hearing from the peer."""
    keepalive_interval: float | None = 15.0
    """Send a PING after this many quiet seconds (None: never). Keep < idle_timeout."""
    max_datagram_size: int = 1350
    """Largest UDP payload sent. Raise it where the path allows (loopback, LAN with
    jumbo frames): aioquic is CPU-bound per packet, so bigger packets are faster."""
    send_buffer: int = 1 << 20
    """Per-stream bound on bytes sent but not yet acknowledged; send_all waits beyond."""
    handshake_timeout: float = 10.0
    """``dial`` gives up (TransportError) after this many seconds."""
    close_timeout: float = 5.0
    """``aclose`` waits at most this long for sent data to be acknowledged."""
    max_connections: int = 1024
    """Connections one socket carries; further Initials are dropped (DoS bound)."""
    new_connection_rate: float = 20.0
    """New server connections per second accepted from one source host (Initial
    flood bound: there are no Retry tokens); excess Initials are dropped."""
    new_connection_burst: int = 40
    """How many new connections one source host may open at once."""
    flow_control_window: int = 1 << 20
    """Receive window per stream: at most this many received bytes wait for the
    application; the peer's window reopens only as the application reads. (The
    connection-level window starts here and is grown by aioquic.)"""
    socket_buffer: int = 4 << 20
    """Requested SO_RCVBUF/SO_SNDBUF of the UDP socket (capped by the kernel)."""
    supported_versions: list[int] = field(
        default_factory=lambda: [QuicProtocolVersion.VERSION_1]
    )

    def __post_init__(self) -> None:
        if self.max_datagram_size < SMALLEST_MAX_DATAGRAM_SIZE:
            raise ValueError(f"max_datagram_size must be >= {SMALLEST_MAX_DATAGRAM_SIZE}")
        if self.idle_timeout <= 0 or self.handshake_timeout <= 0 or self.close_timeout < 0:
            raise ValueError("timeouts must be positive")
        if self.keepalive_interval is not None and not (
            0 < self.keepalive_interval < self.idle_timeout
        ):
            raise ValueError("keepalive_interval must be in (0, idle_timeout)")
        if self.send_buffer < 1 or self.max_connections < 1:
            raise ValueError("send_buffer and max_connections must be >= 1")
        if self.flow_control_window < 1024:
            raise ValueError("flow_control_window must be >= 1024")
        if self.new_connection_rate <= 0 or self.new_connection_burst < 1:
            raise ValueError("new_connection_rate must be > 0 and new_connection_burst >= 1")


def parse_address(address: str) -> tuple[str, int]:
    """``quic://host:port`` (or ``host:port``; IPv6 in brackets) -> (host, port).

    Raises:
        TransportError: not a QUIC address.
    """
    rest = address.removeprefix(_PREFIX)
    if "://" in rest:
        raise TransportError(f"not a QUIC address: {address!r}")
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise TransportError(f"not a QUIC address (want quic://host:port): {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    """The inverse of :func:`parse_address`."""
    if ":" in host:
        host = f"[{host}]"
    return f"{_PREFIX}{host}:{port}"


class QuicTransport(Transport):
    """The ``quic`` transport plugin: authenticated streams over QUIC (aioquic).

    Build with the node's :class:`~p2pmsg.identity.Identity` and the local address
    to bind (``host``, ``port``; port 0 picks a free one), or via
    ``p2pmsg.net.base.load_transport("quic", identity=..., host=..., port=...)``.
    ``allow_peer`` (optional) is asked, server side, about each authenticated key
    before the connection's stream is accepted.
    """

    scheme = SCHEME

    def __init__(
        self,
        *,
        identity: Identity,
        host: str = "0.0.0.0",  # noqa: S104 - a node listens for peers by design
        port: int = 0,
        settings: QuicSettings | None = None,
        allow_peer: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.identity = identity
        self.host = host
        self.port = port
        self.settings = settings if settings is not None else QuicSettings()
        self.allow_peer = allow_peer
        self._certificate, self._private_key = node_certificate(identity)
        self._endpoint: Endpoint | None = None
        self._cm: trio.Nursery | None = None
        self._nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._serving = False

    def __repr__(self) -> str:
        return f"QuicTransport({self.identity.short_id}, {self.host}:{self.port})"

    # -- configuration ----------------------------------------------------------------

    def _configuration(self, *, is_client: bool) -> QuicConfiguration:
        s = self.settings
        return QuicConfiguration(
            alpn_protocols=[ALPN],
            is_client=is_client,
            idle_timeout=s.idle_timeout,
            max_datagram_size=s.max_datagram_size,
            max_data=s.flow_control_window,
            max_stream_data=s.flow_control_window,
            connection_id_length=CONNECTION_ID_LENGTH,
            certificate=self._certificate,
            private_key=self._private_key,
            # No CA: the peer's key is pinned after the handshake instead.
            verify_mode=ssl.CERT_NONE,
            supported_versions=list(s.supported_versions),
        )

    # -- lifecycle --------------------------------------------------------------------

    def _open_socket(self) -> socket.socket:
        # A plain non-blocking socket: the endpoint drains it in batches itself.
        try:
            is_v6 = ipaddress.ip_address(self.host).version == 6
            family = socket.AF_INET6 if is_v6 else socket.AF_INET
        except ValueError as exc:
            raise TransportError(f"bind host must be an IP address, got {self.host!r}") from exc
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            # Bursts from many connections overflow the default ~200 KiB buffers;
            # the kernel caps these at net.core.[rw]mem_max.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.settings.socket_buffer)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.socket_buffer)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot bind UDP {self.host}:{self.port}: {exc}") from exc
        return sock

    async def _run_endpoint(self, *, task_status: trio.TaskStatus[Endpoint]) -> None:
        sock = self._open_socket()
        await trio.lowlevel.checkpoint()
        s = self.settings
        with sock:
            async with trio.open_nursery() as nursery:
                endpoint = Endpoint(
                    sock, nursery, list(s.supported_versions), s.max_connections,
                    NewConnectionLimiter(s.new_connection_rate, s.new_connection_burst),
                )
                self._endpoint = endpoint
                try:
                    nursery.start_soon(endpoint.receive_loop)
                    task_status.started(endpoint)
                    await trio.sleep_forever()
                finally:
                    self._endpoint = None
                    nursery.cancel_scope.cancel()

    async def __aenter__(self) -> QuicTransport:
        if self._endpoint is not None:
            raise TransportError("this QuicTransport is already open")
        manager = trio.open_nursery()
        nursery = await manager.__aenter__()
        try:
            await nursery.start(self._run_endpoint)
        except BaseException as exc:
            nursery.cancel_scope.cancel()
            await manager.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._nursery_manager = manager
        self._cm = nursery
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        nursery, manager = self._cm, self._nursery_manager
        self._cm = self._nursery_manager = None
        assert nursery is not None and manager is not None
        nursery.cancel_scope.cancel()
        return await manager.__aexit__(exc_type, exc, tb)

    def addresses(self) -> list[str]:
        endpoint = self._endpoint
        if endpoint is None:
            return []
        host, port = endpoint.local_address
        if host in ("0.0.0.0", "::"):  # noqa: S104
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"  # noqa: S104
        return [format_address(host, port)]

    # -- dial / serve -----------------------------------------------------------------

    async def dial(self, address: str, expected_peer: bytes) -> QuicPeerStream:
        endpoint = self._endpoint
        if endpoint is None:
            raise TransportError(
                "QuicTransport is not running: run serve() or use `async with transport`"
            )
        addr = await self._resolve(address, endpoint)
        quic = MutualQuicConnection(configuration=self._configuration(is_client=True))
        driver = ConnectionDriver(endpoint, quic, self.settings, expected_peer=expected_peer)
        quic.connect(addr, now=trio.current_time())
        endpoint.start(driver, quic.host_cid)
        try:
            await driver.wait_established(self.settings.handshake_timeout)
        except BaseException:
            if driver.closing_reason is None:
                driver.close(reason="dial abandoned")
            raise
        assert driver.stream is not None
        return driver.stream

    async def _resolve(self, address: str, endpoint: Endpoint) -> Address:
        host, port = parse_address(address)
        family = endpoint.sock.family
        try:
            infos = await trio.socket.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise TransportError(f"cannot resolve {address!r}: {exc}") from exc
        if not infos:
            raise TransportError(f"cannot resolve {address!r}")
        sockaddr = infos[0][4]
        return str(sockaddr[0]), int(sockaddr[1])

    async def serve(
        self,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if self._serving:
            raise TransportError("this QuicTransport is already serving")
        self._serving = True
        try:
            async with trio.open_nursery() as nursery:
                endpoint = self._endpoint
                if endpoint is None:
                    endpoint = await nursery.start(self._run_endpoint)

                def accept_stream(stream: QuicPeerStream) -> None:
                    nursery.start_soon(self._run_handler, handler, stream)

                def accept(original_cid: bytes, addr: Address) -> ConnectionDriver:
                    quic = MutualQuicConnection(
                        configuration=self._configuration(is_client=False),
                        original_destination_connection_id=original_cid,
                    )
                    return ConnectionDriver(
                        endpoint, quic, self.settings,
                        allow_peer=self.allow_peer, on_accept=accept_stream,
                    )

                endpoint.accept = accept
                try:
                    task_status.started()
                    await trio.sleep_forever()
                finally:
                    endpoint.accept = None
                    nursery.cancel_scope.cancel()
        finally:
            self._serving = False

    @staticmethod
    async def _run_handler(handler: StreamHandler, stream: QuicPeerStream) -> None:
        try:
            await handler(stream)
        except trio.BrokenResourceError:
            pass  # the peer went away mid-conversation: normal for a network
        finally:
            await _close_quietly(stream)


async def _close_quietly(stream: QuicPeerStream) -> None:
    try:
        await stream.aclose()
    except trio.Cancelled:
        raise
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
