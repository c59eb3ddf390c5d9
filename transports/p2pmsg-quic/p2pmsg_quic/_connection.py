"""One QUIC connection driven from trio: the glue between aioquic and a socket.

Theory of operation
-------------------
aioquic's :class:`~aioquic.quic.connection.QuicConnection` is sans-IO: it takes
datagrams, API calls and timer ticks, and hands back datagrams and events. A
:class:`ConnectionDriver` owns one and feeds it:

* **Inbound**: the endpoint's receive loop calls :meth:`datagram_received`
  (synchronously) for every datagram routed here by connection id, and
  :meth:`transmit` once per batch of datagrams. :meth:`transmit` handles events
  first, so the peer-key check on ``HandshakeCompleted`` runs before any
  ``StreamDataReceived`` of the same batch is looked at.
* **Outbound**: :meth:`transmit` is synchronous: it sends whatever
  ``datagrams_to_send`` returns straight into the (non-blocking) socket. It runs
  after each inbound batch, after the application wrote (``send``), and from the
  timer task. If the kernel buffer is full the rest waits in an outbox (sent
  first next time, so a connection's datagrams leave in order) and the endpoint
  retries when the socket is writable.
* **Timers**: one task per connection (:meth:`run`) sleeps until aioquic's timer,
  the keepalive or the server's handshake deadline; every :meth:`transmit` moves
  its deadline (a cancel-scope deadline change, not a task wake-up).
* ``now`` is always :func:`trio.current_time`, so a ``MockClock`` drives timers.

Receive flow control: the connection is a :class:`MutualQuicConnection` whose
stream window only grows as the application consumes (see ``_aioquic.py``);
:meth:`consumed` asks for a MAX_STREAM_DATA frame when one is due.

Stream opening
--------------
Each connection carries exactly one bidirectional stream (id 0), the
:class:`~p2pmsg_quic._stream.QuicPeerStream`. QUIC opens streams implicitly with
their first byte, and aioquic does not let a server write to a stream the client
has not opened, so the opening is explicit: after the client pinned the server's
key it writes ``OPEN`` (one byte, 0x01); the server, having pinned the client's
key, answers ``ACCEPT`` (0x01) and only then hands the stream to its handler.
``dial`` returns when ``ACCEPT`` arrived, so a dial to a server that rejects us
fails in ``dial`` — no application byte is ever sent to or accepted from a peer
whose key was not accepted. Both bytes are stripped; the application sees only
its own data.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import trio
from aioquic.quic import events
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicErrorCode

from p2pmsg.errors import TransportError
from p2pmsg.identity import short_id

from ._aioquic import (
    MutualQuicConnection,
    accepted_any_packet,
    close_event,
    peer_certificate,
    send_finished,
    unacked_send_bytes,
    window_update_due,
)
from ._cert import peer_key_from_certificate

if TYPE_CHECKING:
    from ._stream import QuicPeerStream

__all__ = ["ALPN", "STREAM_ID", "ConnectionDriver", "DriverSettings"]

ALPN = "p2pmsg/1"
"""The ALPN protocol id: names the p2pmsg-over-QUIC protocol and its version."""

STREAM_ID = 0
"""The one bidirectional stream of a connection (the client's first)."""

_OPEN = b"\x01"
_ACCEPT = b"\x01"
_GOODBYE_TIMEOUT = 0.5

Address = tuple[str, int]


class _Endpoint(Protocol):
    """What a driver needs from the socket owner (see :mod:`p2pmsg_quic._endpoint`)."""

    def transmit(self, data: bytes, addr: Address) -> bool: ...
    def wait_writable(self, driver: ConnectionDriver) -> None: ...
    def add_route(self, cid: bytes, driver: ConnectionDriver) -> None: ...
    def remove_route(self, cid: bytes) -> None: ...
    def forget(self, driver: ConnectionDriver) -> None: ...


class DriverSettings(Protocol):
    """The knobs a driver reads (a :class:`p2pmsg_quic.QuicSettings` satisfies it)."""

    @property
    def keepalive_interval(self) -> float | None: ...
    @property
    def send_buffer(self) -> int: ...
    @property
    def close_timeout(self) -> float: ...
    @property
    def handshake_timeout(self) -> float: ...
    @property
    def flow_control_window(self) -> int: ...


class ConnectionDriver:
    """Feeds one :class:`QuicConnection` from the network, timers and its stream.

    Build one per connection, register its host connection id with the endpoint,
    and run :meth:`run` in a nursery. ``expected_peer`` (client) or ``allow_peer``
    (server) decides whether the key pinned from the peer's certificate is accepted;
    ``on_accept`` (server) receives the stream once the client opened it.
    """

    def __init__(
        self,
        endpoint: _Endpoint,
        quic: QuicConnection,
        settings: DriverSettings,
        *,
        expected_peer: bytes | None = None,
        allow_peer: Callable[[bytes], bool] | None = None,
        on_accept: Callable[[QuicPeerStream], None] | None = None,
    ) -> None:
        self.quic = quic
        self.settings = settings
        self.remote_id: bytes | None = None
        self.stream: QuicPeerStream | None = None
        self.established = False
        """Client: ACCEPT received; server: OPEN received. Data may flow."""
        self.closing_reason: str | None = None
        """Set once either side started closing (or we rejected the peer)."""
        self.terminated = False
        self._endpoint = endpoint
        self._expected_peer = expected_peer
        self._allow_peer = allow_peer
        self._on_accept = on_accept
        self._rejected = False
        self._wakeup = trio.Event()
        self._progress = trio.Event()
        now = trio.current_time()
        self._last_rx = now
        self._last_ping = now
        self._ping_uid = 0
        self._outbox: deque[tuple[bytes, Address]] = deque()
        self._in_transmit = False
        self._sleep_scope: trio.CancelScope | None = None
        self._handshake_deadline = (
            None if quic.configuration.is_client else now + settings.handshake_timeout
        )
        """Server side: drop a connection that has not opened its stream by then."""
        self._received = 0
        """Bytes of stream 0 aioquic delivered (with the opening byte)."""
        if isinstance(quic, MutualQuicConnection):
            quic.receive_window = settings.flow_control_window
            quic.read_offset = self._read_offset

    # -- signalling ---------------------------------------------------------------

    def poke(self) -> None:
        """Wake the timer task (it re-checks timers, then transmits)."""
        self._wakeup.set()

    async def wait_progress(self) -> None:
        """Sleep until the next batch of events (data, ACKs, close) was handled."""
        await self._progress.wait()

    def wake_waiters(self) -> None:
        """Wake every task in :meth:`wait_progress` (e.g. the stream was closed)."""
        self._notify_progress()

    def _notify_progress(self) -> None:
        event, self._progress = self._progress, trio.Event()
        event.set()

    # -- state for the stream -------------------------------------------------------

    def unacked(self) -> int:
        return unacked_send_bytes(self.quic, STREAM_ID)

    def send_finished(self) -> bool:
        return send_finished(self.quic, STREAM_ID)

    def send(self, data: bytes, end_stream: bool = False) -> None:
        self.quic.send_stream_data(STREAM_ID, data, end_stream=end_stream)
        self.transmit()

    def close(self, error_code: int = QuicErrorCode.NO_ERROR, reason: str = "closed") -> None:
        """Start closing the connection (CONNECTION_CLOSE is sent at once)."""
        if self.closing_reason is None:
            self.closing_reason = reason
        self.quic.close(error_code=error_code, reason_phrase=reason)
        self.transmit()
        self._notify_progress()

    def _read_offset(self, stream_id: int) -> int:
        stream = self.stream
        if stream_id != STREAM_ID or stream is None:
            return 0  # other streams are refused; never grant them more
        return self._received - stream.receive_buffered

    def consumed(self) -> None:
        """The application took bytes from the stream: reopen the peer's window."""
        window = self.settings.flow_control_window
        if window_update_due(self.quic, STREAM_ID, self._read_offset(STREAM_ID), window):
            self.transmit()

    # -- inbound --------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address, now: float) -> None:
        """Feed one datagram; the caller calls :meth:`transmit` after its batch."""
        self.quic.receive_datagram(data, addr, now)
        self._last_rx = now

    def accepted_any_packet(self) -> bool:
        return accepted_any_packet(self.quic)

    def _reject(self, reason: str, error_code: int = QuicErrorCode.CONNECTION_REFUSED) -> None:
        # Everything the peer sent after this point is dropped unread.
        self._rejected = True
        self.close(error_code=error_code, reason=reason)

    def _process_events(self, notify: bool = True) -> None:
        quic = self.quic
        while (event := quic.next_event()) is not None:
            if isinstance(event, events.ConnectionIdIssued):
                self._endpoint.add_route(event.connection_id, self)
            elif isinstance(event, events.ConnectionIdRetired):
                self._endpoint.remove_route(event.connection_id)
            elif isinstance(event, events.ConnectionTerminated):
                self._terminate(event.reason_phrase or f"error 0x{event.error_code:x}")
            elif self._rejected:
                continue
            elif isinstance(event, events.HandshakeCompleted):
                self._handshake_completed(event)
            elif isinstance(event, events.StreamDataReceived):
                self._stream_data(event)
            elif (
                isinstance(event, events.StreamReset | events.StopSendingReceived)
                and self.stream is not None
                and event.stream_id == STREAM_ID
            ):
                self.stream._peer_reset(isinstance(event, events.StreamReset))
        closing = close_event(quic)
        if closing is not None and self.closing_reason is None:
            self.closing_reason = closing.reason_phrase or f"closed (0x{closing.error_code:x})"
        if notify:
            self._notify_progress()

    def _handshake_completed(self, event: events.HandshakeCompleted) -> None:
        if event.alpn_protocol != ALPN:
            self._reject("no common ALPN protocol")
            return
        try:
            key = peer_key_from_certificate(peer_certificate(self.quic))
        except TransportError as exc:
            self._reject(str(exc))
            return
        if self._expected_peer is not None and key != self._expected_peer:
            self._reject(
                f"peer proved key {short_id(key)}, expected {short_id(self._expected_peer)}"
            )
            return
        if self._allow_peer is not None and not self._allow_peer(key):
            self._reject(f"peer {short_id(key)} is not allowed")
            return
        from ._stream import QuicPeerStream

        self.remote_id = key
        self.stream = QuicPeerStream(self, key)
        if self.quic.configuration.is_client:
            self.send(_OPEN)

    def _stream_data(self, event: events.StreamDataReceived) -> None:
        stream = self.stream
        if stream is None or event.stream_id != STREAM_ID:
            self._reject("only stream 0 may be used", QuicErrorCode.PROTOCOL_VIOLATION)
            return
        data = event.data
        self._received += len(data)
        if not self.established:
            if not data:
                if event.end_stream:
                    self._reject("stream ended before it was opened")
                return
            expected = _OPEN if not self.quic.configuration.is_client else _ACCEPT
            if data[:1] != expected:
                self._reject("bad stream opening byte", QuicErrorCode.PROTOCOL_VIOLATION)
                return
            data = data[1:]
            self.established = True
            self._handshake_deadline = None
            if not self.quic.configuration.is_client:
                self.send(_ACCEPT)
                if self._on_accept is not None:
                    self._on_accept(stream)
        stream._feed(data, event.end_stream)

    def _terminate(self, reason: str) -> None:
        if self.closing_reason is None:
            self.closing_reason = reason
        if not self.terminated:
            self.terminated = True
            self._endpoint.forget(self)
        self.poke()
        self._notify_progress()

    # -- outbound -------------------------------------------------------------------

    def _keepalive_at(self) -> float | None:
        interval = self.settings.keepalive_interval
        if interval is None or self.remote_id is None or self.closing_reason is not None:
            return None
        return max(self._last_rx, self._last_ping) + interval

    def _deadline(self) -> float:
        deadline = math.inf
        for at in (self.quic.get_timer(), self._keepalive_at(), self._handshake_deadline):
            if at is not None and at < deadline:
                deadline = at
        return deadline

    def transmit(self) -> None:
        """Handle pending events, then send what aioquic has queued, without blocking.

        Datagrams the kernel cannot take now stay in the outbox, ahead of later
        ones; the endpoint calls this again once the socket is writable.
        """
        if self._in_transmit:
            # Re-entered from event handling: the outer call sends, or, if it is
            # past datagrams_to_send already, the woken timer task does.
            self.poke()
            return
        self._in_transmit = True
        try:
            self._process_events()
            outbox = self._outbox
            datagrams = self.quic.datagrams_to_send(now=trio.current_time())
            if outbox:
                outbox.extend(datagrams)
                datagrams = []
                while outbox and self._endpoint.transmit(*outbox[0]):
                    outbox.popleft()
            else:
                for i, (data, addr) in enumerate(datagrams):
                    if not self._endpoint.transmit(data, addr):
                        outbox.extend(datagrams[i:])
                        break
            if outbox:
                self._endpoint.wait_writable(self)
            self._process_events(notify=False)  # e.g. ids issued while writing
            scope = self._sleep_scope
            if scope is not None:
                scope.deadline = self._deadline()
        finally:
            self._in_transmit = False

    def _on_wakeup(self, now: float) -> None:
        quic = self.quic
        timer = quic.get_timer()
        if timer is not None and now >= timer:
            quic.handle_timer(now)
        keepalive = self._keepalive_at()
        if keepalive is not None and now >= keepalive and not self.terminated:
            self._ping_uid += 1
            quic.send_ping(self._ping_uid)
            self._last_ping = now
        deadline = self._handshake_deadline
        if deadline is not None and now >= deadline:
            self._handshake_deadline = None  # once only (a past deadline would spin)
            if self.closing_reason is None:
                self.close(QuicErrorCode.NO_ERROR, "handshake timed out")

    async def run(self) -> None:
        """The timer task: transmit, then sleep until poked or a timer is due.

        Returns when the connection terminated (idle timeout, close completed).
        Cancelling it closes the connection: CONNECTION_CLOSE is still sent (shielded,
        bounded by a short timeout).
        """
        try:
            while True:
                self.transmit()
                if self.terminated:
                    return
                with trio.CancelScope(deadline=self._deadline()) as scope:
                    self._sleep_scope = scope
                    await self._wakeup.wait()
                self._sleep_scope = None
                self._wakeup = trio.Event()
                self._on_wakeup(trio.current_time())
        finally:
            self._sleep_scope = None
            if not self.terminated:
                # Abandoned (the endpoint is shutting down): say goodbye so the peer
                # learns at once instead of after its idle timeout.
                with trio.CancelScope(shield=True), trio.move_on_after(_GOODBYE_TIMEOUT):
                    if self.closing_reason is None:
                        self.close(reason="transport shut down")
                    self.transmit()
                    while self._outbox:  # the endpoint's writer may be gone: poll
                        await trio.sleep(0.005)
                        self.transmit()
            self._terminate(self.closing_reason or "transport shut down")

    async def wait_established(self, handshake_timeout: float) -> None:
        """Client side of ``dial``: wait for ACCEPT, or raise why we never got it.

        Raises:
            TransportError: rejected (either side), unreachable, or timed out.
        """
        with trio.move_on_after(handshake_timeout) as scope:
            while not self.established and self.closing_reason is None:
                await self.wait_progress()
        if self.established and self.closing_reason is None:
            return
        if scope.cancelled_caught:
            self.close(QuicErrorCode.NO_ERROR, "handshake timed out")
            raise TransportError("QUIC handshake timed out (peer unreachable?)")
        raise TransportError(f"QUIC connection failed: {self.closing_reason}")


