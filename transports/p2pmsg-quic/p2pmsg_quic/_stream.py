"""The :class:`~p2pmsg.net.base.PeerStream` of a QUIC connection (its stream 0).

Backpressure: aioquic buffers whatever it is given, without limit. ``send_all``
therefore hands data over only while the stream holds fewer than
``settings.send_buffer`` bytes the peer has not acknowledged, and otherwise waits
for ACKs. That bound covers both the congestion window (unsent bytes stay
unacknowledged) and the peer's flow-control window.

Read side: at most ``settings.flow_control_window`` received bytes wait here for
the application; the peer's window is reopened only as ``receive_some`` consumes
(``ConnectionDriver.consumed``), so a slow reader slows the sender down.

Half-close is the QUIC FIN (``send_eof``). ``aclose`` is graceful for what was
already sent: it sends FIN, waits up to ``settings.close_timeout`` for everything
to be acknowledged, then closes the whole connection (CONNECTION_CLOSE).
"""

from __future__ import annotations

import operator
from collections import deque
from typing import TYPE_CHECKING

import trio

from p2pmsg.net.base import PeerStream

if TYPE_CHECKING:
    from ._connection import ConnectionDriver

__all__ = ["QuicPeerStream"]

_DEFAULT_RECEIVE = 64 * 1024


class QuicPeerStream(PeerStream):
    """One authenticated, bidirectional byte stream; ``remote_id`` is the pinned key.

    Made by the transport (``dial`` / ``serve``); never build one yourself.
    A lost connection raises :class:`trio.BrokenResourceError`.
    """

    def __init__(self, driver: ConnectionDriver, remote_id: bytes) -> None:
        self.remote_id = remote_id
        self._driver = driver
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof_received = False
        self._reset_received = False
        self._send_broken = False
        self._eof_sent = False
        self._closed = False
        self._sending = False
        self._receiving = False

    def __repr__(self) -> str:
        from p2pmsg.identity import short_id

        return f"QuicPeerStream({short_id(self.remote_id)})"

    @property
    def receive_buffered(self) -> int:
        """Bytes received from the peer that the application has not read yet."""
        return self._buffered

    # -- called by the driver -------------------------------------------------------

    def _feed(self, data: bytes, end_stream: bool) -> None:
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
        if end_stream:
            self._eof_received = True

    def _peer_reset(self, receive_side: bool) -> None:
        if receive_side:
            self._reset_received = True
        else:
            self._send_broken = True

    def _broken(self) -> trio.BrokenResourceError:
        reason = self._driver.closing_reason or "stream reset by peer"
        return trio.BrokenResourceError(f"QUIC connection lost: {reason}")

    # -- receiving ------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)  # TypeError for floats, like trio's
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint()
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("stream was closed")
                if self._chunks:
                    return self._take(max_bytes or _DEFAULT_RECEIVE)
                if self._eof_received:
                    return b""
                if self._reset_received or self._driver.closing_reason is not None:
                    raise self._broken()
                await self._driver.wait_progress()
        finally:
            self._receiving = False

    def _take(self, max_bytes: int) -> bytes:
        chunks = self._chunks
        chunk = chunks[0]
        if len(chunk) > max_bytes:
            chunks[0] = chunk[max_bytes:]
            taken = chunk[:max_bytes]
        elif len(chunks) == 1 or len(chunk) + len(chunks[1]) > max_bytes:
            taken = chunks.popleft()
        else:
            # Several packets' worth fit: hand them over in one call.
            parts = [chunks.popleft()]
            size = len(parts[0])
            while chunks and size + len(chunks[0]) <= max_bytes:
                size += len(chunks[0])
                parts.append(chunks.popleft())
            taken = b"".join(parts)
        self._buffered -= len(taken)
        self._driver.consumed()
        return taken

    # -- sending --------------------------------------------------------------------

    def _check_can_send(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream was closed")
        if self._eof_sent:
            raise trio.ClosedResourceError("send_eof() was already called")
        if self._send_broken or self._driver.closing_reason is not None:
            raise self._broken()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            driver = self._driver
            limit = driver.settings.send_buffer
            view = memoryview(data)
            while view:
                self._check_can_send()
                room = limit - driver.unacked()
                if room < max(1, min(len(view), limit // 4)):
                    # Top up in large pieces: each hand-over costs a transmit pass.
                    await driver.wait_progress()
                    continue
                n = min(room, len(view))
                driver.send(bytes(view[:n]))
                view = view[n:]
            self._check_can_send()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending")
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("stream was closed")
        driver = self._driver
        while (
            driver.unacked() >= driver.settings.send_buffer
            and driver.closing_reason is None
            and not self._closed
        ):
            await driver.wait_progress()

    async def send_eof(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending")
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("stream was closed")
        if self._eof_sent:
            return
        if self._send_broken or self._driver.closing_reason is not None:
            raise self._broken()
        self._eof_sent = True
        self._driver.send(b"", end_stream=True)

    # -- closing --------------------------------------------------------------------

    async def aclose(self) -> None:
        """Send FIN, wait (bounded) for it to be acknowledged, close the connection.

        Called while cancelled, it aborts instead: CONNECTION_CLOSE without FIN, so
        the peer sees a broken stream rather than a clean EOF."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        driver = self._driver
        driver.wake_waiters()  # tasks blocked in receive_some/send_all see the close
        try:
            # A cancelled close is an abort: no FIN, so the peer cannot mistake it
            # for a clean end of the stream (the finally sends CONNECTION_CLOSE).
            await trio.lowlevel.checkpoint_if_cancelled()
            with trio.move_on_after(driver.settings.close_timeout):
                if driver.closing_reason is None and not self._eof_sent and not self._send_broken:
                    self._eof_sent = True
                    driver.send(b"", end_stream=True)
                while driver.closing_reason is None and not driver.send_finished():
                    await driver.wait_progress()
            await trio.lowlevel.checkpoint()
        finally:
            if driver.closing_reason is None:
                driver.close()
