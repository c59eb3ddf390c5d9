"""Where the CPU of an attachment download goes: per-function CPU per MB (a diagnostic).

Runs bench_messaging.py's attachment phase once (two nodes in one process, one
trio thread; alice ``send_file``s, bob ``download``s) and wraps the functions of the
blob path, the BLOB framing and the QUIC driver with ``time.thread_time()``
counters: exclusive CPU time of the trio thread per MB downloaded. A profiler
distorts the Python-heavy QUIC code by ~2x; these wrappers cost ~1 us per call.
``--raw`` measures the raw QUIC bulk transfer the benchmark compares against, with
the same QUIC wrappers. ``--two-process`` runs the sending node (or the raw
sender) in a child process, as bench_messaging.py does by default: the counters
then show the receiver alone, and "idle" is the wall time its thread waited.
Not a benchmark (no figures table, not run by the smoke
test); docs/benchmarks.md ("attachment download") has the findings.

Run:  .venv/bin/python benchmarks/profile_attachment.py [--mb 50] [--raw] [--memory]
          [--two-process [--sender]]
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_messaging as bm
import p2pmsg_quic._connection as quic_connection
import p2pmsg_quic._stream as quic_stream
from bench_transports import _count_bytes, _payload_pieces, _transfer, quic_pair

from p2pmsg.blobs import store as blob_store
from p2pmsg.blobs import transfer as blob_transfer
from p2pmsg.messaging import Attachment
from p2pmsg.node import blobs as node_blobs
from p2pmsg.node import session as node_session
from p2pmsg.sync import connection as sync_connection

spent: collections.Counter[str] = collections.Counter()
calls: collections.Counter[str] = collections.Counter()
_stack: list[str] = []


def _wrap(owner: Any, name: str, label: str) -> None:
    """Count the exclusive thread CPU of ``owner.name`` under ``label``."""
    inner: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        _stack.append(label)
        try:
            return inner(*args, **kwargs)
        finally:
            _stack.pop()
            took = time.thread_time() - start
            spent[label] += took
            calls[label] += 1
            if _stack:
                spent[_stack[-1]] -= took

    setattr(owner, name, wrapper)


def _instrument(blob_path: bool) -> None:
    _wrap(quic_connection.ConnectionDriver, "datagram_received", "quic: datagram_received")
    _wrap(quic_connection.ConnectionDriver, "transmit", "quic: transmit")
    _wrap(quic_connection.ConnectionDriver, "send", "quic: driver.send (rest)")
    _wrap(quic_stream.QuicPeerStream, "_take", "quic: stream._take")
    if not blob_path:
        return
    store, machine, channel = blob_store.BlobStore, blob_transfer.BlobTransfer, \
        node_blobs.BlobChannel
    for name, label in [
        ("prepare_chunks", "recv: store.prepare_chunks"),
        ("write_chunks", "recv: store.write_chunks (hash + temp files)"),
        ("sync_chunks", "recv: store.sync_chunks"),
        ("commit_chunks", "recv: store.commit_chunks"),
        ("export", "recv: export (read + decrypt + write)"),
        ("get", "send: store.get"),
        ("room_of", "send: store.room_of"),
    ]:
        _wrap(store, name, label)
    for name, label in [
        ("receive_data", "both: transfer.receive_data (DATA decode)"),
        ("_on_data", "recv: transfer._on_data"),
        ("_queue_message", "both: transfer._queue_message (DATA encode)"),
    ]:
        _wrap(machine, name, label)
    _wrap(channel, "take", "send: channel.take")
    _wrap(channel, "receive", "both: channel.receive (rest)")
    _wrap(sync_connection.SyncConnection, "receive_data", "both: sync.receive_data (BLOB)")
    _wrap(sync_connection.SyncConnection, "encode_blob", "send: sync.encode_blob")
    _wrap(node_session.Session, "_pending", "send: session._pending (rest)")


async def _download(make: bm.TransportFactory, blob_dir: Path, data: bytes,
                    out: dict[str, float]) -> None:
    async with bm.messenger_pair(make, blob_dir) as pair:
        msg_id = await pair.alice.send_file(pair.topic, data, kind="video", mime="video/mp4")
        while not any(x.id == msg_id for x in pair.bob.messages(pair.topic)):
            await trio.sleep(0.005)
        message = next(x for x in pair.bob.messages(pair.topic) if x.id == msg_id)
        assert isinstance(message.content, Attachment)
        spent.clear()
        calls.clear()
        wall, cpu = time.perf_counter(), time.thread_time()
        written = await pair.bob.download(message, blob_dir / "downloaded.bin")
        out["wall"], out["cpu"] = time.perf_counter() - wall, time.thread_time() - cpu
        assert written == len(data)


def _count_download(out: dict[str, float]) -> None:
    """Reset the counters when Messenger.download starts; keep its wall and CPU."""
    inner = bm.Messenger.download

    @functools.wraps(inner)
    async def download(self: bm.Messenger, *args: Any, **kwargs: Any) -> int:
        spent.clear()
        calls.clear()
        wall, cpu = time.perf_counter(), time.thread_time()
        written = await inner(self, *args, **kwargs)
        out["wall"], out["cpu"] = time.perf_counter() - wall, time.thread_time() - cpu
        return written

    bm.Messenger.download = download  # type: ignore[method-assign]


def sender_hooks() -> tuple[Callable[[], None], Callable[[], None]]:
    """For bench_messaging's sender child (``--two-process --sender``): instrument
    this process now; (reset the counters, print them) around the download."""
    _instrument(blob_path=True)
    cpu = [0.0]

    def start() -> None:
        spent.clear()
        calls.clear()
        cpu[0] = time.thread_time()

    def stop() -> None:
        took = time.thread_time() - cpu[0]
        print(f"sender trio-thread CPU {took * 1000:.0f} ms (per MB: divide by the size)")
        for label, seconds in spent.most_common():
            print(f"  {label:48s} {seconds * 1000:8.1f} ms  ({calls[label]} calls)")
        print(f"  {'rest':48s} {(took - sum(spent.values())) * 1000:8.1f} ms", flush=True)

    return start, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--raw", action="store_true", help="raw QUIC bulk transfer instead")
    parser.add_argument("--memory", action="store_true",
                        help="download over the memory transport (the blob path alone)")
    parser.add_argument("--datagram", type=int, default=16000)
    parser.add_argument("--two-process", action="store_true",
                        help="the sender in a child process: counters show the receiver")
    parser.add_argument("--sender", action="store_true",
                        help="with --two-process: the sending child prints its counters too")
    args = parser.parse_args()
    if args.sender:
        os.environ["PROFILE_ATTACHMENT_SENDER"] = "1"
    _instrument(blob_path=not args.raw)
    data = os.urandom(int(args.mb * 1_000_000))
    mb = len(data) / 1e6
    out: dict[str, float] = {}
    if args.two_process:
        with tempfile.TemporaryDirectory(prefix="profile-attachment-") as tmp:
            data_path = Path(tmp) / "data.bin"
            data_path.write_bytes(data)
            if args.raw:
                run = trio.run(bm.raw_two_process, args.datagram, data_path, len(data))
                out["wall"], out["cpu"] = run.seconds, run.receiver_cpu
            else:
                _count_download(out)
                trio.run(bm.attachment_two_process, args.datagram, Path(tmp), data_path,
                         len(data))
    elif args.raw:
        cpu = time.thread_time()
        out["wall"], received = trio.run(_transfer, functools.partial(quic_pair, args.datagram),
                                         _payload_pieces(data), _count_bytes)
        out["cpu"] = time.thread_time() - cpu
        assert received == len(data)
    else:
        make = bm._memory_factory() if args.memory else bm._quic_factory(args.datagram)
        with tempfile.TemporaryDirectory(prefix="profile-attachment-") as tmp:
            trio.run(_download, make, Path(tmp), data, out)
    what = "raw QUIC" if args.raw else ("download (memory)" if args.memory else "download")
    print(f"{what}: {mb / out['wall']:.1f} MB/s wall; trio-thread CPU "
          f"{out['cpu'] * 1000 / mb:.2f} ms per MB"
          + (f" (receiver; idle {(out['wall'] - out['cpu']) * 1000 / mb:.2f} ms per MB)"
             if args.two_process else ""))
    total = 0.0
    for label, seconds in spent.most_common():
        total += seconds
        print(f"  {label:48s} {seconds * 1000 / mb:6.2f} ms/MB  ({calls[label]} calls)")
    print(f"  {'rest (trio, sockets, sqlite, other)':48s} "
          f"{(out['cpu'] - total) * 1000 / mb:6.2f} ms/MB")


if __name__ == "__main__":
    main()
