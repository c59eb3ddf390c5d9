"""The trio stream that carries application bytes over an authenticated TCP connection.

:class:`TcpPeerStream` is what :meth:`TcpTransport.dial` returns and what
:meth:`TcpTransport.serve` hands to its handler. It wraps a connected
:class:`trio.SocketStream` plus the record encoder/decoder a finished handshake
produced, and behaves like any :class:`trio.abc.HalfCloseableStream`:

* ``send_all`` encrypts into records of at most 64 KiB;
* ``send_eof`` sends the authenticated ``TAG_FINAL`` record, then shuts TCP's
  write side;
* ``receive_some`` returns ``b""`` only after the peer's ``TAG_FINAL``. A TCP EOF
  before it (truncation) or a record that fails authentication raises
  :class:`StreamIntegrityError`, which is both a
  :class:`~p2pmsg.errors.TransportError` and a :class:`trio.BrokenResourceError`
  (the base contract's "connection lost" error).

Memory per stream is bounded: it reads at most ``READ_SIZE`` bytes from the socket
at a time and only when everything decrypted so far has been handed out.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator

import trio

from p2pmsg.errors import TransportError
from p2pmsg.net.base import PeerStream, StreamIntegrityError  # shared by all transports

from .records import MAX_RECORD_SIZE, MAX_WIRE_RECORD, RecordDecoder, RecordEncoder

__all__ = ["CLOSE_TIMEOUT", "READ_SIZE", "SEND_BATCH", "StreamIntegrityError", "TcpPeerStream"]

READ_SIZE = 4 * MAX_WIRE_RECORD
"""Most bytes read from the socket per ``receive_some`` call (~256 KiB)."""
CLOSE_TIMEOUT = 5.0
"""Seconds ``aclose`` waits to deliver the final record before closing anyway."""
SEND_BATCH = 4 * MAX_RECORD_SIZE
"""Plaintext encrypted per socket write in ``send_all`` (256 KiB)."""


class TcpPeerStream(PeerStream):
    """An authenticated, encrypted byte stream to ``remote_id`` over TCP.

    Built by :class:`p2pmsg_tcp.transport.TcpTransport`; not meant to be made by hand.
    """

    def __init__(
        self,
        socket_stream: trio.SocketStream,
        remote_id: bytes,
        encoder: RecordEncoder,
        decoder: RecordDecoder,
    ) -> None:
        self.remote_id = remote_id
        self.socket_stream = socket_stream
        self._encoder = encoder
        self._decoder = decoder
        self._pending = b""
        self._pending_offset = 0
        self._eof_received = False
        self._closed = False
        self._sending = False
        self._receiving = False

    def __repr__(self) -> str:
        from p2pmsg.identity import short_id

        return f"TcpPeerStream({short_id(self.remote_id)})"

    # --- sending -----------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send ``data``.

        Raises:
            trio.BusyResourceError: another task is sending on this stream.
            trio.ClosedResourceError: the stream was closed or ``send_eof`` was called.
            trio.BrokenResourceError: the connection was lost.
        """
        with self._sender():
            if self._encoder.finished:
                raise trio.ClosedResourceError("stream closed for sending")
            view = memoryview(data)
            if not view:
                await trio.lowlevel.checkpoint()
                return
            for start in range(0, len(view), SEND_BATCH):
                await self.socket_stream.send_all(
                    self._encoder.encode(view[start : start + SEND_BATCH])
                )

    async def wait_send_all_might_not_block(self) -> None:
        with self._sender():
            await self.socket_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Send the authenticated end-of-stream record and half-close TCP. Idempotent."""
        with self._sender():
            if self._encoder.finished:
                await trio.lowlevel.checkpoint()
                return
            await self.socket_stream.send_all(self._encoder.encode_final())
            await self.socket_stream.send_eof()

    @contextlib.contextmanager
    def _sender(self) -> Iterator[None]:
        """Hold the send side: one sending task at a time, never after close."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            if self._closed:
                raise trio.ClosedResourceError("stream closed")
            yield
        finally:
            self._sending = False

    # --- receiving ---------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` decrypted bytes; ``b""`` once the peer sent its final record.

        Raises:
            StreamIntegrityError: truncation (TCP EOF without the final record) or
                a record that fails authentication.
            trio.BusyResourceError: another task is receiving on this stream.
            trio.ClosedResourceError: the stream was closed.
            trio.BrokenResourceError: the connection was lost.
        """
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            if self._closed:
                raise trio.ClosedResourceError("stream closed")
            checkpointed = False
            while self._pending_offset >= len(self._pending):
                if self._eof_received:
                    break
                record = self._decoder.next_record()
                if record is not None:
                    if record.final:
                        self._eof_received = True
                    else:
                        self._pending = record.data
                        self._pending_offset = 0
                    continue
                wire = await self.socket_stream.receive_some(READ_SIZE)
                checkpointed = True
                try:
                    self._decoder.receive_data(wire)
                except TransportError as exc:
                    raise StreamIntegrityError(str(exc)) from exc
            if not checkpointed:
                # Served from the buffer: still a checkpoint, as trio expects.
                await trio.lowlevel.checkpoint()
            start = self._pending_offset
            end = len(self._pending) if max_bytes is None else start + max_bytes
            chunk = self._pending[start:end]
            self._pending_offset = start + len(chunk)
            return chunk
        finally:
            self._receiving = False

    # --- closing -----------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection, ending our direction cleanly if we can.

        If no other task is mid-``send_all``, the final record is sent first (for
        at most ``CLOSE_TIMEOUT`` seconds) so the peer reads a clean ``b""``;
        otherwise, or if cancelled (``trio.aclose_forcefully``), the socket is
        closed at once and the peer sees truncation. Idempotent.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        self._pending = b""
        self._pending_offset = 0
        try:
            if not self._sending and not self._encoder.finished:
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await self.socket_stream.send_all(self._encoder.encode_final())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await self.socket_stream.aclose()
