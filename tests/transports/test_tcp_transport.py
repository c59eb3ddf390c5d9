"""The TCP transport on loopback: the conformance suite, authentication failures
before any data, an ephemeral-swapping man in the middle, tampering, truncation,
half-close, a 20 MB transfer, many connections, timeouts and cancellation."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
import trio.testing
from p2pmsg_tcp import StreamIntegrityError, TcpPeerStream, TcpTransport, parse_address
from p2pmsg_tcp.handshake import HELLO_SIZE, ServerHandshake, State
from p2pmsg_tcp.records import ABYTES, HEADER_BYTES, LENGTH_BYTES
from test_tcp_handshake import EphemeralSwapMitm

from p2pmsg.errors import TransportError
from p2pmsg.identity import Identity
from p2pmsg.net.base import PeerStream, available_transports, load_transport
from p2pmsg.testing import TransportPair, check_transport

ALICE = Identity.from_seed(b"a" * 32)
BOB = Identity.from_seed(b"b" * 32)
MALLORY = Identity.from_seed(b"m" * 32)

# Bytes the dialer sends before its first application record: M1 + M3.
CLIENT_HANDSHAKE_BYTES = HELLO_SIZE + HEADER_BYTES + LENGTH_BYTES + 96 + ABYTES
FINAL_RECORD_BYTES = LENGTH_BYTES + ABYTES

Handler = Callable[[PeerStream], Awaitable[None]]


async def _read_all(stream: trio.abc.ReceiveStream) -> bytes:
    buf = bytearray()
    while chunk := await stream.receive_some():
        buf += chunk
    return bytes(buf)


def _recording_handler(seen: list[PeerStream], echo: bool = False) -> Handler:
    async def handler(stream: PeerStream) -> None:
        seen.append(stream)
        if echo:
            while chunk := await stream.receive_some():
                await stream.send_all(chunk)
            await stream.send_eof()
        else:
            await trio.sleep_forever()

    return handler


async def _raw_listener(
    nursery: trio.Nursery, handle: Callable[[trio.SocketStream], Awaitable[None]]
) -> str:
    """A plain TCP server on loopback running ``handle`` per connection; its address."""
    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    host, port = listeners[0].socket.getsockname()[:2]
    return f"tcp://{host}:{port}"


async def _proxy(
    nursery: trio.Nursery,
    target: str,
    *,
    up: Callable[[bytes, int], bytes] = lambda data, offset: data,
    down: Callable[[bytes], bytes] = lambda data: data,
    hold_back: int = 0,
    hold_after: int = CLIENT_HANDSHAKE_BYTES,
) -> str:
    """A TCP relay to ``target``; ``up``/``down`` may rewrite each direction.

    ``up`` gets the client's bytes and their offset in the client's stream.
    ``hold_back`` keeps the client's last N bytes and drops them at EOF (an
    attacker who removes the final record and closes).
    """
    host, port = parse_address(target)

    async def handle(client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream(host, port)

        async def upstream() -> None:
            offset = 0
            held = b""
            try:
                while data := await client.receive_some():
                    data = held + data
                    # Never hold back handshake bytes, or the handshake would stall.
                    keep = min(hold_back, len(data), max(0, offset + len(data) - hold_after))
                    data, held = data[: len(data) - keep], data[len(data) - keep :]
                    out = up(data, offset)
                    offset += len(data)
                    if out:
                        await server.send_all(out)
                await server.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        async def downstream() -> None:
            try:
                while data := await server.receive_some():
                    out = down(data)
                    if out:
                        await client.send_all(out)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await client.aclose()
            await server.aclose()

        async with trio.open_nursery() as inner:
            inner.start_soon(upstream)
            inner.start_soon(downstream)

    return await _raw_listener(nursery, handle)


# --- conformance ---------------------------------------------------------------


async def test_conformance_suite() -> None:
    async def make() -> TransportPair:
        return TransportPair(
            TcpTransport(ALICE),
            ALICE.public_key,
            TcpTransport(BOB),
            BOB.public_key,
            MALLORY.public_key,
        )

    await check_transport(make)


async def test_trio_half_closeable_stream_contract() -> None:
    async with trio.open_nursery() as nursery:
        accepted_send, accepted = trio.open_memory_channel[PeerStream](10)
        bob = TcpTransport(BOB)

        async def handler(stream: PeerStream) -> None:
            await accepted_send.send(stream)
            await trio.sleep_forever()

        await nursery.start(bob.serve, handler)

        async def make_pair() -> tuple[PeerStream, PeerStream]:
            dialed = await TcpTransport(ALICE).dial(bob.addresses()[0], BOB.public_key)
            return dialed, await accepted.receive()

        await trio.testing.check_half_closeable_stream(make_pair, None)
        nursery.cancel_scope.cancel()


# --- authentication --------------------------------------------------------------


async def test_echo_with_authenticated_ids_on_both_ends() -> None:
    seen: list[PeerStream] = []
    async with trio.open_nursery() as nursery:
        bob = TcpTransport(BOB)
        await nursery.start(bob.serve, _recording_handler(seen, echo=True))
        stream = await TcpTransport(ALICE).dial(bob.addresses()[0], BOB.public_key)
        assert isinstance(stream, TcpPeerStream)
        assert stream.remote_id == BOB.public_key
        await stream.send_all(b"ping")
        await stream.send_eof()
        assert await _read_all(stream) == b"ping"
        assert [s.remote_id for s in seen] == [ALICE.public_key]
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_wrong_expected_key_fails_before_sending_anything_but_the_hello() -> None:
    received = bytearray()
    done = trio.Event()

    async def impostor(sock: trio.SocketStream) -> None:
        """Bob answers honestly, but the dialer expected Mallory."""
        machine = ServerHandshake(BOB)
        try:
            while data := await sock.receive_some():
                received.extend(data)
                if machine.state is State.WAIT_HELLO:
                    machine.receive_data(data)
                    await sock.send_all(machine.data_to_send())
        finally:
            done.set()

    async with trio.open_nursery() as nursery:
        address = await _raw_listener(nursery, impostor)
        with pytest.raises(TransportError, match="mismatch"):
            await TcpTransport(ALICE).dial(address, MALLORY.public_key)
        await done.wait()  # the dialer closed the connection
        assert len(received) == HELLO_SIZE  # its hello and nothing else
        nursery.cancel_scope.cancel()


async def test_wrong_expected_key_never_reaches_the_handler() -> None:
    seen: list[PeerStream] = []
    async with trio.open_nursery() as nursery:
        bob = TcpTransport(BOB)
        await nursery.start(bob.serve, _recording_handler(seen))
        with pytest.raises(TransportError):
            await TcpTransport(ALICE).dial(bob.addresses()[0], MALLORY.public_key)
        # Bob keeps serving and a correct dial still works.
        good = await TcpTransport(ALICE).dial(bob.addresses()[0], BOB.public_key)
        await trio.testing.wait_all_tasks_blocked()
        assert [s.remote_id for s in seen] == [ALICE.public_key]
        await good.aclose()
        nursery.cancel_scope.cancel()


async def test_policy_refusal_closes_before_data() -> None:
    seen: list[PeerStream] = []
    asked: list[bytes] = []

    def allow(peer: bytes) -> bool:
        asked.append(peer)
        return peer != ALICE.public_key

    async with trio.open_nursery() as nursery:
        bob = TcpTransport(BOB, allow_peer=allow)
        await nursery.start(bob.serve, _recording_handler(seen))
        with pytest.raises(TransportError):
            await TcpTransport(ALICE).dial(bob.addresses()[0], BOB.public_key)
        ok = await TcpTransport(MALLORY).dial(bob.addresses()[0], BOB.public_key)
        await trio.testing.wait_all_tasks_blocked()
        assert asked == [ALICE.public_key, MALLORY.public_key]
        assert [s.remote_id for s in seen] == [MALLORY.public_key]
        await ok.aclose()
        nursery.cancel_scope.cancel()


async def test_mitm_proxy_swapping_ephemeral_keys_cannot_connect() -> None:
    seen: list[PeerStream] = []
    mitm = EphemeralSwapMitm()
    async with trio.open_nursery() as nursery:
        bob = TcpTransport(BOB)
        await nursery.start(bob.serve, _recording_handler(seen))
        proxy = await _proxy(
            nursery, bob.addresses()[0], up=lambda d, _o: mitm.from_client(d), down=mitm.from_server
        )
        with pytest.raises(TransportError):
            await TcpTransport(ALICE).dial(proxy, BOB.public_key)
        await trio.testing.wait_all_tasks_blocked()
        assert seen == []
        nursery.cancel_scope.cancel()


async def test_honest_proxy_connects() -> None:
    """Control for the proxy tests: relaying unchanged bytes works."""
    seen: list[PeerStream] = []
    async with trio.open_nursery() as nursery:
        bob = TcpTransport(BOB)
        await nursery.start(bob.serve, _recording_handler(seen, echo=True))
        proxy = await _proxy(nursery, bob.addresses()[0])
        stream = await TcpTransport(ALICE).dial(proxy, BOB.public_key)
        await stream.send_all(b"through the relay")
        await stream.send_eof()
        assert await _read_all(stream) == b"through the relay"
        await stream.aclose()
        nursery.cancel_scope.cancel()


# --- integrity of the data stream ----------------------------------------------------


async def _serve_capturing(nursery: trio.Nursery, outcome: dict[str, object]) -> TcpTransport:
    """Bob records what his handler read and how the stream ended."""
    bob = TcpTransport(BOB)
    finished = trio.Event()
    outcome["finished"] = finished

    async def handler(stream: PeerStream) -> None:
        got = bytearray()
        try:
            while chunk := await stream.receive_some():
                got += chunk
            outcome["end"] = "clean"
        except StreamIntegrityError as exc:
            outcome["end"] = exc
        finally:
            outcome["data"] = bytes(got)
            finished.set()

    await nursery.start(bob.serve, handler)
    return bob


async def test_tampered_record_is_detected() -> None:
    target = CLIENT_HANDSHAKE_BYTES + LENGTH_BYTES + 10  # inside the first data record

    def flip(data: bytes, offset: int) -> bytes:
        if offset <= target < offset + len(data):
            buf = bytearray(data)
            buf[target - offset] ^= 0x40
            return bytes(buf)
        return data

    outcome: dict[str, object] = {}
    async with trio.open_nursery() as nursery:
        bob = await _serve_capturing(nursery, outcome)
        proxy = await _proxy(nursery, bob.addresses()[0], up=flip)
        stream = await TcpTransport(ALICE).dial(proxy, BOB.public_key)
        await stream.send_all(b"dose: 5 mg" * 100)
        await stream.send_eof()
        await outcome["finished"].wait()  # type: ignore[attr-defined]
        assert isinstance(outcome["end"], StreamIntegrityError)
        assert isinstance(outcome["end"], trio.BrokenResourceError)
        assert outcome["data"] == b""  # the forged record delivered nothing
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_dropped_final_record_is_truncation_not_eof() -> None:
    outcome: dict[str, object] = {}
    async with trio.open_nursery() as nursery:
        bob = await _serve_capturing(nursery, outcome)
        proxy = await _proxy(nursery, bob.addresses()[0], hold_back=FINAL_RECORD_BYTES)
        stream = await TcpTransport(ALICE).dial(proxy, BOB.public_key)
        await stream.send_all(b"first half of the message")
        await stream.send_eof()  # the proxy swallows the final record, then sends FIN
        await outcome["finished"].wait()  # type: ignore[attr-defined]
        assert outcome["data"] == b"first half of the message"
        end = outcome["end"]
        assert isinstance(end, StreamIntegrityError)
        assert "truncated" in str(end)
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_connection_cut_mid_record_is_truncation() -> None:
    cut_at = CLIENT_HANDSHAKE_BYTES + 1000

    def cut(data: bytes, offset: int) -> bytes:
        return data[: max(0, cut_at - offset)]

    outcome: dict[str, object] = {}
    async with trio.open_nursery() as nursery:
        bob = await _serve_capturing(nursery, outcome)
        proxy = await _proxy(nursery, bob.addresses()[0], up=cut)
        stream = await TcpTransport(ALICE).dial(proxy, BOB.public_key)
        await stream.send_all(os.urandom(5000))  # one record, only part of it arrives
        await stream.send_eof()
        await outcome["finished"].wait()  # type: ignore[attr-defined]
        assert isinstance(outcome["end"], StreamIntegrityError)
        assert outcome["data"] == b""
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_graceful_aclose_is_a_clean_eof() -> None:
    outcome: dict[str, object] = {}
    async with trio.open_nursery() as nursery:
        bob = await _serve_capturing(nursery, outcome)
        stream = await TcpTransport(ALICE).dial(bob.addresses()[0], BOB.public_key)
        await stream.send_all(b"bye")
        await stream.aclose()
        await outcome["finished"].wait()  # type: ignore[attr-defined]
        assert outcome == {"finished": outcome["finished"], "end": "clean", "data": b"bye"}
        nursery.cancel_scope.cancel()


# --- stream behaviour ------------------------------------------------------------------


async def test_half_close_then_reply() -> None:
    async def handler(stream: PeerStream) -> None:
        request = await _read_all(stream)
        await stream.send_all(b"reply to " + request)
        await stream.send_eof()

    async with trio.open_nursery() as nursery:
        bob = TcpTransport(BOB)
        await nursery.start(bob.serve, handler)
        stream = await TcpTransport(ALICE).dial(bob.addresses()[0], BOB.public_key)
        await stream.send_all(b"request")
        await stream.send_eof()
        with pytest.raises(trio.ClosedResourceError):
            await stream.send_all(b"late")
        assert await _read_all(stream) == b"reply to request"
        assert await stream.receive_some() == b""
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_20_mb_transfer_both_ways_is_intact() -> None:
    size = 20 * 1024 * 1024
    payload = os.urandom(size)
    async with trio.open_nursery() as nursery:
        bob = TcpTransport(BOB)
        await nursery.start(bob.serve, _recording_handler([], echo=True))
        stream = await TcpTransport(ALICE).dial(bob.addresses()[0], BOB.public_key)
        echoed = hashlib.blake2b()
        count = 0

        async def send() -> None:
            view = memoryview(payload)
            for start in range(0, size, 1_000_003):  # odd sizes cross record borders
                await stream.send_all(view[start : start + 1_000_003])
            await stream.send_eof()

        async with trio.open_nursery() as inner:
            inner.start_soon(send)
            while chunk := await stream.receive_some():
                echoed.update(chunk)
                count += len(chunk)
        assert count == size
        assert echoed.digest() == hashlib.blake2b(payload).digest()
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_many_concurrent_connections() -> None:
    n = 60
    async with trio.open_nursery() as nursery:
        bob = TcpTransport(BOB)
        await nursery.start(bob.serve, _recording_handler([], echo=True))
        results: dict[int, bytes] = {}

        async def client(i: int) -> None:
            me = Identity.generate()
            stream = await TcpTransport(me).dial(bob.addresses()[0], BOB.public_key)
            data = i.to_bytes(4, "big") * 5000
            async with stream:
                await stream.send_all(data)
                await stream.send_eof()
                results[i] = await _read_all(stream)

        async with trio.open_nursery() as clients:
            for i in range(n):
                clients.start_soon(client, i)
        assert results == {i: i.to_bytes(4, "big") * 5000 for i in range(n)}
        nursery.cancel_scope.cancel()


# --- timeouts, garbage, cancellation ---------------------------------------------------


async def test_dial_times_out_against_a_silent_server() -> None:
    async def silent(sock: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        address = await _raw_listener(nursery, silent)
        with pytest.raises(TransportError, match="timed out"):
            await TcpTransport(ALICE, handshake_timeout=0.2).dial(address, BOB.public_key)
        nursery.cancel_scope.cancel()


async def test_cancelled_dial_closes_its_socket() -> None:
    closed = trio.Event()
    connected = trio.Event()

    async def silent(sock: trio.SocketStream) -> None:
        connected.set()
        hello = await sock.receive_some()
        assert len(hello) == HELLO_SIZE
        assert await sock.receive_some() == b""  # the dialer went away
        closed.set()

    async with trio.open_nursery() as nursery:
        address = await _raw_listener(nursery, silent)
        with trio.CancelScope() as scope:
            nursery.start_soon(lambda: _cancel_when(connected, scope))
            await TcpTransport(ALICE).dial(address, BOB.public_key)
        assert scope.cancelled_caught
        await closed.wait()
        nursery.cancel_scope.cancel()


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    await trio.testing.wait_all_tasks_blocked()
    scope.cancel()


async def test_server_drops_silent_and_garbage_clients_and_keeps_serving() -> None:
    seen: list[PeerStream] = []
    async with trio.open_nursery() as nursery:
        bob = TcpTransport(BOB, handshake_timeout=0.3)
        await nursery.start(bob.serve, _recording_handler(seen))
        host, port = parse_address(bob.addresses()[0])

        silent = await trio.open_tcp_stream(host, port)
        assert await silent.receive_some() == b""  # closed by the handshake timeout

        garbage = await trio.open_tcp_stream(host, port)
        await garbage.send_all(os.urandom(2000))
        # A reset (it closed with our garbage unread) is as good as a clean close.
        with contextlib.suppress(trio.BrokenResourceError):
            assert await garbage.receive_some() == b""

        good = await TcpTransport(ALICE).dial(bob.addresses()[0], BOB.public_key)
        await trio.testing.wait_all_tasks_blocked()
        assert [s.remote_id for s in seen] == [ALICE.public_key]
        for s in (silent, garbage, good):
            await s.aclose()
        nursery.cancel_scope.cancel()


async def test_cancelling_serve_closes_listener_and_handlers() -> None:
    handler_cancelled = trio.Event()

    async def handler(stream: PeerStream) -> None:
        try:
            await stream.receive_some()
        except trio.Cancelled:
            handler_cancelled.set()
            raise

    bob = TcpTransport(BOB)
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as serve_scope:
            await nursery.start(bob.serve, handler)
        address = bob.addresses()[0]
        stream = await TcpTransport(ALICE).dial(address, BOB.public_key)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    del serve_scope
    assert handler_cancelled.is_set()
    assert bob.addresses() == []
    with pytest.raises(TransportError):
        await TcpTransport(ALICE).dial(address, BOB.public_key)
    with pytest.raises(trio.BrokenResourceError):  # no final record: a truncated stream
        await stream.receive_some()
    await stream.aclose()


# --- addresses and registry -------------------------------------------------------------


def test_plugin_is_registered() -> None:
    assert available_transports()["tcp"] == "p2pmsg_tcp.transport:TcpTransport"
    transport = load_transport("tcp", identity=ALICE)
    assert isinstance(transport, TcpTransport)
    assert transport.scheme == "tcp"


@pytest.mark.parametrize(
    ("address", "parsed"),
    [("tcp://127.0.0.1:7420", ("127.0.0.1", 7420)), ("tcp://[::1]:1", ("::1", 1))],
)
def test_parse_address(address: str, parsed: tuple[str, int]) -> None:
    assert parse_address(address) == parsed


@pytest.mark.parametrize(
    "address",
    ["quic://1.2.3.4:5", "tcp://1.2.3.4", "tcp://::1:5", "tcp://h:0", "tcp://h:99999", "tcp://:5"],
)
def test_bad_addresses(address: str) -> None:
    with pytest.raises(TransportError):
        parse_address(address)


async def test_unreachable_address_is_a_transport_error() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        with pytest.raises(TransportError, match="cannot connect"):
            await TcpTransport(ALICE).dial(f"tcp://127.0.0.1:{port}", BOB.public_key)


def test_advertised_addresses_replace_bound_ones() -> None:
    transport = TcpTransport(ALICE, advertise=["tcp://192.0.2.1:7420"])
    assert transport.addresses() == ["tcp://192.0.2.1:7420"]
    with pytest.raises(TransportError):
        TcpTransport(ALICE, advertise=["nonsense"])
