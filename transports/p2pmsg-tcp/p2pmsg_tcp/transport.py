"""The ``tcp`` transport plugin: dial and serve authenticated, encrypted TCP streams.

For networks that block UDP (and so QUIC). Every connection runs the
p2pmsg-tcp/1 handshake (:mod:`p2pmsg_tcp.handshake`) under a timeout before any
application byte flows; what comes out is a :class:`~p2pmsg_tcp.stream.TcpPeerStream`
whose ``remote_id`` is the peer's proven node key.

Use it like every transport (:mod:`p2pmsg.net.base`)::

    transport = TcpTransport(identity, host="192.0.2.10", port=7420)
    await nursery.start(transport.serve, handler)       # accept
    stream = await transport.dial("tcp://192.0.2.11:7420", their_node_key)

or by name through the plugin registry: ``load_transport("tcp", identity=...)``.
Addresses are ``tcp://HOST:PORT`` (``tcp://[::1]:PORT`` for IPv6).
"""

from __future__ import annotations

import errno
import logging
import math
from collections.abc import Callable

import trio

from p2pmsg.errors import TransportError
from p2pmsg.identity import Identity, short_id
from p2pmsg.net.base import PeerStream, StreamHandler, Transport

from .handshake import ClientHandshake, ServerHandshake
from .records import MAX_WIRE_RECORD
from .stream import TcpPeerStream

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_HANDSHAKES",
    "SCHEME",
    "TcpTransport",
    "format_address",
    "parse_address",
]

