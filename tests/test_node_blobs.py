"""Attachments between nodes over the memory transport, in virtual time.

Blob transfer runs inside the sync session (BLOB frames, docs/attachments.md §6).
Covered: a file arrives byte-identical with progress; a transfer cut mid-way
resumes on another peer fetching only the missing chunks; a peer not authorised
for the blob's room gets nothing; a peer serving corrupt chunks is cut off and no
chunk of it is stored.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
import trio
import trio.testing
from node_helpers import T1, config, ident, start

from p2pmsg.blobs import BlobStore, BlobUnavailableError
from p2pmsg.errors import LocalProtocolError
from p2pmsg.net.base import PeerHint
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.node import Node, NodeConfig
from p2pmsg.node.blobs import BlobChannel
from p2pmsg.policy import TopicPolicy

ROOM = hashlib.blake2b(b"room-with-files", digest_size=32).digest()
OTHER_ROOM = hashlib.blake2b(b"another-room", digest_size=32).digest()


def with_blobs(cfg: NodeConfig, path: Path) -> NodeConfig:
    cfg.blob_store = BlobStore(path, durable=False)
    return cfg


def export(node: Node, root: bytes, key: bytes) -> bytes:
    assert node.blob_store is not None
    out = io.BytesIO()
    node.blob_store.export(root, key, out)
    return out.getvalue()


async def test_blob_fetched_byte_identical_with_progress(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    net = MemoryNetwork()
    data = os.urandom(3 * 1024 * 1024 + 12345)
    async with trio.open_nursery() as nursery:
        a = await start(nursery, with_blobs(config(net, "a"), tmp_path / "a"))
        b = await start(nursery, with_blobs(config(net, "b", peers=("a",)), tmp_path / "b"))
        manifest, key = await a.put_blob(data, ROOM)
        seen: list[tuple[int, int]] = []
        store_b = b.blob_store
        assert store_b is not None

        def progress(done: int, total: int) -> None:
            # chunks are written in batches; progress counts only stored ones
            held = manifest.chunk_count - len(store_b.missing(manifest.root_hash))
            assert min(held * manifest.chunk_size, total) >= done
            seen.append((done, total))

        with trio.fail_after(60):
            await b.fetch_blob(manifest.root_hash, ROOM, progress=progress)
        assert export(b, manifest.root_hash, key) == data
        assert seen[-1] == (len(data), len(data))
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)
        assert b.statistics().blob_chunks_received == manifest.chunk_count
        assert b.statistics().sent_by_type.get("BLOB", 0) > 0
        assert b.blob_store is not None
        assert b.blob_store.roots(room=ROOM) == [manifest.root_hash]
        # already held: no transfer, progress reports completion at once
        again: list[tuple[int, int]] = []
        await b.fetch_blob(manifest.root_hash, ROOM, progress=lambda d, t: again.append((d, t)))
        assert again == [(len(data), len(data))]
        assert b.statistics().blob_chunks_received == manifest.chunk_count
        nursery.cancel_scope.cancel()


async def test_serving_reads_requested_objects_only_as_the_writer_drains(
        autojump_clock: trio.testing.MockClock, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A requester asks for every chunk at once (its window allows 8 MiB); the
    server reads them from disk only while its backlog is under the budget, so its
    memory per session is budget + one object, not everything requested."""
    budget = 256 * 1024
    monkeypatch.setattr(BlobChannel, "serve_budget", budget)
    net = MemoryNetwork()
    data = os.urandom(5 * 1024 * 1024)
    async with trio.open_nursery() as nursery:
        a = await start(nursery, with_blobs(config(net, "a"), tmp_path / "a"))
        b = await start(nursery, with_blobs(config(net, "b", peers=("a",)), tmp_path / "b"))
        manifest, key = await a.put_blob(data, ROOM)
        with trio.fail_after(60):
            await b.fetch_blob(manifest.root_hash, ROOM)
        assert export(b, manifest.root_hash, key) == data
        channel = a._sessions[b.id].blobs
        assert channel is not None and manifest.chunk_size == 1024 * 1024
        assert budget <= channel.max_out_size < budget + manifest.chunk_size + 4096
        nursery.cancel_scope.cancel()


