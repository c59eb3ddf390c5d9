"""The transport conformance suite, like ``trio.testing.check_two_way_stream``.

Call :func:`check_transport` with an async factory returning a fresh
:class:`TransportPair`; it serves ``b``, dials it from ``a`` many times, and checks:

* trio's generic half-closeable stream contract
  (:func:`trio.testing.check_half_closeable_stream`: argument types, checkpoints,
  busy/closed/broken errors, ``send_eof``);
* authentication: ``remote_id`` is the peer's key on both ends; dialing with the
  wrong expected key raises :class:`~p2pmsg.errors.TransportError`;
* ordering of many small writes, a large write (several MiB) both ways at once,
  many concurrent streams between the same two nodes, half-close, cancellation of a
  pending ``receive_some`` losing no data, and a peer abort surfacing as EOF or
  :class:`trio.BrokenResourceError`, never as a hang or another exception.

Raises ``AssertionError`` (or the transport's own exception) on the first failure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
import trio.testing

from ..errors import TransportError
from ..net.base import PeerStream, Transport

__all__ = ["TransportPair", "check_transport"]


@dataclass(frozen=True, slots=True)
class TransportPair:
    """Two unstarted transports of different nodes, with their node keys."""

    a: Transport
    a_id: bytes
    b: Transport
    b_id: bytes
    wrong_id: bytes
    """A key that is neither a's nor b's (for the wrong-key check)."""


_StreamPair = tuple[PeerStream, PeerStream]


async def check_transport(make_pair: Callable[[], Awaitable[TransportPair]]) -> None:
    """Run the whole suite against transports built by ``make_pair``."""
    pair = await make_pair()
    accepted_send, accepted = trio.open_memory_channel[PeerStream](float("inf"))
    keep_open: list[trio.Event] = []

    async def handler(stream: PeerStream) -> None:
        done = trio.Event()
        keep_open.append(done)
        accepted_send.send_nowait(stream)
        await done.wait()

    async def connect() -> _StreamPair:
        address = pair.b.addresses()[0]
        dialed = await pair.a.dial(address, pair.b_id)
        served = await accepted.receive()
        return dialed, served

    async with trio.open_nursery() as nursery:
        await nursery.start(pair.b.serve, handler)
        await _check_authentication(pair, connect)
        await trio.testing.check_half_closeable_stream(connect, None)
        for check in (
            _check_ordering,
            _check_large_writes,
            _check_half_close,
            _check_cancelled_receive,
            _check_peer_abort,
        ):
            dialed, served = await connect()
            async with dialed, served:
                await check(dialed, served)
        await _check_concurrent_streams(connect)
        nursery.cancel_scope.cancel()
    for event in keep_open:
        event.set()


async def _check_authentication(
    pair: TransportPair, connect: Callable[[], Awaitable[_StreamPair]]
) -> None:
    try:
        stream = await pair.a.dial(pair.b.addresses()[0], pair.wrong_id)
    except TransportError:
        pass
    else:
        await trio.aclose_forcefully(stream)
        raise AssertionError("dial with the wrong expected key did not raise TransportError")
    dialed, served = await connect()
    async with dialed, served:
        assert dialed.remote_id == pair.b_id, "dialer sees the wrong remote_id"
        assert served.remote_id == pair.a_id, "listener sees the wrong remote_id"
        await dialed.send_all(b"hello")
        assert await _receive_exactly(served, 5) == b"hello"


async def _receive_exactly(stream: PeerStream, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = await stream.receive_some(size - len(buf))
        assert chunk, f"EOF after {len(buf)} of {size} bytes"
        buf += chunk
    return bytes(buf)


async def _receive_until_eof(stream: PeerStream) -> bytes:
    buf = bytearray()
    while chunk := await stream.receive_some():
        buf += chunk
    return bytes(buf)


def _pattern(size: int, salt: bytes) -> bytes:
    """Deterministic non-repeating bytes, so reordering or loss is detectable."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.blake2b(salt + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


async def _check_ordering(dialed: PeerStream, served: PeerStream) -> None:
    messages = [i.to_bytes(4, "big") for i in range(2000)]

    async def sender() -> None:
        for m in messages:
            await dialed.send_all(m)
        await dialed.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        received = await _receive_until_eof(served)
    assert received == b"".join(messages), "small writes arrived out of order or incomplete"


async def _check_large_writes(dialed: PeerStream, served: PeerStream) -> None:
    size = 3 * 1024 * 1024 + 17
    up, down = _pattern(size, b"up"), _pattern(size, b"down")
    results: dict[str, bytes] = {}

    async def pump(stream: PeerStream, data: bytes, key: str) -> None:
        async with trio.open_nursery() as nursery:

            async def send() -> None:
                await stream.send_all(data)
                await stream.send_eof()

            nursery.start_soon(send)
            results[key] = await _receive_until_eof(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, dialed, up, "at_dialer")
        nursery.start_soon(pump, served, down, "at_listener")
    assert results["at_listener"] == up, "large write dialer->listener corrupted"
    assert results["at_dialer"] == down, "large write listener->dialer corrupted"


async def _check_half_close(dialed: PeerStream, served: PeerStream) -> None:
    await dialed.send_all(b"request")
    await dialed.send_eof()
    assert await _receive_until_eof(served) == b"request"
    assert await served.receive_some() == b"", "EOF must be sticky"
    await served.send_all(b"response after half-close")
    await served.send_eof()
    assert await _receive_until_eof(dialed) == b"response after half-close"


async def _check_cancelled_receive(dialed: PeerStream, served: PeerStream) -> None:
    with trio.move_on_after(0.01) as scope:
        await served.receive_some()
    assert scope.cancelled_caught, "receive_some returned data that was never sent"
    await dialed.send_all(b"after cancel")
    assert await _receive_exactly(served, 12) == b"after cancel", "data lost after a cancel"


async def _check_peer_abort(dialed: PeerStream, served: PeerStream) -> None:
    await dialed.send_all(b"partial")
    assert await _receive_exactly(served, 7) == b"partial"
    await trio.aclose_forcefully(served)
    try:
        data = await dialed.receive_some()
    except trio.BrokenResourceError:
        pass
    else:
        assert data == b"", "reading from an aborted peer must give EOF or BrokenResourceError"
    with trio.move_on_after(10):
        try:
            while True:
                await dialed.send_all(b"x" * 4096)
        except trio.BrokenResourceError:
            return
    raise AssertionError("sending to an aborted peer never raised BrokenResourceError")


async def _check_concurrent_streams(connect: Callable[[], Awaitable[_StreamPair]]) -> None:
    pairs = [await connect() for _ in range(8)]
    try:
        async with trio.open_nursery() as nursery:
            for i, (dialed, served) in enumerate(pairs):
                nursery.start_soon(_echo_roundtrip, dialed, served, _pattern(50_000, bytes([i])))
    finally:
        for dialed, served in pairs:
            await trio.aclose_forcefully(dialed)
            await trio.aclose_forcefully(served)


async def _echo_roundtrip(dialed: PeerStream, served: PeerStream, data: bytes) -> None:
    async def echo() -> None:
        while chunk := await served.receive_some():
            await served.send_all(chunk)
        await served.send_eof()

    async def send() -> None:
        await dialed.send_all(data)
        await dialed.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo)
        nursery.start_soon(send)
        back = await _receive_until_eof(dialed)
    assert back == data, "concurrent streams mixed or lost data"
