"""Every aioquic internal this plugin relies on, in one place.

aioquic has no public API for four things the transport needs, so these helpers
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
"""

from __future__ import annotations

from aioquic.quic import events
from aioquic.quic.connection import QuicConnection
from aioquic.quic.stream import QuicStream
from cryptography import x509

__all__ = [
    "MutualQuicConnection",
    "close_event",
    "peer_certificate",
    "send_finished",
    "unacked_send_bytes",
]


class MutualQuicConnection(QuicConnection):
    """A :class:`QuicConnection` whose server side asks the client for a certificate.

    A client that sends none completes the handshake without one; the transport
    then finds :func:`peer_certificate` is ``None`` and rejects the connection.
    """

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if not self._is_client:
            self.tls._request_client_certificate = True


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
