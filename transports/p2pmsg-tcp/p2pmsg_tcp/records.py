"""The encrypted record layer: one libsodium secretstream per direction (sans-IO).

Theory of operation
-------------------
After the handshake each direction of the TCP connection carries one
``crypto_secretstream_xchacha20poly1305`` stream, keyed with that direction's
``crypto_kx`` session key. The stream is cut into *records*::

    record = length (uint32, big endian) || ciphertext
    ciphertext = secretstream_push(plaintext, ad=length, tag)

``length`` is the ciphertext length (plaintext + 17 bytes of tag and MAC) and is
the additional data of the record, so it is authenticated too. secretstream keeps
an internal counter, so records cannot be reordered, replayed, dropped or moved to
the other direction without the next ``pull`` failing. The last record of a
direction carries ``TAG_FINAL`` and no plaintext: it is the authenticated
half-close. A TCP EOF that arrives before it is *truncation* and an error, never a
clean end of stream.

No I/O here: :class:`RecordEncoder` turns bytes into wire bytes,
:class:`RecordDecoder` takes wire bytes (``b""`` = TCP EOF) and yields
:class:`Record` s. Bad input raises :class:`~p2pmsg.errors.TransportError` and
nothing else. Buffers are bounded: the decoder decrypts every complete record as
soon as it arrives and keeps at most one incomplete record of ciphertext; the
caller bounds the plaintext it holds by feeding more only when it has consumed
what came out (see :class:`p2pmsg_tcp.stream.TcpPeerStream`).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import NoReturn

import nacl.bindings as sodium
import nacl.exceptions

from p2pmsg.errors import LocalProtocolError, TransportError

__all__ = [
    "ABYTES",
    "HEADER_BYTES",
    "LENGTH_BYTES",
    "MAX_RECORD_SIZE",
    "MAX_WIRE_RECORD",
    "Record",
    "RecordDecoder",
    "RecordEncoder",
    "SecretStreamState",
    "new_pull_state",
    "new_push_state",
]

MAX_RECORD_SIZE = 64 * 1024
"""Largest plaintext in one record (64 KiB). Larger writes are split."""
ABYTES: int = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
"""Per-record overhead of secretstream: 1 tag byte + 16 byte Poly1305 MAC."""
HEADER_BYTES: int = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
"""Size of the secretstream header (its random nonce) sent once per direction."""
LENGTH_BYTES = 4
"""Size of the record length prefix."""
MAX_WIRE_RECORD = LENGTH_BYTES + MAX_RECORD_SIZE + ABYTES
"""Most bytes one record occupies on the wire."""

_TAG_MESSAGE: int = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL: int = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_LENGTH = struct.Struct(">I")
_State = sodium.crypto_secretstream_xchacha20poly1305_state
SecretStreamState = sodium.crypto_secretstream_xchacha20poly1305_state
"""libsodium's opaque secretstream state (one per direction)."""


def new_push_state(key: bytes) -> tuple[SecretStreamState, bytes]:
    """A fresh sending secretstream state for ``key`` and its random 24-byte header."""
    state = _State()
    header: bytes = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    return state, header


def new_pull_state(header: bytes, key: bytes) -> SecretStreamState:
    """The receiving secretstream state for a peer's ``header`` under ``key``.

    Raises:
        TransportError: the header has the wrong size (or libsodium refuses it).
    """
    state = _State()
    try:
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, key)
    except nacl.exceptions.CryptoError as exc:
        raise TransportError("invalid secretstream header") from exc
    return state


@dataclass(frozen=True, slots=True)
class Record:
    """One decrypted record."""

    data: bytes
    """The plaintext (empty for the final record)."""
    final: bool
    """True for the ``TAG_FINAL`` record: the peer will send nothing more."""


