"""Framing of the sync stream: 4-byte big-endian length, then one CBOR message.

Theory of operation
-------------------
The transport gives us an ordered, reliable byte stream (a QUIC stream or TCP). The
sync protocol cuts it into *frames*::

    frame = length (4 bytes, big-endian, unsigned) || body (``length`` bytes)
    body  = canonical CBOR array [type, field...]        (see messages.py)

:class:`FrameDecoder` reads the length first and refuses an oversize frame (or a
zero-length one) **before** buffering its body, so a peer cannot make us hold more
than :data:`MAX_FRAME_SIZE` + 4 bytes of an incomplete frame. Feed it bytes with
:meth:`FrameDecoder.feed`, then take complete bodies with :meth:`FrameDecoder.next_frame`.
"""

from __future__ import annotations

from collections import deque

from ..entry import MAX_ENTRY_SIZE, MAX_PAYLOAD_SIZE
from ..errors import RemoteProtocolError

__all__ = [
    "FRAME_HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "FrameDecoder",
    "canonical_bstr_head",
    "canonical_bstr_tail",
    "encode_frame",
]

FRAME_HEADER_SIZE = 4
"""Bytes of the big-endian length prefix."""

MAX_FRAME_SIZE = MAX_PAYLOAD_SIZE + 64 * 1024
"""Largest frame body accepted or sent (1 MiB + 64 KiB = 1,114,112 bytes).

Sized so that one run frame holding a maximal entry (``MAX_ENTRY_SIZE`` = 1,088 B)
with a maximal payload (1 MiB) plus CBOR and field overhead (< 100 B) fits, with room
to spare. Larger content (attachments) is chunked above the log layer.
"""

assert MAX_FRAME_SIZE > MAX_PAYLOAD_SIZE + MAX_ENTRY_SIZE + 1024


def encode_frame(body: bytes) -> bytes:
    """Prefix ``body`` with its length. Raises ValueError if it is too large to send."""
    if not 0 < len(body) <= MAX_FRAME_SIZE:
        raise ValueError(f"frame body of {len(body)} bytes is outside 1..{MAX_FRAME_SIZE}")
    return len(body).to_bytes(FRAME_HEADER_SIZE, "big") + body


_BSTR_HEADS = ((1, 0x40, 0, 24), (2, 0x58, 24, 1 << 8), (3, 0x59, 1 << 8, 1 << 16),
               (5, 0x5A, 1 << 16, 1 << 32))
"""Canonical CBOR byte-string heads: (head size, first byte, min length, max + 1)."""


def canonical_bstr_head(n: int) -> bytes:
    """The canonical CBOR head of a byte string of ``n`` bytes (0 <= n < 2**32)."""
    for size, first, low, high in _BSTR_HEADS:
        if low <= n < high:
            return bytes([first | n]) if size == 1 else bytes([first]) + n.to_bytes(
                size - 1, "big")
    raise ValueError("byte string too long")


def canonical_bstr_tail(body: bytes, at: int) -> bytes | None:
    """If ``body[at:]`` is exactly one canonical CBOR byte string (shortest head),
    its content; otherwise None.

    The fast path for frames that end in one large byte string (BLOB pieces, blob
    DATA): the general decoder decodes and then re-encodes the whole frame to prove
    it canonical, which for these frames costs more than all the rest per byte.
    None means "not this shape": decode the general way (which then accepts or
    raises exactly as before)."""
    rest = len(body) - at
    for size, first, low, high in _BSTR_HEADS:
        n = rest - size
        if not low <= n < high:
            continue
        if size == 1:
            if body[at] == first | n:
                return body[at + 1:]
        elif body[at] == first and int.from_bytes(body[at + 1:at + size], "big") == n:
            return body[at + size:]
    return None


class FrameDecoder:
    """Incremental frame parser with a hard bound on buffered bytes.

    Raises :class:`RemoteProtocolError` (``frame_too_large``, ``empty_frame``) as soon
    as a length prefix is read that is out of bounds; call :meth:`eof` when the
    stream ends to detect a truncated frame (``truncated_frame``).

    Received pieces are kept as they came (a deque of bytes and an offset into the
    first), and each body is cut out with one copy: a growing ``bytearray`` costs
    an allocator round trip per resize, which measured ~2.5 ms per MB on the
    development VM — more than the rest of the framing.
    """

    __slots__ = ("_max", "_offset", "_parts", "_size")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._parts: deque[bytes] = deque()
        self._offset = 0
        """Bytes of ``_parts[0]`` already consumed."""
        self._size = 0
        """Unconsumed bytes in ``_parts``."""
        self._max = max_frame_size

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes; complete frames are taken with :meth:`next_frame`."""
        if data:
            self._parts.append(bytes(data))
            self._size += len(data)
            self._check_length()

    def _length(self) -> int | None:
        """The length prefix at the front, checked; None if fewer than 4 bytes."""
        if self._size < FRAME_HEADER_SIZE:
            return None
        first, off = self._parts[0], self._offset
        if len(first) - off >= FRAME_HEADER_SIZE:
            length = int.from_bytes(first[off:off + FRAME_HEADER_SIZE], "big")
        else:
            length = int.from_bytes(self._peek(FRAME_HEADER_SIZE), "big")
        if length > self._max:
            raise RemoteProtocolError(
                "frame_too_large", f"frame of {length} bytes > limit {self._max}"
            )
        if length == 0:
            raise RemoteProtocolError("empty_frame", "zero-length frame")
        return length

    def _check_length(self) -> None:
        self._length()

    def _peek(self, n: int) -> bytes:
        out = bytearray()
        off = self._offset
        for part in self._parts:
            out += part[off:off + n - len(out)]
            off = 0
            if len(out) >= n:
                break
        return bytes(out)

    def _take(self, n: int) -> bytes:
        """Remove and return the first ``n`` buffered bytes (``n <= _size``)."""
        parts, off = self._parts, self._offset
        first = parts[0]
        self._size -= n
        if len(first) - off >= n:  # the common case: inside one received piece
            end = off + n
            piece = first if off == 0 and end == len(first) else first[off:end]
            if end == len(first):
                parts.popleft()
                self._offset = 0
            else:
                self._offset = end
            return piece
        pieces: list[bytes] = []
        need = n
        while need:
            part = parts[0]
            avail = len(part) - off
            if avail <= need:
                pieces.append(part[off:] if off else part)
                parts.popleft()
                need -= avail
                off = 0
            else:
                pieces.append(part[off:off + need])
                off += need
                need = 0
        self._offset = off
        return b"".join(pieces)

    def next_frame(self) -> bytes | None:
        """The next complete frame body, or None if more bytes are needed."""
        length = self._length()
        if length is None or self._size < FRAME_HEADER_SIZE + length:
            return None
        self._take(FRAME_HEADER_SIZE)
        body = self._take(length)
        self._check_length()
        return body

    @property
    def buffered(self) -> int:
        """Bytes held that are not yet a complete frame (bounded by the max frame)."""
        return self._size

    def eof(self) -> None:
        """The stream ended: raise ``truncated_frame`` if a partial frame is buffered."""
        if self._size:
            raise RemoteProtocolError(
                "truncated_frame", f"stream ended inside a frame ({self._size} bytes)"
            )
