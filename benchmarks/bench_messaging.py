"""Messenger between two nodes on loopback: messages/s, delivery latency, attachments.

Two organisations, one device node each (alice at the clinic, bob at the lab), one
cross-organisation room; bob's node dials alice's. Transports: ``quic``
(p2pmsg_quic on 127.0.0.1, ``max_datagram_size=--datagram``) and ``memory``
(p2pmsg.net.memory, a perfect in-process link: the reference without a network).
Each phase runs on a fresh pair of nodes (MemoryStore, BlobStore in a temp dir),
so earlier messages do not slow later phases.

Figures per transport:

* **messages sent / delivered at N** -- one room grows to each size N of
  ``--sizes`` (default 100, 500, 2000 messages); the last ``--window`` messages
  before it reaches N are timed: alice calls ``send_text`` in a loop (each seals
  the text with the epoch key, signs and stores an entry); *sent* is that loop's
  rate, *delivered* is the window over the time until bob's ``live()`` has
  yielded every one of them decrypted. Messages before the window fill the room
  (sent the same way, delivered before the window starts, not timed). A rate
  that falls with N means some call costs O(room size). ``--watcher`` measures
  it again with bob's messenger running :func:`open_messenger`'s watcher (as the
  daemon and the HTTP API do: redaction enforcement after every new entry).
* **one message end to end** -- ``--latency`` messages sent one at a time: from
  before ``send_text`` until bob's ``live()`` yields it (p50 / p99).
* **attachment** -- a ``--mb`` MB file: alice's ``send_file`` (encrypt + chunk
  into her blob store + the message), then bob's ``download`` (fetch every chunk
  over the session, verify, decrypt to a file). The download rate is compared with
  the **raw transport** rate measured in the same run: the same bytes in 256 KiB
  ``send_all`` calls through one PeerStream of the same transport
  (bench_transports.py's bulk payload workload). Target: download >= 80 % of raw.

Run:  .venv/bin/python benchmarks/bench_messaging.py [--sizes 100,500,2000] [--window 50]
          [--watcher] [--rate-only] [--latency 200] [--mb 50] [--datagram 16000]
          [--transports quic,memory] [--json [PATH]] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Figure, Stopwatch, default_json_path, print_table, save_json, timed
from bench_transports import (
    PairFactory,
    _count_bytes,
    _payload_pieces,
    _transfer,
    memory_pair,
    quic_pair,
)
from p2pmsg_quic import QuicSettings, QuicTransport

from p2pmsg.blobs import BlobStore
from p2pmsg.certs import Role, issue_certificate
from p2pmsg.identity import Identity
from p2pmsg.messaging import Attachment, MemberSpec, Text
from p2pmsg.messenger import Messenger, messenger_topics, org_control_items, plan_room
from p2pmsg.net.base import PeerHint, Transport
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.node import Node, NodeConfig, serve_node
from p2pmsg.policy import AllowAllPolicy
from p2pmsg.store.memory import MemoryStore

ATTACHMENT_TARGET = 0.80
"""The attachment download should reach this share of raw transport throughput."""


@dataclass
class Pair:
    alice: Messenger
    bob: Messenger
    topic: bytes


TransportFactory = Callable[[str, Identity], Transport]


def _quic_factory(datagram: int) -> TransportFactory:
    settings = QuicSettings(max_datagram_size=datagram)

    def make(name: str, identity: Identity) -> Transport:
        return QuicTransport(identity=identity, host="127.0.0.1", port=0, settings=settings)

    return make


def _memory_factory() -> TransportFactory:
    net = MemoryNetwork()

    def make(name: str, identity: Identity) -> Transport:
        return net.transport(name, identity.public_key)

    return make


@asynccontextmanager
async def messenger_pair(make_transport: TransportFactory, blob_dir: Path,
                         watcher: bool = False) -> AsyncIterator[Pair]:
    """Two certified device nodes with a created room both can read; bob dials alice.

    ``watcher``: bob's messenger runs :func:`open_messenger`'s watcher (as in the
    daemon and the HTTP API: wake-ups for every topic, redaction enforcement)."""
    now_ms = int(time.time() * 1000)
    clinic, lab = Identity.generate(), Identity.generate()
    alice_id, bob_id = Identity.generate(), Identity.generate()
    room = plan_room(alice_id, clinic.public_key,
                     [MemberSpec(bob_id.public_key, lab.public_key)], created_ms=now_ms)
    topics = messenger_topics([clinic.public_key, lab.public_key], [room.topic])

    def config(name: str, me: Identity, root: Identity) -> NodeConfig:
        store = MemoryStore()
        cert = issue_certificate(root, me.public_key, Role.ADMIN, name, 0, 2**50)
        items = org_control_items(root, [cert], start_ms=now_ms - 10_000)
        store.append([e for e, _ in items], {e.id: p for e, p in items})
        return NodeConfig(identity=me, store=store, topics=topics, policy=AllowAllPolicy(),
                          transports=[make_transport(name, me)], name=name,
                          reconnect_initial=0.05, reconnect_max=0.5,
                          blob_store=BlobStore(blob_dir / name, durable=False))

    async with trio.open_nursery() as nursery:
        alice_cfg = config("alice", alice_id, clinic)
        alice_node: Node = await nursery.start(serve_node, alice_cfg)
        bob_node: Node = await nursery.start(serve_node, config("bob", bob_id, lab))
        bob_node.add_peer(PeerHint(alice_node.id, alice_cfg.transports[0].addresses()[0]))
        orgs = [clinic.public_key, lab.public_key]
        alice = Messenger(alice_node, clinic.public_key, orgs=orgs)
        bob = Messenger(bob_node, lab.public_key, orgs=orgs)
        if watcher:  # what open_messenger runs around the block
            await nursery.start(bob._watch_all)
        with trio.fail_after(60):
            await alice.wait_certified([bob_id.public_key])
            await bob.wait_certified([alice_id.public_key])
            await alice.create_room_from(room)
            while not any(r.topic == room.topic and r.joined for r in bob.rooms()):
                await trio.sleep(0.005)
        yield Pair(alice, bob, room.topic)
        nursery.cancel_scope.cancel()


class Arrivals:
    """Follows bob's ``live()``: when each message id first arrived decrypted."""

    def __init__(self) -> None:
        self.at: dict[bytes, float] = {}
        self._waiting: dict[bytes, trio.Event] = {}
        self.changed = trio.Event()

    async def follow(self, m: Messenger, topic: bytes,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        agen = m.live(topic)
        task_status.started()
        async for msg in agen:
            if msg.id in self.at or not isinstance(msg.content, Text):
                continue
            self.at[msg.id] = time.perf_counter()
            event = self._waiting.pop(msg.id, None)
            if event is not None:
                event.set()
            self.changed.set()

    async def wait_for(self, msg_id: bytes) -> float:
        if msg_id not in self.at:
            event = self._waiting.setdefault(msg_id, trio.Event())
            await event.wait()
        return self.at[msg_id]

    async def wait_count(self, count: int) -> None:
        while len(self.at) < count:
            self.changed = trio.Event()
            await self.changed.wait()


@dataclass
class Window:
    """The timed window of messages ending at room size ``size``."""

    size: int
    count: int
    watcher: bool
    sent: Stopwatch
    delivered: float
    """Seconds from the window's first send to bob's live() yielding its last message."""


async def throughput(make: TransportFactory, blob_dir: Path, sizes: list[int],
                     window: int, watcher: bool = False) -> list[Window]:
    """One room grown to each of ``sizes``; the last ``window`` messages before
    each size are timed (sent in a loop, then waited for at bob)."""
    results: list[Window] = []
    async with messenger_pair(make, blob_dir, watcher) as pair, \
            trio.open_nursery() as nursery:
        arrivals = Arrivals()
        await nursery.start(arrivals.follow, pair.bob, pair.topic)
        total = 0

        async def send(count: int) -> None:
            nonlocal total
            for _ in range(count):
                await pair.alice.send_text(pair.topic, f"Vitalwerte {total}: RR 120/80")
                total += 1

        for size in sorted(set(sizes)):
            count = min(window, size - total)
            with trio.fail_after(3600):
                await send(size - count - total)  # fill, untimed
                await arrivals.wait_count(total)
            if count <= 0:
                continue
            with timed() as sent:
                start = time.perf_counter()
                await send(count)
            with trio.fail_after(600):
                await arrivals.wait_count(total)
            results.append(Window(size, count, watcher, sent,
                                  max(arrivals.at.values()) - start))
        nursery.cancel_scope.cancel()
    return results


async def latency(make: TransportFactory, blob_dir: Path, count: int) -> list[float]:
    """Seconds from before ``send_text`` to bob's live() yielding it, one at a time."""
    samples: list[float] = []
    async with messenger_pair(make, blob_dir) as pair, trio.open_nursery() as nursery:
        arrivals = Arrivals()
        await nursery.start(arrivals.follow, pair.bob, pair.topic)
        for i in range(count):
            start = time.perf_counter()
            msg_id = await pair.alice.send_text(pair.topic, f"Nachricht {i}")
            with trio.fail_after(60):
                arrived = await arrivals.wait_for(msg_id)
            samples.append(arrived - start)
        nursery.cancel_scope.cancel()
    return samples


async def attachment(make: TransportFactory, blob_dir: Path, data: bytes,
                     ) -> tuple[Stopwatch, Stopwatch]:
    """(send_file, download) stopwatches for ``data`` from alice to bob."""
    async with messenger_pair(make, blob_dir) as pair:
        with timed() as put:
            msg_id = await pair.alice.send_file(pair.topic, data, kind="video",
                                                mime="video/mp4")
        with trio.fail_after(60):
            while not any(x.id == msg_id for x in pair.bob.messages(pair.topic)):
                await trio.sleep(0.005)
        message = next(x for x in pair.bob.messages(pair.topic) if x.id == msg_id)
        assert isinstance(message.content, Attachment)
        dest = blob_dir / "downloaded.bin"
        with timed() as fetch, trio.fail_after(600):
            written = await pair.bob.download(message, dest)
        assert written == len(data), f"downloaded {written} of {len(data)} bytes"
        assert dest.read_bytes() == data, "downloaded file differs"
    return put, fetch


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _window_figures(label: str, windows: list[Window]) -> list[Figure]:
    figures: list[Figure] = []
    for w in windows:
        label_w = f"{label} + watcher" if w.watcher else label
        figures += [
            Figure(f"{label_w} sent, room of {w.size:,}", w.sent.rate(w.count), "msg/s",
                   w.count, cpu_value=w.sent.cpu_rate(w.count), extra={"room_size": w.size}),
            Figure(f"{label_w} delivered, room of {w.size:,}",
                   w.count / w.delivered, "msg/s", w.count,
                   note=f"live, decrypted: last of {w.count} seen by the receiver "
                        f"{w.delivered:.2f} s after the first send", extra={"room_size": w.size}),
        ]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", default="100,500,2000",
                        help="room sizes (messages) at which messages/s is measured")
    parser.add_argument("--window", type=int, default=50,
                        help="messages timed just before each room size")
    parser.add_argument("--messages", type=int, default=None,
                        help="shorthand for --sizes N (one size)")
    parser.add_argument("--latency", type=int, default=200,
                        help="texts sent one at a time for p50/p99")
    parser.add_argument("--mb", type=float, default=50.0,
                        help="attachment size in MB (10^6 bytes)")
    parser.add_argument("--datagram", type=int, default=16000,
                        help="QUIC max_datagram_size (loopback allows large ones)")
    parser.add_argument("--transports", default="quic,memory")
    parser.add_argument("--json", nargs="?", const="", default=None, help="save results as JSON")
    parser.add_argument("--watcher", action="store_true",
                        help="also measure messages/s with the receiver running "
                             "open_messenger's watcher (as the daemon and HTTP API do)")
    parser.add_argument("--rate-only", action="store_true",
                        help="only the messages/s figures (no latency, no attachment)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: sizes 10 and 30, 20 latency samples, 2 MB")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.window, args.latency, args.mb = "10,30", 10, 20, 2.0
    if args.messages is not None:
        args.sizes = str(args.messages)
    try:
        sizes = sorted({int(n) for n in args.sizes.split(",") if n.strip()})
    except ValueError:
        parser.error("--sizes takes comma-separated message counts")
    if not sizes or sizes[0] < 1 or args.window < 1:
        parser.error("--sizes and --window must be positive")

    makers: dict[str, Callable[[], TransportFactory]] = {
        "quic": partial(_quic_factory, args.datagram), "memory": _memory_factory}
    raw_pairs: dict[str, PairFactory] = {
        "quic": partial(quic_pair, args.datagram), "memory": memory_pair}
    names = [n.strip() for n in args.transports.split(",") if n.strip()]
    for name in names:
        if name not in makers:
            parser.error(f"unknown transport {name!r} (quic, memory)")

    size = int(args.mb * 1_000_000)
    data = os.urandom(size)
    mb = size / 1e6
    figures: list[Figure] = []
    for name in names:
        label = "QUIC" if name == "quic" else name
        with tempfile.TemporaryDirectory(prefix="bench-messaging-") as tmp:
            tmp_dir = Path(tmp)
            windows = trio.run(throughput, makers[name](), tmp_dir / "t", sizes,
                               args.window)
            if args.watcher:
                windows += trio.run(throughput, makers[name](), tmp_dir / "w", sizes,
                                    args.window, True)
            if args.rate_only:
                figures += _window_figures(label, windows)
                continue
            samples = trio.run(latency, makers[name](), tmp_dir / "l", args.latency)
            raw_s, received = trio.run(_transfer, raw_pairs[name], _payload_pieces(data),
                                       _count_bytes)
            assert received == size, f"raw {name}: {received} of {size} bytes arrived"
            put, fetch = trio.run(attachment, makers[name](), tmp_dir / "a", data)
        put_s, fetch_s = put.seconds, fetch.seconds
        raw_rate, fetch_rate = mb / raw_s, mb / fetch_s
        ratio = fetch_rate / raw_rate
        p50, p99 = _percentile(samples, 0.50), _percentile(samples, 0.99)
        figures += _window_figures(label, windows)
        figures += [
            Figure(f"{label} one message end to end p50", p50 * 1000, "ms", len(samples),
                   extra={"mean_ms": statistics.fmean(samples) * 1000}),
            Figure(f"{label} one message end to end p99", p99 * 1000, "ms", len(samples),
                   extra={"max_ms": max(samples) * 1000}),
            Figure(f"{label} raw transport bulk (limit)", raw_rate, "MB/s", size),
            Figure(f"{label} attachment send_file", mb / put_s, "MB/s", size,
                   cpu_value=mb / put.cpu_seconds if put.cpu_seconds > 0 else None,
                   note="encrypt + chunk into the sender's blob store + the message"),
            Figure(f"{label} attachment download", fetch_rate, "MB/s", size,
                   cpu_value=mb / fetch.cpu_seconds if fetch.cpu_seconds > 0 else None,
                   ratio=ratio, limit_name="raw",
                   target=f">= {ATTACHMENT_TARGET:.0%} of raw transport",
                   met=ratio >= ATTACHMENT_TARGET,
                   note=f"send_file + download together: {mb / (put_s + fetch_s):,.1f} MB/s "
                        f"= {mb / (put_s + fetch_s) / raw_rate:.0%} of raw",
                   extra={"send_file_plus_download_mb_s": mb / (put_s + fetch_s)}),
        ]
    title = (f"messenger, 2 nodes on loopback: rooms of {', '.join(f'{n:,}' for n in sizes)} "
             f"messages ({args.window} timed each), "
             f"{args.latency} one-at-a-time, {mb:.0f} MB attachment, "
             f"QUIC datagrams {args.datagram} B")
    print_table(title, figures)
    if args.json is not None:
        path = save_json(
            args.json or default_json_path("bench_messaging"), "bench_messaging", figures,
            {"sizes": sizes, "window": args.window, "latency": args.latency, "mb": args.mb,
             "datagram": args.datagram, "transports": names, "rate_only": args.rate_only})
        print(f"saved {path}")


if __name__ == "__main__":
    main()