SCHEME = "tcp"
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a connection may take from TCP connect/accept to a finished handshake."""
DEFAULT_MAX_HANDSHAKES = 128
"""Incoming handshakes run at once; more wait (within their timeout) for a slot."""

_log = logging.getLogger("p2pmsg.tcp")
_HANDSHAKE_READ = MAX_WIRE_RECORD
_ACCEPT_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


def parse_address(address: str) -> tuple[str, int]:
    """``"tcp://host:port"`` -> ``(host, port)``; IPv6 hosts come without brackets.

    Raises:
        TransportError: not a valid tcp address.
    """
    prefix = SCHEME + "://"
    if not address.startswith(prefix):
        raise TransportError(f"not a {SCHEME} address: {address!r}")
    rest = address[len(prefix) :]
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise TransportError(f"expected {SCHEME}://HOST:PORT, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise TransportError(f"IPv6 hosts need brackets: {address!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise TransportError(f"port out of range in {address!r}")
    return host, port


def format_address(host: str, port: int) -> str:
    """The inverse of :func:`parse_address`."""
    if ":" in host:
        host = f"[{host}]"
    return f"{SCHEME}://{host}:{port}"


async def _run_handshake(
    sock: trio.SocketStream, machine: ClientHandshake | ServerHandshake
) -> TcpPeerStream:
    """Drive ``machine`` over ``sock`` until it completes; the resulting stream.

    Raises TransportError for anything the peer or the network does wrong.
    """
    try:
        while True:
            out = machine.data_to_send()
            if out:
                await sock.send_all(out)
            if machine.complete:
                break
            machine.receive_data(await sock.receive_some(_HANDSHAKE_READ))
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        raise TransportError("connection lost during handshake") from exc
    result = machine.result()
    return TcpPeerStream(sock, result.remote_id, result.encoder, result.decoder)


class TcpTransport(Transport):
    """Authenticated, encrypted streams over TCP for one node identity.

    Args:
        identity: this node's Ed25519 key; its public key is what peers pin.
        host, port: where :meth:`serve` listens (port 0 = pick a free one).
        allow_peer: optional check run inside the handshake on the *authenticated*
            key of every incoming client; False refuses the connection before any
            application byte flows. (The node also asks its Policy afterwards.)
        advertise: addresses to return from :meth:`addresses` instead of the bound
            ones (use when listening on a wildcard address or behind NAT).
        handshake_timeout: seconds for connect + handshake, both directions.
        max_handshakes: incoming handshakes in progress at once.
    """

    scheme = SCHEME

    def __init__(
        self,
        identity: Identity,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_peer: Callable[[bytes], bool] | None = None,
        advertise: list[str] | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        max_handshakes: int = DEFAULT_MAX_HANDSHAKES,
    ) -> None:
        if not (handshake_timeout > 0 and math.isfinite(handshake_timeout)):
            raise ValueError("handshake_timeout must be a positive number of seconds")
        for adv in advertise or ():
            parse_address(adv)
        self.identity = identity
        self._host = host
        self._port = port
        self._allow_peer = allow_peer
        self._advertise = list(advertise) if advertise is not None else None
        self._handshake_timeout = handshake_timeout
        self._handshake_slots = trio.CapacityLimiter(max_handshakes)
        self._bound: list[str] = []

    def __repr__(self) -> str:
        return f"TcpTransport({self.identity.short_id}, {self.addresses()})"

    def addresses(self) -> list[str]:
        if self._advertise is not None:
            return list(self._advertise)
        return list(self._bound)

    async def dial(self, address: str, expected_peer: bytes) -> PeerStream:
        """Connect to ``address`` and return a stream once it proved to be ``expected_peer``.

        Raises:
            TransportError: bad address, unreachable, timeout, handshake failure, or
                the peer holds another key (detected before we send anything but
                our handshake).
        """
        host, port = parse_address(address)
        machine = ClientHandshake(self.identity, expected_peer)
        sock: trio.SocketStream | None = None
        try:
            with trio.fail_after(self._handshake_timeout):
                try:
                    sock = await trio.open_tcp_stream(host, port)
                except OSError as exc:
                    raise TransportError(f"cannot connect to {address}") from exc
                stream = await _run_handshake(sock, machine)
        except trio.TooSlowError as exc:
            if sock is not None:
                await trio.aclose_forcefully(sock)
            raise TransportError(f"handshake with {address} timed out") from exc
        except BaseException:
            if sock is not None:
                await trio.aclose_forcefully(sock)
            raise
        _log.debug("dialled %s at %s", short_id(stream.remote_id), address)
        return stream

    async def serve(
        self,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and run ``handler`` on every authenticated connection until cancelled.

        Failed handshakes are logged and dropped; they never end ``serve``. A
        handler ending with TransportError or trio.BrokenResourceError (the peer
        misbehaved or left) is logged; any other exception from a handler
        propagates and ends ``serve`` (it is a bug in the handler). The stream is
        closed when the handler returns.
        """
        try:
            listeners = await trio.open_tcp_listeners(self._port, host=self._host)
        except OSError as exc:
            raise TransportError(f"cannot listen on {self._host}:{self._port}") from exc
        try:
            self._bound = [
                format_address(*listener.socket.getsockname()[:2]) for listener in listeners
            ]
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener, handler, nursery)
                task_status.started()
        finally:
            self._bound = []
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    async def _accept_loop(
        self,
        listener: trio.SocketListener,
        handler: StreamHandler,
        nursery: trio.Nursery,
    ) -> None:
        while True:
            try:
                sock = await listener.accept()
            except OSError as exc:
                if exc.errno in _ACCEPT_RETRY_ERRNOS:
                    _log.warning("accept failed (%s); retrying", errno.errorcode[exc.errno])
                    await trio.sleep(0.1)
                    continue
                raise
            nursery.start_soon(self._handle_connection, sock, handler)

    async def _handle_connection(self, sock: trio.SocketStream, handler: StreamHandler) -> None:
        machine = ServerHandshake(self.identity, allow_peer=self._allow_peer)
        try:
            with trio.fail_after(self._handshake_timeout):
                async with self._handshake_slots:
                    stream = await _run_handshake(sock, machine)
        except (TransportError, trio.TooSlowError) as exc:
            _log.info("incoming handshake failed: %s", exc)
            await trio.aclose_forcefully(sock)
            return
        except BaseException:
            await trio.aclose_forcefully(sock)
            raise
        _log.debug("accepted %s", short_id(stream.remote_id))
        try:
            await handler(stream)
        except (TransportError, trio.BrokenResourceError) as exc:
            _log.info("connection from %s ended: %s", short_id(stream.remote_id), exc)
        finally:
            await stream.aclose()
