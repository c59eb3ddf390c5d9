"""One QUIC connection driven from trio: the glue between aioquic and a socket.

Theory of operation
-------------------
aioquic's :class:`~aioquic.quic.connection.QuicConnection` is sans-IO: it takes
datagrams, API calls and timer ticks, and hands back datagrams and events. A
:class:`ConnectionDriver` owns one and feeds it:

* **Inbound**: the endpoint's receive loop calls :meth:`datagram_received`
  (synchronously) for every datagram routed here by connection id. Events are
  handled at once, so the peer-key check on ``HandshakeCompleted`` runs before any
  ``StreamDataReceived`` of the same batch is looked at.
* **Outbound**: one pump task per connection (:meth:`run`) sends whatever
  ``datagrams_to_send`` returns, then sleeps until poked (new data, an ACK, a close)
  or until aioquic's timer or the keepalive is due. Only this task sends, so
  datagrams of one connection leave in order.
* ``now`` is always :func:`trio.current_time`, so a ``MockClock`` drives timers.

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

from ._aioquic import close_event, peer_certificate, send_finished, unacked_send_bytes
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

    async def send(self, data: bytes, addr: Address) -> None: ...
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

    # -- signalling ---------------------------------------------------------------

    def poke(self) -> None:
        """Ask the pump task to send whatever aioquic has queued."""
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
        self.poke()

    def close(self, error_code: int = QuicErrorCode.NO_ERROR, reason: str = "closed") -> None:
        """Start closing the connection (CONNECTION_CLOSE); the pump sends it."""
        if self.closing_reason is None:
            self.closing_reason = reason
        self.quic.close(error_code=error_code, reason_phrase=reason)
        self.poke()
        self._notify_progress()

    # -- inbound --------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address, now: float) -> None:
        self.quic.receive_datagram(data, addr, now)
        self._last_rx = now
        self._process_events()
        self.poke()

    def _reject(self, reason: str, error_code: int = QuicErrorCode.CONNECTION_REFUSED) -> None:
        # Everything the peer sent after this point is dropped unread.
        self._rejected = True
        self.close(error_code=error_code, reason=reason)

    def _process_events(self) -> None:
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

    async def flush(self) -> None:
        """Send everything aioquic has queued. A datagram interrupted by cancellation
        stays in the outbox for the next flush (the endpoint's shutdown flush)."""
        outbox = self._outbox
        outbox.extend(self.quic.datagrams_to_send(now=trio.current_time()))
        while outbox:
            data, addr = outbox[0]
            await self._endpoint.send(data, addr)
            outbox.popleft()

    async def run(self) -> None:
        """The pump task: transmit, then sleep until poked or a timer is due.

        Returns when the connection terminated (idle timeout, close completed).
        Cancelling it closes the connection: CONNECTION_CLOSE is still sent (shielded,
        bounded by a short timeout).
        """
        quic = self.quic
        try:
            while True:
                await self.flush()
                self._process_events()
                if self.terminated:
                    return
                timer = quic.get_timer()
                keepalive = self._keepalive_at()
                deadline = min(
                    math.inf if timer is None else timer,
                    math.inf if keepalive is None else keepalive,
                )
                if not self._wakeup.is_set():
                    with trio.move_on_at(deadline):
                        await self._wakeup.wait()
                self._wakeup = trio.Event()
                now = trio.current_time()
                if timer is not None and now >= timer:
                    quic.handle_timer(now)
                    self._process_events()
                if keepalive is not None and now >= keepalive and not self.terminated:
                    self._ping_uid += 1
                    quic.send_ping(self._ping_uid)
                    self._last_ping = now
        finally:
            if not self.terminated:
                # Abandoned (the endpoint is shutting down): say goodbye so the peer
                # learns at once instead of after its idle timeout.
                with trio.CancelScope(shield=True), trio.move_on_after(_GOODBYE_TIMEOUT):
                    if self.closing_reason is None:
                        self.close(reason="transport shut down")
                    await self.flush()
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


