"""Transport throughput on loopback: QUIC, TCP and the memory transport side by side.

Two workloads per transport, each over one authenticated stream (connection set-up
excluded from the timing):

* **bulk entries** -- ``--entries`` signed entries with 200-byte payloads (the
  replication workload), each sent as a 4-byte big-endian length prefix + the
  entry's wire bytes (header + signature) + its payload, batched into ~64 KiB
  ``send_all`` calls; the receiver splits the frames again and counts them.
  Reported as entries/s and MB/s.
* **bulk payload** -- ``--mb`` MB sent in 256 KiB ``send_all`` calls, counted
  until EOF. Reported as MB/s.

Transports: ``quic`` (p2pmsg_quic, ``max_datagram_size=--datagram``), ``tcp``
(p2pmsg_tcp, when importable) and ``memory`` (p2pmsg.net.memory, a perfect
link: no latency, no loss, unlimited bandwidth; the in-process ceiling of the
PeerStream interface). Raw aioquic (both loops of ``_quic_bench.py``) moves the
same payload in the same run; QuicTransport / raw is the figure to watch
(target >= 80 %), as is TCP's payload rate (target >= 100 MB/s).

Rounds alternate the transports so they share the machine's load; each figure is
the median over rounds, each ratio the median of per-round ratios.

Run:  .venv/bin/python benchmarks/bench_transports.py [--entries 20000] [--mb 50]
          [--rounds 3] [--datagram 16000] [--json [PATH]] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Figure, default_json_path, print_table, save_json
from _quic_bench import QUIC_TARGET_RATIO, raw_aioquic
from p2pmsg_quic import QuicSettings, QuicTransport

from p2pmsg.entry import create_entry
from p2pmsg.identity import Identity
from p2pmsg.net.base import PeerStream
from p2pmsg.net.memory import MemoryNetwork

try:
    from p2pmsg_tcp import TcpTransport
except ImportError:  # the TCP plugin is optional
    TcpTransport = None  # type: ignore[assignment,misc]

CHUNK = 256 * 1024
FRAME_BATCH = 64 * 1024
PAYLOAD_SIZE = 200
TCP_TARGET_MB_S = 100.0
BASE_TS = 1_700_000_000_000

def _handler_channel() -> tuple[
    Callable[[PeerStream], object], trio.MemoryReceiveChannel[PeerStream], trio.Event
]:
    send, receive = trio.open_memory_channel[PeerStream](1)
    finished = trio.Event()

    async def handler(stream: PeerStream) -> None:
        await send.send(stream)
        await finished.wait()  # keep the stream open until the benchmark read it

    return handler, receive, finished


@asynccontextmanager
async def quic_pair(datagram: int) -> AsyncIterator[tuple[PeerStream, PeerStream]]:
    settings = QuicSettings(max_datagram_size=datagram)
    server = QuicTransport(identity=Identity.generate(), host="127.0.0.1", settings=settings)
    client = QuicTransport(identity=Identity.generate(), host="127.0.0.1", settings=settings)
    handler, accepted, finished = _handler_channel()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, handler)
        async with client:
            dialed = await client.dial(server.addresses()[0], server.identity.public_key)
            served = await accepted.receive()
            yield dialed, served
            finished.set()
            await dialed.aclose()
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[PeerStream, PeerStream]]:
    assert TcpTransport is not None
    bob = Identity.generate()
    server = TcpTransport(bob)
    handler, accepted, finished = _handler_channel()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, handler)
        dialed = await TcpTransport(Identity.generate()).dial(
            server.addresses()[0], bob.public_key
        )
        served = await accepted.receive()
        yield dialed, served
        finished.set()
        await dialed.aclose()
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def memory_pair() -> AsyncIterator[tuple[PeerStream, PeerStream]]:
    net = MemoryNetwork()  # default LinkConditions: a perfect, instant link
    a, b = Identity.generate(), Identity.generate()
    server = net.transport("b", b.public_key)
    handler, accepted, finished = _handler_channel()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, handler)
        dialed = await net.transport("a", a.public_key).dial("memory://b", b.public_key)
        served = await accepted.receive()
        yield dialed, served
        finished.set()
        await dialed.aclose()
        nursery.cancel_scope.cancel()


PairFactory = Callable[[], AbstractAsyncContextManager[tuple[PeerStream, PeerStream]]]


# -- workloads ---------------------------------------------------------------------------


def make_entry_batches(count: int) -> tuple[list[bytes], int]:
    """Length-prefixed signed entries, grouped into ~64 KiB send_all batches."""
    ident, topic = Identity.generate(), os.urandom(32)
    batches: list[bytes] = []
    batch = bytearray()
    prev: bytes | None = None
    for i in range(count):
        payload = os.urandom(PAYLOAD_SIZE)
        entry = create_entry(ident, topic, i + 1, prev, BASE_TS + i, payload)
        prev = entry.id
        wire = entry.to_bytes() + payload  # header + signature, then the payload
        batch += len(wire).to_bytes(4, "big") + wire
        if len(batch) >= FRAME_BATCH:
            batches.append(bytes(batch))
            batch.clear()
    if batch:
        batches.append(bytes(batch))
    return batches, sum(len(b) for b in batches)


async def _count_frames(stream: PeerStream) -> int:
    """Split length-prefixed frames until EOF; the number of frames."""
    buf = bytearray()
    frames = 0
    while chunk := await stream.receive_some(1 << 20):
        buf += chunk
        pos = 0
        while len(buf) - pos >= 4:
            size = int.from_bytes(buf[pos : pos + 4], "big")
            if len(buf) - pos - 4 < size:
                break
            pos += 4 + size
            frames += 1
        del buf[:pos]
    if buf:
        raise RuntimeError("stream ended inside a frame")
    return frames


async def _count_bytes(stream: PeerStream) -> int:
    total = 0
    while chunk := await stream.receive_some(1 << 20):
        total += len(chunk)
    return total


async def _transfer(
    pair: PairFactory,
    pieces: Sequence[bytes | memoryview],
    count: Callable[[PeerStream], Awaitable[int]],
) -> tuple[float, int]:
    """(wall seconds, what ``count`` returned) to send ``pieces`` then EOF."""
    async with pair() as (dialed, served):
        result: list[int] = []

        async def receive() -> None:
            result.append(await count(served))

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            for piece in pieces:
                await dialed.send_all(piece)
            await dialed.send_eof()
        elapsed = time.perf_counter() - start
    return elapsed, result[0]


def _payload_pieces(payload: bytes) -> list[memoryview]:
    view = memoryview(payload)
    return [view[i : i + CHUNK] for i in range(0, len(view), CHUNK)]


# -- main ----------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--mb", type=float, default=50.0, help="payload in MB (10^6 bytes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--datagram", type=int, default=16000,
                        help="QUIC max_datagram_size (loopback allows large ones)")
    parser.add_argument("--json", nargs="?", const="", default=None, help="save results as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2,000 entries, 3 MB, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.entries, args.mb, args.rounds = 2_000, 3.0, 1

    size = int(args.mb * 1_000_000)
    payload = os.urandom(size)
    batches, entry_bytes = make_entry_batches(args.entries)
    pairs: dict[str, PairFactory] = {
        "QUIC": partial(quic_pair, args.datagram),
        "memory": memory_pair,
    }
    if TcpTransport is not None:
        pairs["TCP"] = tcp_pair

    entry_s: dict[str, list[float]] = {name: [] for name in pairs}
    payload_s: dict[str, list[float]] = {name: [] for name in pairs}
    raw_s: list[float] = []
    raw_batched_s: list[float] = []
    for _ in range(args.rounds):
        raw_s.append(trio.run(raw_aioquic, payload, args.datagram))
        raw_batched_s.append(trio.run(partial(raw_aioquic, batched=True), payload, args.datagram))
        for name, pair in pairs.items():
            seconds, frames = trio.run(_transfer, pair, batches, _count_frames)
            assert frames == args.entries, f"{name}: {frames} of {args.entries} entries arrived"
            entry_s[name].append(seconds)
            seconds, received = trio.run(_transfer, pair, _payload_pieces(payload), _count_bytes)
            assert received == size, f"{name}: {received} of {size} bytes arrived"
            payload_s[name].append(seconds)

    mb = size / 1e6
    raw_rate = mb / _median(raw_s)
    raw_batched_rate = mb / _median(raw_batched_s)
    figures = [
        Figure("raw aioquic per-datagram (limit)", raw_rate, "MB/s", size),
        Figure("raw aioquic batched (limit)", raw_batched_rate, "MB/s", size),
    ]
    for name in pairs:
        rate = mb / _median(payload_s[name])
        figure = Figure(f"{name} bulk payload", rate, "MB/s", size)
        if name == "QUIC":
            ratios = [r / q for q, r in zip(payload_s[name], raw_batched_s, strict=True)]
            plain = [r / q for q, r in zip(payload_s[name], raw_s, strict=True)]
            figure.ratio = _median(ratios)
            figure.limit_name = "raw batched"
            figure.target = f">= {QUIC_TARGET_RATIO:.0%} of raw aioquic"
            figure.met = figure.ratio >= QUIC_TARGET_RATIO
            figure.note = (
                f"vs the per-datagram raw loop: {_median(plain):.0%}; per-round ratios "
                f"to batched raw: {', '.join(f'{r:.0%}' for r in ratios)}"
            )
            figure.extra = {"ratio_raw_per_datagram": _median(plain)}
        elif name == "TCP":
            figure.target = f">= {TCP_TARGET_MB_S:.0f} MB/s"
            figure.met = rate >= TCP_TARGET_MB_S
        figures.append(figure)
    for name in pairs:
        seconds = _median(entry_s[name])
        frame_rate = entry_bytes / seconds / 1e6
        figures.append(Figure(
            f"{name} bulk entries", args.entries / seconds, "entries/s", args.entries,
            note=f"{frame_rate:,.1f} MB/s of frames "
                 f"({entry_bytes / args.entries:.0f} B per framed entry)",
            extra={"mb_s": frame_rate},
        ))
    if TcpTransport is None:
        print("TCP: p2pmsg_tcp is not importable; skipped")
    title = (f"transports on loopback: {args.entries:,} entries, {mb:.0f} MB payload, "
             f"QUIC datagrams {args.datagram} B, median of {args.rounds} rounds")
    print_table(title, figures)
    if args.json is not None:
        path = save_json(
            args.json or default_json_path("bench_transports"),
            "bench_transports",
            figures,
            {"entries": args.entries, "mb": args.mb, "rounds": args.rounds,
             "datagram": args.datagram, "chunk": CHUNK, "frame_batch": FRAME_BATCH},
        )
        print(f"saved {path}")


if __name__ == "__main__":
    main()
