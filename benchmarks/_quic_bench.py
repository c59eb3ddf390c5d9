"""Shared QUIC benchmark loops: raw aioquic (the limit) and QuicTransport.

"Raw" is the floor of what any trio driver of aioquic can do: two plain
QuicConnection objects, each pumped by one tight trio task over its own UDP
socket (receive -> receive_datagram -> datagrams_to_send -> sendto), with no
routing, authentication, streams or backpressure. The transport does the same
work plus all of that, so transport/raw is the cost of the layer (target >= 80 %).

That per-datagram loop wakes trio once per datagram and ACKs every datagram,
which the transport no longer does (it drains the socket in batches), so it is a
weak limit. ``raw_aioquic(..., batched=True)`` is the stronger one: the same bare
connections, but each pump drains up to 64 datagrams from a non-blocking socket
per wake-up and sends synchronously -- the transport's I/O strategy with nothing
else on top. Both are reported.

Used by ``bench_quic_raw.py`` and ``bench_transports.py``; both call
:func:`raw_aioquic` and :func:`quic_transport` in the same run and compare them.
"""

from __future__ import annotations

import math
import socket
import ssl
import time
from collections.abc import Callable

import trio
from aioquic._buffer import Buffer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_header
from p2pmsg_quic import ALPN, QuicSettings, QuicTransport
from p2pmsg_quic._cert import node_certificate

from p2pmsg.identity import Identity
from p2pmsg.net.base import PeerStream

__all__ = ["QUIC_TARGET_RATIO", "quic_transport", "raw_aioquic"]

_BATCH = 64

QUIC_TARGET_RATIO = 0.80
"""QuicTransport should reach this share of raw aioquic's throughput."""

_UNACKED = 1 << 20
_PIECE = 256 << 10


async def _raw_pump(
    sock: trio.socket.SocketType,
    quic: QuicConnection,
    done: trio.Event,
    on_event: Callable[[events.QuicEvent | None], None],
) -> None:
    while not done.is_set():
        for data, addr in quic.datagrams_to_send(now=trio.current_time()):
            await sock.sendto(data, addr)
        timer = quic.get_timer()
        with trio.move_on_at(math.inf if timer is None else timer) as scope:
            data, addr = await sock.recvfrom(65535)
            quic.receive_datagram(data, addr, trio.current_time())
        if scope.cancelled_caught:
            quic.handle_timer(trio.current_time())
        while (event := quic.next_event()) is not None:
            on_event(event)
        on_event(None)


async def _raw_batched_pump(
    sock: socket.socket,
    quic: QuicConnection,
    done: trio.Event,
    on_event: Callable[[events.QuicEvent | None], None],
) -> None:
    buffer = bytearray(65536)
    while not done.is_set():
        for data, addr in quic.datagrams_to_send(now=trio.current_time()):
            while True:
                try:
                    sock.sendto(data, addr)
                    break
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
        timer = quic.get_timer()
        with trio.move_on_at(math.inf if timer is None else timer) as scope:
            await trio.lowlevel.wait_readable(sock)
        if scope.cancelled_caught:
            quic.handle_timer(trio.current_time())
        now = trio.current_time()
        for _ in range(_BATCH):
            try:
                size, addr = sock.recvfrom_into(buffer)
            except BlockingIOError:
                break
            quic.receive_datagram(bytes(buffer[:size]), addr, now)
        while (event := quic.next_event()) is not None:
            on_event(event)
        on_event(None)


async def raw_aioquic(payload: bytes, datagram: int, *, batched: bool = False) -> float:
    """Wall seconds to move ``payload`` client->server with bare aioquic (per-datagram
    trio sockets, or ``batched``: drained non-blocking sockets)."""
    total = len(payload)
    cert, key = node_certificate(Identity.generate())
    server_cfg = QuicConfiguration(
        is_client=False, certificate=cert, private_key=key,
        alpn_protocols=[ALPN], max_datagram_size=datagram,
    )
    client_cfg = QuicConfiguration(
        is_client=True, verify_mode=ssl.CERT_NONE,
        alpn_protocols=[ALPN], max_datagram_size=datagram,
    )
    ssock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    csock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (ssock, csock):
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.bind(("127.0.0.1", 0))
    trio_ssock = trio.socket.from_stdlib_socket(ssock)
    trio_csock = trio.socket.from_stdlib_socket(csock)

    async def pump(
        side: socket.socket,
        quic: QuicConnection,
        done: trio.Event,
        on_event: Callable[[events.QuicEvent | None], None],
    ) -> None:
        if batched:
            await _raw_batched_pump(side, quic, done, on_event)
        else:
            await _raw_pump(trio_ssock if side is ssock else trio_csock, quic, done, on_event)
    client = QuicConnection(configuration=client_cfg)
    done = trio.Event()
    received = 0
    sent = 0
    start = 0.0

    def on_server_event(event: events.QuicEvent | None) -> None:
        nonlocal received
        if isinstance(event, events.StreamDataReceived):
            received += len(event.data)
            if event.end_stream:
                done.set()

    def top_up() -> None:
        # Feed the stream in 256 KiB pieces, keeping <= 1 MiB unacknowledged, as the
        # transport does: one huge write makes aioquic memmove the whole buffer on
        # every ACK, which would make "raw" unfairly slow.
        nonlocal sent
        if 0 not in client._streams:
            client.send_stream_data(0, b"")
        sender = client._streams[0].sender
        while sent < total and sender._buffer_stop - sender._buffer_start < _UNACKED:
            piece = payload[sent : sent + _PIECE]
            sent += len(piece)
            client.send_stream_data(0, piece, end_stream=sent == total)

    def on_client_event(event: events.QuicEvent | None) -> None:
        nonlocal start
        if isinstance(event, events.HandshakeCompleted):
            start = time.perf_counter()
        if start:
            top_up()

    async def serve() -> None:
        await trio.lowlevel.wait_readable(ssock)
        data, addr = ssock.recvfrom(65535)
        header = pull_quic_header(Buffer(data=data), host_cid_length=8)
        server = QuicConnection(
            configuration=server_cfg, original_destination_connection_id=header.destination_cid
        )
        server.receive_datagram(data, addr, trio.current_time())
        await pump(ssock, server, done, on_server_event)

    with ssock, csock:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            client.connect(ssock.getsockname(), now=trio.current_time())
            nursery.start_soon(pump, csock, client, done, on_client_event)
            await done.wait()
            elapsed = time.perf_counter() - start
            nursery.cancel_scope.cancel()
    assert received == total, "raw aioquic lost data"
    return elapsed


async def quic_transport(payload: bytes, datagram: int) -> float:
    """Wall seconds to move ``payload`` client->server through QuicTransport
    (handshake excluded; authentication, stream and backpressure included)."""
    settings = QuicSettings(max_datagram_size=datagram)
    server = QuicTransport(identity=Identity.generate(), host="127.0.0.1", settings=settings)
    client = QuicTransport(identity=Identity.generate(), host="127.0.0.1", settings=settings)
    got = trio.Event()
    received = 0

    async def handler(stream: PeerStream) -> None:
        nonlocal received
        while chunk := await stream.receive_some(1 << 20):
            received += len(chunk)
        got.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, handler)
        async with client:
            stream = await client.dial(server.addresses()[0], server.identity.public_key)
            start = time.perf_counter()
            await stream.send_all(payload)
            await stream.send_eof()
            await got.wait()
            elapsed = time.perf_counter() - start
            await stream.aclose()
        nursery.cancel_scope.cancel()
    assert received == len(payload), "QuicTransport lost data"
    return elapsed
