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

from ..entry import MAX_ENTRY_SIZE, MAX_PAYLOAD_SIZE
from ..errors import RemoteProtocolError

__all__ = [
    "FRAME_HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "FrameDecoder",
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


class FrameDecoder:
    """Incremental frame parser with a hard bound on buffered bytes.

    Raises :class:`RemoteProtocolError` (``frame_too_large``, ``empty_frame``) as soon
    as a length prefix is read that is out of bounds; call :meth:`eof` when the
    stream ends to detect a truncated frame (``truncated_frame``).
    """

    __slots__ = ("_buf", "_max")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_frame_size

    def feed(self, data: bytes) -> None:
        """Append received bytes; complete frames are taken with :meth:`next_frame`."""
        self._buf += data
        self._check_length()

    def _check_length(self) -> None:
        if len(self._buf) < FRAME_HEADER_SIZE:
            return
        length = int.from_bytes(self._buf[:FRAME_HEADER_SIZE], "big")
        if length > self._max:
            raise RemoteProtocolError(
                "frame_too_large", f"frame of {length} bytes > limit {self._max}"
            )
        if length == 0:
            raise RemoteProtocolError("empty_frame", "zero-length frame")

    def next_frame(self) -> bytes | None:
        """The next complete frame body, or None if more bytes are needed."""
        if len(self._buf) < FRAME_HEADER_SIZE:
            return None
        self._check_length()
        length = int.from_bytes(self._buf[:FRAME_HEADER_SIZE], "big")
        end = FRAME_HEADER_SIZE + length
        if len(self._buf) < end:
            return None
        body = bytes(self._buf[FRAME_HEADER_SIZE:end])
        del self._buf[:end]
        self._check_length()
        return body

    @property
    def buffered(self) -> int:
        """Bytes held that are not yet a complete frame (bounded by the max frame)."""
        return len(self._buf)

    def eof(self) -> None:
        """The stream ended: raise ``truncated_frame`` if a partial frame is buffered."""
        if self._buf:
            raise RemoteProtocolError(
                "truncated_frame", f"stream ended inside a frame ({len(self._buf)} bytes)"
            )
