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
    accepted_any_packet,
    close_event,
    peer_certificate,
    send_finished,
    unacked_send_bytes,
    window_update_due,
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


def test_stream_limit_writer_is_the_doubling_policy_we_override() -> None:
    # MutualQuicConnection replaces this method (read-side backpressure); if aioquic
    # renames it or changes its policy, the override would silently stop applying.
    params = list(inspect.signature(QuicConnection._write_stream_limits).parameters)
    assert params == ["self", "builder", "space", "stream"]
    source = inspect.getsource(QuicConnection._write_stream_limits)
    assert "max_stream_data_local *= 2" in source
    assert "max_stream_data_local_sent" in source
    assert "_write_stream_limits(" in inspect.getsource(QuicConnection._write_application)
    assert "MutualQuicConnection" in MutualQuicConnection._write_stream_limits.__qualname__
    assert callable(QuicConnection._on_max_stream_data_delivery)
    stream = QuicStream(stream_id=0, max_stream_data_local=1000, max_stream_data_remote=1000)
    assert stream.max_stream_data_local == 1000
    assert stream.max_stream_data_local_sent == 1000
    assert stream.receiver.highest_offset == 0


def test_window_update_due_follows_consumption() -> None:
    config = QuicConfiguration(is_client=True, max_stream_data=4096)
    quic = MutualQuicConnection(configuration=config)
    quic.connect(("127.0.0.1", 9), now=0.0)
    quic.send_stream_data(0, b"x")  # opens stream 0 with the configured window
    assert quic._streams[0].max_stream_data_local == 4096
    assert window_update_due(quic, 0, consumed=0, window=4096) is False
    assert window_update_due(quic, 0, consumed=2047, window=4096) is False
    assert window_update_due(quic, 0, consumed=2048, window=4096) is True
    assert window_update_due(quic, 4, consumed=10_000, window=4096) is False  # no stream


def test_packet_spaces_record_the_largest_received_packet() -> None:
    quic = MutualQuicConnection(configuration=QuicConfiguration(is_client=True))
    quic.connect(("127.0.0.1", 9), now=0.0)
    spaces = quic._spaces
    assert spaces and all(s.largest_received_packet == -1 for s in spaces.values())
    assert accepted_any_packet(quic) is False
    quic.close(reason_phrase="refused")
    assert accepted_any_packet(quic) is True  # a close to send counts as accepted