async def test_cut_transfer_resumes_on_other_peer_with_missing_chunks_only(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    net = MemoryNetwork()
    data = os.urandom(4 * 1024 * 1024)
    async with trio.open_nursery() as nursery:
        a = await start(nursery, with_blobs(config(net, "a"), tmp_path / "a"))
        c = await start(nursery, with_blobs(config(net, "c", peers=("a",)), tmp_path / "c"))
        manifest, key = await a.put_blob(data, ROOM)
        root, n = manifest.root_hash, manifest.chunk_count
        with trio.fail_after(60):
            await c.fetch_blob(root, ROOM)  # c now holds a full copy too
        served_by_c_before = c.statistics().blob_objects_served

        b = await start(nursery, with_blobs(config(net, "b", peers=("a",)), tmp_path / "b"))
        assert b.blob_store is not None
        cut_done = trio.Event()

        def progress(done: int, total: int) -> None:
            if done >= total // 2 and not cut_done.is_set():
                net.cut("a", "b")  # mid-transfer: chunks in flight are lost
                cut_done.set()

        fetched = trio.Event()

        async def fetch() -> None:
            await b.fetch_blob(root, ROOM, progress=progress)
            fetched.set()

        with trio.fail_after(120):
            nursery.start_soon(fetch)
            await cut_done.wait()
            while ident("a").public_key in b.connected_peers():
                await trio.sleep(0.01)
            missing_at_cut = b.blob_store.missing(root)
            assert 0 < len(missing_at_cut) < n
            b.add_peer(PeerHint(c.id, "memory://c"))
            await fetched.wait()
        assert export(b, root, key) == data
        # c served exactly the chunks b still lacked: nothing fetched twice
        assert c.statistics().blob_objects_served - served_by_c_before == len(missing_at_cut)
        assert b.statistics().blob_chunks_received == n
        nursery.cancel_scope.cancel()


async def test_peer_not_authorised_for_room_cannot_fetch(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    net = MemoryNetwork()
    b_id, d_id = ident("b").public_key, ident("d").public_key
    # d may replicate T1 with a (so it connects) but may not read ROOM
    policy_a = TopicPolicy({T1: [b_id, d_id], ROOM: [b_id]})
    data = os.urandom(300_000)
    async with trio.open_nursery() as nursery:
        a = await start(nursery, with_blobs(config(net, "a", policy=policy_a), tmp_path / "a"))
        manifest, key = await a.put_blob(data, ROOM)
        d = await start(nursery, with_blobs(config(net, "d", peers=("a",)), tmp_path / "d"))
        with trio.fail_after(60), pytest.raises(BlobUnavailableError):
            await d.fetch_blob(manifest.root_hash, ROOM)
        assert d.blob_store is not None
        assert d.blob_store.get_manifest(manifest.root_hash) is None
        assert d.blob_store.roots() == []
        # naming another room it may read changes nothing: a serves by the blob's room
        with trio.fail_after(60), pytest.raises(BlobUnavailableError):
            await d.fetch_blob(manifest.root_hash, T1)
        assert a.statistics().blob_objects_served == 0
        # the authorised member gets it from the same node
        b = await start(nursery, with_blobs(config(net, "b", peers=("a",)), tmp_path / "b"))
        with trio.fail_after(60):
            await b.fetch_blob(manifest.root_hash, ROOM)
        assert export(b, manifest.root_hash, key) == data
        nursery.cancel_scope.cancel()


def corrupt_chunks(store: BlobStore, chunk_hashes: tuple[bytes, ...]) -> None:
    """Flip one byte in every stored chunk file (same length, wrong hash)."""
    for h in chunk_hashes:
        path = store.path / "objects" / h[:1].hex() / h.hex()
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 0x01
        path.write_bytes(bytes(raw))


async def test_peer_serving_corrupt_chunks_is_cut_off_and_nothing_stored(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    net = MemoryNetwork()
    data = os.urandom(1_000_000)
    async with trio.open_nursery() as nursery:
        a = await start(nursery, with_blobs(config(net, "a"), tmp_path / "a"))
        manifest, _ = await a.put_blob(data, ROOM)
        assert a.blob_store is not None
        assert (a.blob_store.path / "objects" / manifest.root_hash[:1].hex()).is_dir()
        corrupt_chunks(a.blob_store, manifest.chunk_hashes)
        b = await start(nursery, with_blobs(config(net, "b", peers=("a",)), tmp_path / "b"))
        with trio.fail_after(60), pytest.raises(BlobUnavailableError):
            await b.fetch_blob(manifest.root_hash, ROOM)
        assert b.statistics().protocol_errors >= 1
        assert b.statistics().blob_chunks_received == 0
        assert b.blob_store is not None
        assert b.blob_store.missing(manifest.root_hash) == tuple(range(manifest.chunk_count))
        assert not any(b.blob_store.have(h) for h in manifest.chunk_hashes)
        nursery.cancel_scope.cancel()


async def test_node_without_blob_store_refuses_blob_calls(
        autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a"))
        with pytest.raises(LocalProtocolError):
            await a.put_blob(b"x", ROOM)
        with pytest.raises(LocalProtocolError):
            await a.fetch_blob(bytes(32), ROOM)
        nursery.cancel_scope.cancel()


async def test_concurrent_fetches_of_one_blob_share_the_transfer(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    net = MemoryNetwork()
    data = os.urandom(1_500_000)
    async with trio.open_nursery() as nursery:
        a = await start(nursery, with_blobs(config(net, "a"), tmp_path / "a"))
        b = await start(nursery, with_blobs(config(net, "b", peers=("a",)), tmp_path / "b"))
        manifest, key = await a.put_blob(data, ROOM)
        with trio.fail_after(60):
            async with trio.open_nursery() as inner:
                for _ in range(3):
                    inner.start_soon(b.fetch_blob, manifest.root_hash, ROOM)
        assert export(b, manifest.root_hash, key) == data
        assert b.statistics().blob_chunks_received == manifest.chunk_count
        assert a.statistics().blob_objects_served == manifest.chunk_count + 2  # + root, page
        nursery.cancel_scope.cancel()


async def test_cut_transfer_resumes_from_same_peer_after_heal_and_redial(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    net = MemoryNetwork()
    data = os.urandom(4 * 1024 * 1024 + 1)
    async with trio.open_nursery() as nursery:
        a = await start(nursery, with_blobs(config(net, "a"), tmp_path / "a"))
        b = await start(nursery, with_blobs(config(net, "b", peers=("a",)), tmp_path / "b"))
        assert b.blob_store is not None
        manifest, key = await a.put_blob(data, ROOM)
        root, n = manifest.root_hash, manifest.chunk_count
        cut_done, fetched = trio.Event(), trio.Event()

        def progress(done: int, total: int) -> None:
            if done >= total // 3 and not cut_done.is_set():
                net.cut("a", "b")
                cut_done.set()

        async def fetch() -> None:
            await b.fetch_blob(root, ROOM, progress=progress)
            fetched.set()

        with trio.fail_after(120):
            nursery.start_soon(fetch)
            await cut_done.wait()
            while a.id in b.connected_peers():
                await trio.sleep(0.01)
            missing_at_cut = b.blob_store.missing(root)
            served_at_cut = a.statistics().blob_objects_served
            assert 0 < len(missing_at_cut) < n
            await trio.sleep(5)  # stays cut: the fetch waits, it does not fail
            assert not fetched.is_set()
            net.heal("a", "b")  # b's dial loop redials a
            await fetched.wait()
        assert export(b, root, key) == data
        assert a.statistics().blob_objects_served - served_at_cut == len(missing_at_cut)
        nursery.cancel_scope.cancel()


def durable(cfg: NodeConfig, path: Path) -> NodeConfig:
    cfg.blob_store = BlobStore(path)  # fsync: the node syncs in a worker thread
    return cfg


async def test_real_clock_worker_thread_stores_and_cuts_off(tmp_path: Path) -> None:
    # Real time and durable stores: each batch's fsync runs in a worker thread
    # (under a MockClock, as in the tests above, the node does it inline).
    net = MemoryNetwork()
    data = os.urandom(3 * 1024 * 1024 + 5)
    async with trio.open_nursery() as nursery:
        a = await start(nursery, with_blobs(config(net, "a"), tmp_path / "a"))
        manifest, key = await a.put_blob(data, ROOM)
        b = await start(nursery, durable(config(net, "b", peers=("a",)), tmp_path / "b"))
        seen: list[int] = []
        with trio.fail_after(30):
            await b.fetch_blob(manifest.root_hash, ROOM, progress=lambda d, t: seen.append(d))
        assert export(b, manifest.root_hash, key) == data
        assert seen[-1] == len(data) and seen == sorted(seen)
        assert b.statistics().blob_chunks_received == manifest.chunk_count
        assert a.blob_store is not None
        corrupt_chunks(a.blob_store, manifest.chunk_hashes[1:2])
        c = await start(nursery, durable(config(net, "c", peers=("a",)), tmp_path / "c"))
        with trio.fail_after(30), pytest.raises(BlobUnavailableError):
            await c.fetch_blob(manifest.root_hash, ROOM)
        assert c.statistics().protocol_errors >= 1
        assert c.blob_store is not None
        assert not c.blob_store.have(manifest.chunk_hashes[1])
        assert 1 in c.blob_store.missing(manifest.root_hash)
        nursery.cancel_scope.cancel()


async def test_shared_fetch_completes_after_first_caller_is_cancelled(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    # The fetch tasks themselves store the received chunks: a second caller of the
    # same blob must keep doing so when the first one is cancelled mid-transfer.
    net = MemoryNetwork()
    data = os.urandom(6 * 1024 * 1024 + 7)
    async with trio.open_nursery() as nursery:
        a = await start(nursery, with_blobs(config(net, "a"), tmp_path / "a"))
        manifest, key = await a.put_blob(data, ROOM)
        b = await start(nursery, with_blobs(config(net, "b", peers=("a",)), tmp_path / "b"))
        assert b.blob_store is not None
        store_b = b.blob_store
        first = trio.CancelScope()
        done = trio.Event()
        left: list[int] = []

        async def second_fetch() -> None:
            await b.fetch_blob(manifest.root_hash, ROOM)
            done.set()

        def progress(d: int, t: int) -> None:
            if d and not left:  # the first batch is stored: hand over, then cancel
                left.append(len(store_b.missing(manifest.root_hash)))
                nursery.start_soon(second_fetch)
                first.cancel()

        async def first_fetch() -> None:
            with first:
                await b.fetch_blob(manifest.root_hash, ROOM, progress=progress)

        nursery.start_soon(first_fetch)
        with trio.fail_after(60):
            await done.wait()
        assert left and left[0] > 0  # the first caller was cancelled mid-transfer
        assert first.cancelled_caught
        assert export(b, manifest.root_hash, key) == data
        nursery.cancel_scope.cancel()
