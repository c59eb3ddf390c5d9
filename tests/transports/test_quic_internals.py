"""Guards for the aioquic internals p2pmsg_quic relies on (see p2pmsg_quic/_aioquic.py).

If one of these fails after an aioquic upgrade, mutual authentication or
backpressure would silently break: fix p2pmsg_quic/_aioquic.py before shipping.
"""

from __future__ import annotations

import inspect

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.stream import QuicStream
from aioquic.tls import Context
from p2pmsg_quic._aioquic import (
    MutualQuicConnection,
    close_event,
    peer_certificate,
    send_finished,
    unacked_send_bytes,
)


def _client() -> QuicConnection:
    return QuicConnection(configuration=QuicConfiguration(is_client=True))


def test_initialize_is_the_tls_context_factory() -> None:
    params = list(inspect.signature(QuicConnection._initialize).parameters)
    assert params == ["self", "peer_cid"]
    source = inspect.getsource(QuicConnection._initialize)
    assert "tls.Context(" in source


def test_tls_context_has_client_certificate_request_flag_and_peer_certificate() -> None:
    ctx = Context(is_client=False)
    assert ctx._request_client_certificate is False
    assert ctx._peer_certificate is None
    # The server only sends a CertificateRequest when the flag is set.
    assert "_request_client_certificate" in inspect.getsource(Context._server_handle_hello)


def test_mutual_connection_sets_the_flag_only_on_servers() -> None:
    quic = MutualQuicConnection(configuration=QuicConfiguration(is_client=True))
    quic.connect(("127.0.0.1", 9), now=0.0)
    assert quic.tls._request_client_certificate is False
    assert peer_certificate(quic) is None


def test_stream_sender_buffer_offsets_track_unacked_bytes() -> None:
    quic = _client()
    quic.connect(("127.0.0.1", 9), now=0.0)
    assert unacked_send_bytes(quic, 0) == 0
    quic.send_stream_data(0, b"x" * 1000)
    stream = quic._streams[0]
    assert isinstance(stream, QuicStream)
    assert isinstance(stream.sender._buffer_start, int)
    assert isinstance(stream.sender._buffer_stop, int)
    assert unacked_send_bytes(quic, 0) == 1000
    assert send_finished(quic, 0) is False
    assert isinstance(stream.sender.is_finished, bool)


def test_close_event_is_set_when_closing_starts() -> None:
    quic = _client()
    quic.connect(("127.0.0.1", 9), now=0.0)
    assert close_event(quic) is None
    quic.close(reason_phrase="bye")
    event = close_event(quic)
    assert event is not None and event.reason_phrase == "bye"
