"""The p2pmsg-tcp/1 handshake as two sans-IO state machines (bytes in, bytes out).

Theory of operation
-------------------
Four messages, two round trips (the wire format, byte by byte, is in
docs/protocol-tcp.md)::

    dialer (client)                                   listener (server)
    M1  HELLO(eph_c)                         ->
                                             <-   M2  HELLO(eph_s) || hdr_s || rec{node_s}
        check node_s == expected_peer (else abort, having revealed nothing)
    M3  hdr_c || rec{node_c || sig_c}        ->
                                                  verify sig_c, ask allow_peer(node_c)
                                             <-   M4  rec{sig_s}
        verify sig_s; only now may application bytes flow

``eph_*`` are fresh X25519 keys from ``crypto_kx_keypair``; ``crypto_kx_*_session_keys``
turns them into one key per direction, and each direction is a libsodium
secretstream (see :mod:`p2pmsg_tcp.records`) from its first handshake record on.
Each side signs, with its Ed25519 node key in domain ``Domain.HANDSHAKE``::

    th(role) = BLAKE2b-256(b"p2pmsg-tcp/1" || 0x00 || role || eph_c || eph_s || node_c || node_s)

(role = ``b"C"`` or ``b"S"``). Both signatures cover both ephemeral keys and both
node keys, so a man in the middle who substitutes ephemeral keys makes the
signatures fail, a signature cannot be replayed into another session (fresh
ephemerals), and one side's signature cannot be reflected as the other's (role).
Node keys travel encrypted, so a passive observer learns neither identity.

Use: ``hs = ClientHandshake(identity, expected_peer)`` (or ``ServerHandshake``),
send ``hs.data_to_send()``, feed received bytes to ``hs.receive_data`` (``b""`` on
EOF) and send again, until ``hs.complete``; then ``hs.result()`` gives the
authenticated peer key and the record encoder/decoder for application data (any
bytes that arrived after the handshake are already inside that decoder).
Bad input raises :class:`~p2pmsg.errors.TransportError` and nothing else; after
an error the machine is dead and must not be fed again.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import nacl.bindings as sodium
import nacl.exceptions

from p2pmsg.errors import LocalProtocolError, TransportError
from p2pmsg.identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Domain, Identity, verify

from .records import HEADER_BYTES, RecordDecoder, RecordEncoder, new_pull_state, new_push_state

__all__ = [
    "HELLO_SIZE",
    "MAGIC",
    "PROTOCOL_LABEL",
    "VERSION",
    "ClientHandshake",
    "HandshakeResult",
    "ServerHandshake",
    "State",
    "transcript_hash",
]

PROTOCOL_LABEL = b"p2pmsg-tcp/1"
"""Protocol name and version, bound into every transcript hash."""
MAGIC = b"P2PT"
"""First bytes of both hellos, so a stray client of another protocol fails fast."""
VERSION = 1
"""The version byte after MAGIC. Any other value aborts the handshake."""
KX_PUBLIC_KEY_SIZE: int = sodium.crypto_kx_PUBLIC_KEY_BYTES
HELLO_SIZE = len(MAGIC) + 1 + KX_PUBLIC_KEY_SIZE
"""Size of the cleartext hello: MAGIC || VERSION || ephemeral X25519 key (37 bytes)."""
ROLE_CLIENT = b"C"
ROLE_SERVER = b"S"


def transcript_hash(role: bytes, eph_c: bytes, eph_s: bytes, node_c: bytes, node_s: bytes) -> bytes:
    """The 32-byte hash a side signs (``role`` is ``b"C"`` or ``b"S"``).

    All inputs have fixed sizes, so plain concatenation is unambiguous.
    """
    h = hashlib.blake2b(digest_size=32)
    for part in (PROTOCOL_LABEL, b"\x00", role, eph_c, eph_s, node_c, node_s):
        h.update(part)
    return h.digest()


class State(enum.Enum):
    """Where a handshake machine is."""

    WAIT_HELLO = "wait_hello"
    """Client: M1 queued, waiting for M2. Server: waiting for M1."""
    WAIT_AUTH = "wait_auth"
    """Client: M3 queued, waiting for M4. Server: M2 queued, waiting for M3."""
    COMPLETE = "complete"
    """Both sides authenticated; :meth:`result` is available."""
    FAILED = "failed"
    """A TransportError was raised; the connection must be closed."""


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What a completed handshake hands to the record layer."""

    remote_id: bytes
    """The peer's Ed25519 node key, proven by its signature over the transcript."""
    encoder: RecordEncoder
    """Encrypts our application bytes (continues our secretstream)."""
    decoder: RecordDecoder
    """Decrypts the peer's application bytes; may already hold some."""


