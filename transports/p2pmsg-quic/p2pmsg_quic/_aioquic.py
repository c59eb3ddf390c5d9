"""Every aioquic internal this plugin relies on, in one place.

aioquic has no public API for six things the transport needs, so these helpers
reach into private state. ``tests/transports/test_quic_internals.py`` asserts each
one still exists with the expected shape, so an aioquic upgrade that moves them
fails loudly in CI instead of silently weakening authentication or backpressure.

1. **Requesting the client's certificate** (mutual TLS). aioquic's server never
   sends a CertificateRequest unless ``tls.Context._request_client_certificate``
   is set, and the TLS context is only created in ``QuicConnection._initialize``
   (on the first Initial packet). :class:`MutualQuicConnection` sets the flag
   right after it is created.
2. **The peer's certificate** after the handshake: ``tls.Context._peer_certificate``.
3. **Unacknowledged send bytes** per stream, for backpressure:
   ``QuicStreamSender._buffer_stop - _buffer_start`` (aioquic drops acked bytes
   from the front of that buffer). ``QuicConnection._streams`` maps ids to streams.
4. **Closing seen early**: ``QuicConnection._close_event`` is set as soon as a
   CONNECTION_CLOSE is received or sent, while the public ``ConnectionTerminated``
   event only comes after the 3 PTO draining period.
5. **Read-side flow control**: aioquic doubles a stream's receive window
   (``QuicConnection._write_stream_limits``) whenever the peer has used half of
   it, whether or not the application read anything, so a fast peer could make a
   slow reader buffer without limit. :class:`MutualQuicConnection` overrides that
   method: the advertised limit is ``consumed + window`` where ``consumed`` is what
   the application has taken (:attr:`MutualQuicConnection.read_offset`), so at most
   ``window`` bytes are ever buffered per stream. It writes the MAX_STREAM_DATA
   frame itself, using ``stream.max_stream_data_local(_sent)`` and
   ``QuicConnection._on_max_stream_data_delivery`` (resend on loss).
6. **Whether a datagram was accepted**: each packet number space's
   ``largest_received_packet`` (``QuicConnection._spaces``) stays -1 until a packet
   of that space decrypted, so a server connection built for a forged Initial can
   be discarded at once (:func:`accepted_any_packet`).
"""

from __future__ import annotations

from collections.abc import Callable

from aioquic import tls
from aioquic.quic import events
from aioquic.quic.connection import MAX_STREAM_DATA_FRAME_CAPACITY, QuicConnection
from aioquic.quic.packet import QuicFrameType
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream
from cryptography import x509

__all__ = [
    "MutualQuicConnection",
    "accepted_any_packet",
    "close_event",
    "peer_certificate",
    "send_finished",
    "unacked_send_bytes",
    "window_update_due",
]


class MutualQuicConnection(QuicConnection):
    """A :class:`QuicConnection` whose server side asks the client for a certificate.

    A client that sends none completes the handshake without one; the transport
    then finds :func:`peer_certificate` is ``None`` and rejects the connection.
    """

    receive_window: int | None = None
    """Bytes a stream may buffer beyond what the application consumed (None: aioquic's
    own doubling policy). Set it together with :attr:`read_offset`."""
    read_offset: Callable[[int], int] | None = None
    """stream id -> bytes of that stream the application has consumed."""

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if not self._is_client:
            self.tls._request_client_certificate = True

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream
    ) -> None:
        window, read_offset, stream_id = self.receive_window, self.read_offset, stream.stream_id
        if (
            window is None
            or read_offset is None
            or stream_id is None
            or not stream.max_stream_data_local
        ):
            super()._write_stream_limits(builder, space, stream)
            return
        target = read_offset(stream_id) + window
        # Grow only by what the application consumed, in steps of half a window
        # (fewer MAX_STREAM_DATA frames); never shrink (RFC 9000 forbids it).
        if target - stream.max_stream_data_local >= max(1, window // 2):
            stream.max_stream_data_local = target
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                handler=self._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local


def window_update_due(quic: QuicConnection, stream_id: int, consumed: int, window: int) -> bool:
    """True when :class:`MutualQuicConnection` would now raise ``stream_id``'s limit,
    i.e. the application consumed enough that a MAX_STREAM_DATA frame should go out."""
    stream = _stream(quic, stream_id)
    if stream is None or not stream.max_stream_data_local:
        return False
    return consumed + window - int(stream.max_stream_data_local) >= max(1, window // 2)


def accepted_any_packet(quic: QuicConnection) -> bool:
    """True once the connection decrypted a packet (forged Initials never do), or
    decrypted one it refuses (e.g. no common ALPN: the CONNECTION_CLOSE must go out)."""
    spaces: dict[tls.Epoch, QuicPacketSpace] = quic._spaces
    decrypted = any(space.largest_received_packet >= 0 for space in spaces.values())
    return decrypted or close_event(quic) is not None


def peer_certificate(quic: QuicConnection) -> x509.Certificate | None:
    """The certificate the peer proved possession of, once the handshake completed."""
    cert: x509.Certificate | None = quic.tls._peer_certificate
    return cert


def _stream(quic: QuicConnection, stream_id: int) -> QuicStream | None:
    stream: QuicStream | None = quic._streams.get(stream_id)
    return stream


def unacked_send_bytes(quic: QuicConnection, stream_id: int) -> int:
    """Bytes written to ``stream_id`` that the peer has not acknowledged yet."""
    stream = _stream(quic, stream_id)
    if stream is None:
        return 0  # never opened, or finished and discarded: nothing buffered
    sender = stream.sender
    return int(sender._buffer_stop) - int(sender._buffer_start)


def send_finished(quic: QuicConnection, stream_id: int) -> bool:
    """True once every byte and the FIN written to ``stream_id`` were acknowledged."""
    stream = _stream(quic, stream_id)
    return stream is None or bool(stream.sender.is_finished)


def close_event(quic: QuicConnection) -> events.ConnectionTerminated | None:
    """Why the connection is closing/closed, as soon as either side started to close."""
    event: events.ConnectionTerminated | None = quic._close_event
    return event
