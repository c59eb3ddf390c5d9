"""Messages of the blob transfer protocol: encoding and strict decoding (pure).

Each message is one frame of p2pmsg.sync.frames (4-byte big-endian length, then a
canonical CBOR array whose first element is the type code)::

    HELLO    [0, version]                 first frame of each side
    REQUEST  [1, [hash, ...]]             ask for 1..MAX_REQUEST_HASHES objects
    DATA     [2, hash, bytes]             one requested object
    MISSING  [3, [hash, ...]]             requested objects this side does not have
    CLOSE    [4, reason]                  error or end of session (text <= 200)

:func:`decode_message` raises only :class:`~p2pmsg.errors.RemoteProtocolError`
(reason ``malformed_frame``, ``non_canonical`` or ``unknown_message``).
Session rules (was it requested? does it hash right?) live in transfer.py.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from typing import Any, TypeAlias

from .. import _cbor
from ..errors import DecodeError, Reason, RemoteProtocolError
from ..sync.frames import (
    FRAME_HEADER_SIZE,
    MAX_FRAME_SIZE,
    canonical_bstr_head,
    canonical_bstr_tail,
    encode_frame,
)
from .format import HASH_SIZE, MAX_OBJECT_SIZE

__all__ = [
    "MAX_CLOSE_TEXT",
    "MAX_REQUEST_HASHES",
    "TRANSFER_VERSION",
    "Close",
    "Data",
    "Hello",
    "Message",
    "Missing",
    "MsgType",
    "Request",
    "decode_message",
]

TRANSFER_VERSION = 1
MAX_REQUEST_HASHES = 256
"""Hashes in one REQUEST or MISSING frame; also the most objects a requester may have
outstanding (requested, not yet answered) at once — the server's memory bound."""
MAX_CLOSE_TEXT = 200

assert MAX_OBJECT_SIZE + HASH_SIZE + 64 < MAX_FRAME_SIZE


class MsgType(enum.IntEnum):
    """Type codes (first element of every frame body). Never reused."""

    HELLO = 0
    REQUEST = 1
    DATA = 2
    MISSING = 3
    CLOSE = 4


_DATA_PREFIX = bytes([0x83, MsgType.DATA.value, 0x58, HASH_SIZE])
"""Canonical CBOR of a DATA frame up to the hash bytes: array(3), 2, bstr(32)."""
_DATA_AT = len(_DATA_PREFIX) + HASH_SIZE


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame of each side: the protocol version it speaks."""

    version: int

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.HELLO.value, self.version])


@dataclass(frozen=True, slots=True)
class Request:
    """Ask for objects by hash (sorted, unique). Asking grants the byte credit."""

    hashes: tuple[bytes, ...]

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.REQUEST.value, list(self.hashes)])


@dataclass(frozen=True, slots=True)
class Data:
    """One object: its claimed hash and its bytes."""

    hash: bytes
    data: bytes

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.DATA.value, self.hash, self.data])

    def encode_frame(self) -> bytes:
        """``encode_frame(self.encode())`` built with one copy of the data (bulk path;
        the same bytes, tested)."""
        return b"".join(self.frame_parts())

    def frame_parts(self) -> tuple[bytes, bytes]:
        """:meth:`encode_frame` as (everything before the data, the data itself):
        no copy of the data at all, for a writer that takes several buffers."""
        if len(self.hash) != HASH_SIZE:
            return encode_frame(self.encode()), b""
        head = canonical_bstr_head(len(self.data))
        size = len(_DATA_PREFIX) + HASH_SIZE + len(head) + len(self.data)
        if size > MAX_FRAME_SIZE:
            raise ValueError(f"frame body of {size} bytes is outside 1..{MAX_FRAME_SIZE}")
        return (b"".join((size.to_bytes(FRAME_HEADER_SIZE, "big"), _DATA_PREFIX, self.hash,
                          head)), self.data)


@dataclass(frozen=True, slots=True)
class Missing:
    """Requested objects the sender does not hold (sorted, unique)."""

    hashes: tuple[bytes, ...]

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.MISSING.value, list(self.hashes)])


@dataclass(frozen=True, slots=True)
class Close:
    """The sender ends the session; ``reason`` is a stable code ("" = normal end)."""

    reason: str

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.CLOSE.value, self.reason])


Message: TypeAlias = Hello | Request | Data | Missing | Close


def _fail(message: str) -> RemoteProtocolError:
    return RemoteProtocolError("malformed_frame", message)


def _hash_list(v: Any, what: str) -> tuple[bytes, ...]:
    if type(v) is not list or not 1 <= len(v) <= MAX_REQUEST_HASHES:
        raise _fail(f"{what}: 1..{MAX_REQUEST_HASHES} hashes")
    if not all(type(h) is bytes and len(h) == HASH_SIZE for h in v):
        raise _fail(f"{what}: hashes are {HASH_SIZE} bytes")
    if any(a >= b for a, b in itertools.pairwise(v)):
        raise _fail(f"{what}: hashes must be sorted and unique")
    return tuple(v)




def decode_message(body: bytes) -> Message:
    """Parse one frame body. Raises only RemoteProtocolError."""
    if body[:len(_DATA_PREFIX)] == _DATA_PREFIX:  # bulk chunk bytes: no re-encode
        data = canonical_bstr_tail(body, _DATA_AT)
        if data is not None and len(body) >= _DATA_AT and len(data) <= MAX_OBJECT_SIZE:
            return Data(body[len(_DATA_PREFIX):_DATA_AT], data)
    try:
        value = _cbor.loads_canonical(body, "blob frame", MAX_FRAME_SIZE)
    except DecodeError as exc:
        code = "non_canonical" if exc.reason == Reason.NON_CANONICAL else "malformed_frame"
        raise RemoteProtocolError(code, exc.detail) from exc
    if type(value) is not list or not value or type(value[0]) is not int:
        raise _fail("a frame is an array starting with a type code")
    try:
        kind = MsgType(value[0])
    except ValueError:
        raise RemoteProtocolError("unknown_message", f"message type {value[0]}") from None
    f = value[1:]
    if kind is MsgType.HELLO:
        if len(f) != 1 or type(f[0]) is not int or not 0 <= f[0] < (1 << 32):
            raise _fail("HELLO: [0, version]")
        return Hello(f[0])
    if kind is MsgType.REQUEST:
        if len(f) != 1:
            raise _fail("REQUEST: [1, hashes]")
        return Request(_hash_list(f[0], "REQUEST"))
    if kind is MsgType.DATA:
        if (len(f) != 2 or type(f[0]) is not bytes or len(f[0]) != HASH_SIZE
                or type(f[1]) is not bytes or len(f[1]) > MAX_OBJECT_SIZE):
            raise _fail("DATA: [2, hash, bytes <= MAX_OBJECT_SIZE]")
        return Data(f[0], f[1])
    if kind is MsgType.MISSING:
        if len(f) != 1:
            raise _fail("MISSING: [3, hashes]")
        return Missing(_hash_list(f[0], "MISSING"))
    if len(f) != 1 or type(f[0]) is not str or len(f[0]) > MAX_CLOSE_TEXT:
        raise _fail("CLOSE: [4, reason]")
    return Close(f[0])