_Keypair = tuple[bytes, bytes]


def _hello(eph_pk: bytes) -> bytes:
    return MAGIC + bytes([VERSION]) + eph_pk


class _Handshake:
    """What both roles share: buffers, failure handling, the hello parser."""

    def __init__(self, identity: Identity, ephemeral: _Keypair | None) -> None:
        self._identity = identity
        if ephemeral is None:
            ephemeral = sodium.crypto_kx_keypair()
        self._eph_pk, self._eph_sk = ephemeral
        self._state = State.WAIT_HELLO
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._encoder: RecordEncoder | None = None
        self._decoder: RecordDecoder | None = None
        self._remote_id: bytes | None = None
        self._rx = b""
        self._tx = b""

    @property
    def state(self) -> State:
        return self._state

    @property
    def complete(self) -> bool:
        """True once both sides are authenticated."""
        return self._state is State.COMPLETE

    def data_to_send(self) -> bytes:
        """Drain the bytes to write to the socket (may be empty)."""
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    def result(self) -> HandshakeResult:
        """The authenticated peer and record layer.

        Raises:
            LocalProtocolError: the handshake is not complete.
        """
        if (
            self._state is not State.COMPLETE
            or self._remote_id is None
            or self._encoder is None
            or self._decoder is None
        ):
            raise LocalProtocolError("handshake not complete")
        return HandshakeResult(self._remote_id, self._encoder, self._decoder)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the peer (``b""`` = the peer closed the connection).

        Raises:
            TransportError: the peer sent garbage, the wrong key, a bad signature,
                was refused by policy, or closed before the handshake finished.
            LocalProtocolError: called after a failure.
        """
        if self._state is State.FAILED:
            raise LocalProtocolError("handshake already failed")
        try:
            if self._state is State.COMPLETE:
                # Application records that followed the handshake.
                assert self._decoder is not None
                self._decoder.receive_data(data)
                return
            if not data:
                self._fail("connection closed during handshake")
            self._inbox += data
            self._step()
        except TransportError:
            self._state = State.FAILED
            self._outbox.clear()
            raise
        except nacl.exceptions.CryptoError as exc:
            self._state = State.FAILED
            self._outbox.clear()
            raise TransportError("handshake cryptography failed") from exc

    def _step(self) -> None:
        raise NotImplementedError

    def _fail(self, message: str) -> NoReturn:
        raise TransportError(message)

    def _take_hello(self) -> bytes | None:
        """Parse the peer's hello from the inbox; its ephemeral key, or None if short."""
        if len(self._inbox) < HELLO_SIZE:
            if not MAGIC.startswith(bytes(self._inbox[: len(MAGIC)])):
                self._fail("not a p2pmsg-tcp peer")
            return None
        hello = bytes(self._inbox[:HELLO_SIZE])
        del self._inbox[:HELLO_SIZE]
        if hello[: len(MAGIC)] != MAGIC:
            self._fail("not a p2pmsg-tcp peer")
        if hello[len(MAGIC)] != VERSION:
            self._fail("unsupported p2pmsg-tcp version")
        return hello[len(MAGIC) + 1 :]

    def _feed_decoder(self) -> None:
        assert self._decoder is not None
        if self._inbox:
            data = bytes(self._inbox)
            self._inbox.clear()
            self._decoder.receive_data(data)

    def _next_handshake_record(self, size: int) -> bytes | None:
        """The next handshake record's plaintext, which must be exactly ``size`` bytes."""
        assert self._decoder is not None
        record = self._decoder.next_record()
        if record is None:
            return None
        if record.final or len(record.data) != size:
            self._fail("malformed handshake record")
        return record.data


