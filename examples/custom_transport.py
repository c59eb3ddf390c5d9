"""EXAMPLE ONLY — a third-party p2pmsg transport over Unix domain sockets.

This file shows how to write a transport plugin against the public API alone
(``p2pmsg.net.base``, ``p2pmsg.identity``, ``p2pmsg.errors``). It is short on
purpose and **not for production**: it authenticates peers but does not encrypt
or integrity-protect the bytes after the handshake (see "Limits" below). For a
real network use the bundled ``tcp`` or ``quic`` plugins. docs/transports.md walks
through it.

Addresses are ``unix://`` + an absolute socket path, e.g. ``unix:///run/p2pmsg/a.sock``.

Handshake (p2pmsg-example-unix/1), run before any application byte::

    C -> S  LABEL(22) || client_key(32) || client_nonce(32)
    S -> C  server_key(32) || server_nonce(32) || sig_S(64)
            C: server_key == expected_peer?  sig_S valid?  else TransportError
    C -> S  sig_C(64)
            S: sig_C valid?  allow_peer(client_key)?  else close
    S -> C  0x01 (ACCEPT)                       dial returns; handler starts

    sig_X = Ed25519 over Domain.HANDSHAKE || transcript(X)
    transcript(X) = LABEL || X || client_key || client_nonce || server_key || server_nonce

Why this is a correct reuse of existing primitives: signatures are made with
:meth:`p2pmsg.identity.Identity.sign` (pynacl Ed25519) in the existing
``HANDSHAKE`` domain, and the signed message starts with a label unique to this
protocol and has a fixed length (151 bytes) different from what p2pmsg-tcp signs
(a 32-byte hash), so a signature from one protocol never verifies in the other.
Each side signs the *other* side's fresh random nonce (``nacl.utils.random``), so
a recorded handshake cannot be replayed, and the role byte ``C``/``S`` stops a
signature from being reflected back.

Limits: there is no key exchange and no channel binding, so a process on the same
host that can make you dial *its* socket could relay the handshake and then read
the traffic. Socket-directory permissions are the real boundary here; a
production plugin would add an ephemeral key exchange bound into the transcript
and authenticated encryption (what ``p2pmsg-tcp`` does; docs/protocol-tcp.md).

Registering it: put the code in a distribution (say ``p2pmsg-unix`` with package
``p2pmsg_unix``) and declare the entry point in its ``pyproject.toml``::

    [project.entry-points."p2pmsg.transports"]
    unix = "p2pmsg_unix:UnixTransport"

after which ``p2pmsg.net.base.load_transport("unix", identity=..., path=...)``
builds it. Check it with :func:`p2pmsg.testing.check_transport`
(tests/test_examples_custom_transport.py does).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import nacl.utils
import trio

from p2pmsg.errors import TransportError
from p2pmsg.identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Domain, Identity, short_id, verify
from p2pmsg.net.base import PeerStream, StreamHandler, Transport

__all__ = ["SCHEME", "UnixPeerStream", "UnixTransport"]

SCHEME = "unix"
_PREFIX = SCHEME + "://"
_LABEL = b"p2pmsg-example-unix/1\x00"
_NONCE_SIZE = 32
_ACCEPT = b"\x01"
_log = logging.getLogger("p2pmsg.example.unix")


class UnixPeerStream(PeerStream):
    """An authenticated (not encrypted) stream: a ``trio.SocketStream`` plus ``remote_id``.

    Every method delegates to the socket stream, which already raises what the
    :class:`~p2pmsg.net.base.PeerStream` contract asks for.
    """

    def __init__(self, sock: trio.SocketStream, remote_id: bytes) -> None:
        self._sock = sock
        self.remote_id = remote_id

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._sock.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._sock.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._sock.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self._sock.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._sock.aclose()


class UnixTransport(Transport):
    """Dial and serve ``unix://`` addresses for one node identity.

    Args:
        identity: this node's key (the ``identity`` keyword convention).
        path: the absolute socket path :meth:`serve` binds (plugin-specific keyword).
        allow_peer: asked with each authenticated incoming key; False refuses.
        handshake_timeout: seconds for connect + handshake, both directions.
    """

    scheme = SCHEME

    def __init__(
        self,
        identity: Identity,
        *,
        path: str,
        allow_peer: Callable[[bytes], bool] | None = None,
        handshake_timeout: float = 10.0,
    ) -> None:
        if not os.path.isabs(path):
            raise ValueError("path must be an absolute socket path")
        self.identity = identity
        self.path = path
        self._allow_peer = allow_peer
        self._timeout = handshake_timeout

    def addresses(self) -> list[str]:
        return [_PREFIX + self.path]

    async def dial(self, address: str, expected_peer: bytes) -> UnixPeerStream:
        if not address.startswith(_PREFIX) or not os.path.isabs(address[len(_PREFIX) :]):
            raise TransportError(f"expected unix:///ABSOLUTE/PATH, got {address!r}")
        try:
            with trio.fail_after(self._timeout):
                sock = await trio.open_unix_socket(address[len(_PREFIX) :])
                try:
                    await _client_handshake(sock, self.identity, expected_peer)
                except BaseException:
                    await trio.aclose_forcefully(sock)
                    raise
        except trio.TooSlowError:
            raise TransportError(f"handshake with {address} timed out") from None
        except OSError as exc:
            raise TransportError(f"cannot connect to {address}: {exc.strerror or exc}") from exc
        return UnixPeerStream(sock, expected_peer)

    async def serve(
        self,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        try:
            await sock.bind(self.path)  # fails if the path exists: no stealing
            sock.listen()
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot listen on {self.path}: {exc.strerror or exc}") from exc
        listener = trio.SocketListener(sock)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    stream = await listener.accept()
                    nursery.start_soon(self._handle, stream, handler)
        finally:  # synchronous, so it also runs when we are being cancelled
            os.unlink(self.path)
            sock.close()

    async def _handle(self, sock: trio.SocketStream, handler: StreamHandler) -> None:
        try:
            with trio.fail_after(self._timeout):
                remote = await _server_handshake(sock, self.identity, self._allow_peer)
        except (TransportError, trio.TooSlowError) as exc:
            _log.debug("unix: dropped an incoming connection: %s", exc)
            await trio.aclose_forcefully(sock)
            return
        stream = UnixPeerStream(sock, remote)
        try:
            await handler(stream)
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()


def _transcript(role: bytes, client: bytes, c_nonce: bytes, server: bytes, s_nonce: bytes) -> bytes:
    return _LABEL + role + client + c_nonce + server + s_nonce


async def _client_handshake(sock: trio.SocketStream, me: Identity, expected: bytes) -> None:
    c_nonce = nacl.utils.random(_NONCE_SIZE)
    await _send(sock, _LABEL + me.public_key + c_nonce)
    reply = await _receive_exactly(sock, PUBLIC_KEY_SIZE + _NONCE_SIZE + SIGNATURE_SIZE)
    server, s_nonce, sig_s = reply[:32], reply[32:64], reply[64:]
    if server != expected:
        raise TransportError(f"peer proved key {short_id(server)}, expected {short_id(expected)}")
    if not verify(server, Domain.HANDSHAKE, _transcript(b"S", me.public_key, c_nonce,
                                                         server, s_nonce), sig_s):
        raise TransportError("the peer's handshake signature does not verify")
    sig_c = me.sign(Domain.HANDSHAKE, _transcript(b"C", me.public_key, c_nonce, server, s_nonce))
    await _send(sock, sig_c)
    if await _receive_exactly(sock, 1) != _ACCEPT:
        raise TransportError("the peer sent garbage instead of ACCEPT")


async def _server_handshake(
    sock: trio.SocketStream, me: Identity, allow_peer: Callable[[bytes], bool] | None
) -> bytes:
    hello = await _receive_exactly(sock, len(_LABEL) + PUBLIC_KEY_SIZE + _NONCE_SIZE)
    if hello[: len(_LABEL)] != _LABEL:
        raise TransportError("not a p2pmsg-example-unix/1 client")
    client, c_nonce = hello[len(_LABEL) : -_NONCE_SIZE], hello[-_NONCE_SIZE:]
    s_nonce = nacl.utils.random(_NONCE_SIZE)
    sig_s = me.sign(Domain.HANDSHAKE, _transcript(b"S", client, c_nonce, me.public_key, s_nonce))
    await _send(sock, me.public_key + s_nonce + sig_s)
    sig_c = await _receive_exactly(sock, SIGNATURE_SIZE)
    if not verify(client, Domain.HANDSHAKE, _transcript(b"C", client, c_nonce,
                                                         me.public_key, s_nonce), sig_c):
        raise TransportError("the client's handshake signature does not verify")
    if allow_peer is not None and not allow_peer(client):
        raise TransportError(f"peer {short_id(client)} is not allowed")
    await _send(sock, _ACCEPT)
    return client


async def _send(sock: trio.SocketStream, data: bytes) -> None:
    try:
        await sock.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise TransportError("connection lost during handshake") from exc


async def _receive_exactly(sock: trio.SocketStream, size: int) -> bytes:
    """Exactly ``size`` bytes; never reads past them (application data may follow)."""
    buf = bytearray()
    try:
        while len(buf) < size:
            chunk = await sock.receive_some(size - len(buf))
            if not chunk:
                raise TransportError("connection closed during handshake (refused?)")
            buf += chunk
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise TransportError("connection lost during handshake") from exc
    return bytes(buf)