class RecordEncoder:
    """Encrypts outgoing bytes into records. Call :meth:`encode`, then :meth:`encode_final`."""

    __slots__ = ("_finished", "_state")

    def __init__(self, push_state: SecretStreamState) -> None:
        self._state = push_state
        self._finished = False

    @property
    def finished(self) -> bool:
        """True once :meth:`encode_final` was called."""
        return self._finished

    def encode(self, data: bytes | bytearray | memoryview) -> bytes:
        """The wire bytes for ``data``, split into records of at most MAX_RECORD_SIZE.

        Empty ``data`` produces no record (an empty record would carry nothing).

        Raises:
            LocalProtocolError: called after :meth:`encode_final`.
        """
        if self._finished:
            raise LocalProtocolError("cannot send after the final record")
        view = memoryview(data)
        parts: list[bytes] = []
        push = sodium.crypto_secretstream_xchacha20poly1305_push
        for start in range(0, len(view), MAX_RECORD_SIZE):
            chunk = bytes(view[start : start + MAX_RECORD_SIZE])
            length = _LENGTH.pack(len(chunk) + ABYTES)
            parts.append(length)
            parts.append(push(self._state, chunk, length, _TAG_MESSAGE))
        return b"".join(parts)

    def encode_final(self) -> bytes:
        """The wire bytes of the empty ``TAG_FINAL`` record (authenticated half-close).

        Raises:
            LocalProtocolError: called twice.
        """
        if self._finished:
            raise LocalProtocolError("the final record was already sent")
        self._finished = True
        length = _LENGTH.pack(ABYTES)
        return length + sodium.crypto_secretstream_xchacha20poly1305_push(
            self._state, b"", length, _TAG_FINAL
        )


class RecordDecoder:
    """Decrypts incoming wire bytes into :class:`Record` s.

    Feed bytes with :meth:`receive_data` (``b""`` for TCP EOF) and drain with
    :meth:`next_record`. Any failure is permanent: the decoder raises
    :class:`~p2pmsg.errors.TransportError` on that call and every later one.
    """

    __slots__ = ("_buffer", "_error", "_final_seen", "_records", "_state")

    def __init__(self, pull_state: SecretStreamState) -> None:
        self._state = pull_state
        self._buffer = bytearray()
        self._records: deque[Record] = deque()
        self._final_seen = False
        self._error: str | None = None

    @property
    def final_seen(self) -> bool:
        """True once the peer's ``TAG_FINAL`` record was decrypted."""
        return self._final_seen

    @property
    def pending(self) -> int:
        """Decrypted records waiting in :meth:`next_record`."""
        return len(self._records)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add wire bytes (``b""`` = the peer closed TCP) and decrypt complete records.

        Raises:
            TransportError: a record is malformed, tampered with, reordered or
                replayed; bytes follow the final record; or EOF came before it
                (truncation).
        """
        if self._error is not None:
            raise TransportError(self._error)
        if not data:
            if not self._final_seen:
                self._fail("connection closed without the final record (truncated)")
            if self._buffer:
                self._fail("incomplete record before end of stream")
            return
        if self._final_seen:
            self._fail("data after the final record")
        if self._buffer:
            self._buffer += data
            source: bytes | bytearray | memoryview = self._buffer
        else:
            source = data  # common case: decode straight from the socket's bytes
        with memoryview(source) as view:
            consumed = self._decode(view)
            self._buffer = bytearray(view[consumed:])  # at most one incomplete record

    def next_record(self) -> Record | None:
        """The next decrypted record, or None if a full one has not arrived yet."""
        if self._records:
            return self._records.popleft()
        return None

    def _fail(self, message: str) -> NoReturn:
        self._error = message
        self._buffer = bytearray()
        self._records.clear()
        raise TransportError(message)

    def _decode(self, buf: memoryview) -> int:
        """Decrypt every complete record in ``buf``; the number of bytes consumed."""
        offset = 0
        end = len(buf)
        pull = sodium.crypto_secretstream_xchacha20poly1305_pull
        while end - offset >= LENGTH_BYTES:
            if self._final_seen:
                self._fail("data after the final record")
            (length,) = _LENGTH.unpack_from(buf, offset)
            if length < ABYTES or length > MAX_RECORD_SIZE + ABYTES:
                self._fail("record length out of range")
            if end - offset - LENGTH_BYTES < length:
                break
            start = offset + LENGTH_BYTES
            try:
                plaintext, tag = pull(
                    self._state, bytes(buf[start : start + length]), bytes(buf[offset:start])
                )
            except nacl.exceptions.CryptoError:
                self._fail("record failed authentication (tampered, reordered or replayed)")
            offset = start + length
            if tag == _TAG_FINAL:
                if plaintext:
                    self._fail("final record carries data")
                self._final_seen = True
                self._records.append(Record(b"", final=True))
            elif tag == _TAG_MESSAGE:
                if not plaintext:
                    self._fail("empty data record")
                self._records.append(Record(plaintext, final=False))
            else:
                self._fail("unexpected secretstream tag")
        if self._final_seen and offset != end:
            self._fail("data after the final record")
        return offset