class ClientHandshake(_Handshake):
    """The dialer's side. Refuses any server whose node key is not ``expected_peer``.

    M1 is queued at construction: call :meth:`data_to_send` first.
    ``ephemeral`` (a ``crypto_kx`` keypair) is for test vectors only.
    """

    def __init__(
        self,
        identity: Identity,
        expected_peer: bytes,
        *,
        ephemeral: _Keypair | None = None,
    ) -> None:
        if len(expected_peer) != PUBLIC_KEY_SIZE:
            raise ValueError("expected_peer must be a 32-byte Ed25519 public key")
        super().__init__(identity, ephemeral)
        self._expected = expected_peer
        self._eph_s: bytes | None = None
        self._outbox += _hello(self._eph_pk)

    def _step(self) -> None:
        if self._state is State.WAIT_HELLO:
            if self._eph_s is None:
                eph_s = self._take_hello()
                if eph_s is None:
                    return
                self._eph_s = eph_s
                self._rx, self._tx = sodium.crypto_kx_client_session_keys(
                    self._eph_pk, self._eph_sk, eph_s
                )
            if self._decoder is None:
                if len(self._inbox) < HEADER_BYTES:
                    return
                header = bytes(self._inbox[:HEADER_BYTES])
                del self._inbox[:HEADER_BYTES]
                self._decoder = RecordDecoder(new_pull_state(header, self._rx))
            self._feed_decoder()
            node_s = self._next_handshake_record(PUBLIC_KEY_SIZE)
            if node_s is None:
                return
            if node_s != self._expected:
                # Nothing but our hello has left this machine.
                self._fail("peer key mismatch: not the expected node")
            self._remote_id = node_s
            push_state, header = new_push_state(self._tx)
            self._encoder = RecordEncoder(push_state)
            sig_c = self._identity.sign(Domain.HANDSHAKE, self._th(ROLE_CLIENT))
            self._outbox += header + self._encoder.encode(self._identity.public_key + sig_c)
            self._state = State.WAIT_AUTH
        if self._state is State.WAIT_AUTH:
            self._feed_decoder()
            sig_s = self._next_handshake_record(SIGNATURE_SIZE)
            if sig_s is None:
                return
            assert self._remote_id is not None
            if not verify(self._remote_id, Domain.HANDSHAKE, self._th(ROLE_SERVER), sig_s):
                self._fail("server handshake signature invalid")
            self._state = State.COMPLETE

    def _th(self, role: bytes) -> bytes:
        assert self._eph_s is not None
        return transcript_hash(
            role, self._eph_pk, self._eph_s, self._identity.public_key, self._expected
        )


class ServerHandshake(_Handshake):
    """The listener's side. Learns the client's node key and lets ``allow_peer`` refuse it.

    ``allow_peer`` is called once, with the client's *authenticated* node key,
    before we send our signature; returning False fails the handshake.
    ``ephemeral`` (a ``crypto_kx`` keypair) is for test vectors only.
    """

    def __init__(
        self,
        identity: Identity,
        *,
        allow_peer: Callable[[bytes], bool] | None = None,
        ephemeral: _Keypair | None = None,
    ) -> None:
        super().__init__(identity, ephemeral)
        self._allow_peer = allow_peer
        self._eph_c: bytes | None = None

    def _step(self) -> None:
        if self._state is State.WAIT_HELLO:
            eph_c = self._take_hello()
            if eph_c is None:
                return
            self._eph_c = eph_c
            self._rx, self._tx = sodium.crypto_kx_server_session_keys(
                self._eph_pk, self._eph_sk, eph_c
            )
            push_state, header = new_push_state(self._tx)
            self._encoder = RecordEncoder(push_state)
            self._outbox += (
                _hello(self._eph_pk) + header + self._encoder.encode(self._identity.public_key)
            )
            self._state = State.WAIT_AUTH
        if self._state is State.WAIT_AUTH:
            if self._decoder is None:
                if len(self._inbox) < HEADER_BYTES:
                    return
                header = bytes(self._inbox[:HEADER_BYTES])
                del self._inbox[:HEADER_BYTES]
                self._decoder = RecordDecoder(new_pull_state(header, self._rx))
            self._feed_decoder()
            auth = self._next_handshake_record(PUBLIC_KEY_SIZE + SIGNATURE_SIZE)
            if auth is None:
                return
            node_c, sig_c = auth[:PUBLIC_KEY_SIZE], auth[PUBLIC_KEY_SIZE:]
            if not verify(node_c, Domain.HANDSHAKE, self._th(ROLE_CLIENT, node_c), sig_c):
                self._fail("client handshake signature invalid")
            if self._allow_peer is not None and not self._allow_peer(node_c):
                self._fail("peer refused by policy")
            self._remote_id = node_c
            assert self._encoder is not None
            sig_s = self._identity.sign(Domain.HANDSHAKE, self._th(ROLE_SERVER, node_c))
            self._outbox += self._encoder.encode(sig_s)
            self._state = State.COMPLETE

    def _th(self, role: bytes, node_c: bytes) -> bytes:
        assert self._eph_c is not None
        return transcript_hash(role, self._eph_c, self._eph_pk, node_c, self._identity.public_key)
