"""BlobStore: files on disk, verification on arrival, quotas, resume, deletion."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from p2pmsg.blobs import (
    BlobIncompleteError,
    BlobStore,
    ChunkMismatchError,
    FileTooLargeError,
    QuotaExceededError,
    Quotas,
    encrypt_blob,
)
from p2pmsg.blobs.store import estimate_stored_size
from p2pmsg.errors import StoreError
from p2pmsg.messaging.errors import DecryptionError

CS = 1024
ORG, ROOM = b"org-a", b"room-1"


def files(path: Path) -> list[Path]:
    return sorted(p for p in (path / "objects").rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    s = BlobStore(tmp_path / "blobs", durable=False)
    yield s
    s.close()


def test_import_export_round_trip_durable(tmp_path: Path) -> None:
    data = os.urandom(5 * CS + 7)
    with BlobStore(tmp_path / "blobs") as s:  # the fsync path, once
        m, key = s.import_file(io.BytesIO(data), len(data), org=ORG, room=ROOM, chunk_size=CS)
        assert s.missing(m.root_hash) == ()
        out = io.BytesIO()
        assert s.export(m.root_hash, key, out) == len(data)
        assert out.getvalue() == data
        assert s.usage(org=ORG) == s.usage(room=ROOM) == m.stored_size
    # fan-out layout: objects/ab/<64 hex>, nothing left in tmp
    names = files(tmp_path / "blobs")
    assert len(names) == m.chunk_count + 1 + len(m.pages)
    for p in names:
        assert len(p.name) == 64 and p.parent.name == p.name[:2]
        assert p.parent.parent.name == "objects"
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
    with BlobStore(tmp_path / "blobs") as again:  # persisted
        assert again.get_manifest(m.root_hash) == m
        assert again.have(m.chunk_hashes[0])
        with pytest.raises(DecryptionError):
            again.export(m.root_hash, os.urandom(32), io.BytesIO())


def test_default_chunk_size_path(store: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 1)
    m, key = store.import_file(io.BytesIO(data), len(data), org=ORG, room=ROOM)
    assert m.chunk_size == 1024 * 1024 and m.chunk_count == 4  # the 1 MiB default
    out = io.BytesIO()
    store.export(m.root_hash, key, out)
    assert out.getvalue() == data


def test_estimate_is_close(store: BlobStore) -> None:
    for size in (0, 1, CS, 100 * CS + 3):
        m = encrypt_blob(bytes(size), chunk_size=CS).manifest
        assert 0 <= estimate_stored_size(size, CS) - m.stored_size <= 64


def test_chunks_verified_on_arrival(store: BlobStore, tmp_path: Path) -> None:
    blob = encrypt_blob(os.urandom(3 * CS), chunk_size=CS)
    m = blob.manifest
    assert store.add_manifest(m, org=ORG, room=ROOM)
    assert not store.add_manifest(m, org=ORG, room=ROOM)  # idempotent
    assert store.missing(m.root_hash) == (0, 1, 2)
    before = files(tmp_path / "blobs")
    bad = bytearray(blob.chunks[1])
    bad[-1] ^= 1
    with pytest.raises(ChunkMismatchError):
        store.put_chunk(m.chunk_hashes[1], bytes(bad))
    with pytest.raises(ChunkMismatchError):
        store.put_chunk(m.chunk_hashes[1], blob.chunks[2])  # right size, other chunk
    assert files(tmp_path / "blobs") == before
    assert not store.have(m.chunk_hashes[1])
    assert store.get(m.chunk_hashes[1]) is None
    with pytest.raises(StoreError):
        store.put_chunk(os.urandom(32), b"x" * 100)  # belongs to no registered blob
    assert store.put_chunk(m.chunk_hashes[2], blob.chunks[2])
    assert not store.put_chunk(m.chunk_hashes[2], blob.chunks[2])
    assert store.missing(m.root_hash) == (0, 1)
    with pytest.raises(BlobIncompleteError):
        store.export(m.root_hash, blob.key, io.BytesIO())
    assert store.get_many([m.chunk_hashes[2], m.chunk_hashes[0]]) == {
        m.chunk_hashes[2]: blob.chunks[2], m.chunk_hashes[0]: None}
    assert store.get(m.root_hash) == m.root


def test_quota_exceeded_nothing_stored(tmp_path: Path) -> None:
    blob = encrypt_blob(os.urandom(4 * CS), chunk_size=CS)
    m = blob.manifest
    with BlobStore(tmp_path / "b", durable=False,
                   quotas=Quotas(room={ROOM: m.stored_size - 1})) as s:
        with pytest.raises(QuotaExceededError) as info:
            s.add_manifest(m, org=ORG, room=ROOM)
        assert info.value.scope == "room" and info.value.needed == m.stored_size
        assert s.usage() == 0 and files(tmp_path / "b") == []
        assert s.get_manifest(m.root_hash) is None
        assert s.add_manifest(m, org=ORG, room=b"other-room")  # other rooms unaffected
    with BlobStore(tmp_path / "c", durable=False,
                   quotas=Quotas(default_org=m.stored_size + 10)) as s:
        assert s.add_manifest(m, org=ORG, room=ROOM)
        second = encrypt_blob(b"x", chunk_size=CS).manifest
        with pytest.raises(QuotaExceededError) as info:
            s.add_manifest(second, org=ORG, room=b"another")
        assert info.value.scope == "org" and info.value.used == m.stored_size
        with pytest.raises(QuotaExceededError):
            s.import_file(io.BytesIO(bytes(100)), 100, org=ORG, room=ROOM, chunk_size=CS)
        assert len(files(tmp_path / "c")) == 1 + len(m.pages)  # only the first manifest
        assert s.delete_blob(m.root_hash) == m.stored_size
        assert s.add_manifest(second, org=ORG, room=b"another")  # room freed


def test_file_size_limit(tmp_path: Path) -> None:
    with BlobStore(tmp_path / "b", durable=False, max_file_size=100) as s:
        with pytest.raises(FileTooLargeError):
            s.import_file(io.BytesIO(bytes(101)), 101, org=ORG, room=ROOM, chunk_size=CS)
        with pytest.raises(FileTooLargeError):
            s.add_manifest(encrypt_blob(bytes(101), chunk_size=CS).manifest, org=ORG, room=ROOM)
        assert files(tmp_path / "b") == []


def test_import_failure_leaves_nothing(store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="early"):
        store.import_file(io.BytesIO(bytes(3 * CS)), 5 * CS, org=ORG, room=ROOM, chunk_size=CS)
    assert files(tmp_path / "blobs") == [] and store.usage() == 0


def test_import_failure_after_a_written_batch_leaves_nothing(
        store: BlobStore, tmp_path: Path) -> None:
    mib = 1 << 20  # more than one write batch (2 MiB) lands before the source ends
    with pytest.raises(ValueError, match="early"):
        store.import_file(io.BytesIO(os.urandom(3 * mib)), 5 * mib, org=ORG, room=ROOM)
    assert files(tmp_path / "blobs") == [] and store.usage() == 0


def test_delete_and_purge(store: BlobStore, tmp_path: Path) -> None:
    ms = []
    for room in (ROOM, ROOM, b"room-2"):
        data = os.urandom(2 * CS)
        m, _ = store.import_file(io.BytesIO(data), len(data), org=ORG, room=room, chunk_size=CS)
        ms.append(m)
    assert store.roots(room=ROOM) == sorted([ms[0].root_hash, ms[1].root_hash])
    freed = store.purge_room(ROOM)
    assert freed == ms[0].stored_size + ms[1].stored_size
    assert not store.have(ms[0].chunk_hashes[0]) and store.get_manifest(ms[0].root_hash) is None
    left = files(tmp_path / "blobs")
    assert len(left) == ms[2].chunk_count + 2
    assert store.usage() == ms[2].stored_size
    assert store.purge_org(ORG) == ms[2].stored_size
    assert files(tmp_path / "blobs") == []
    assert store.delete_blob(ms[0].root_hash) == 0


def test_garbage_collection_of_orphans(store: BlobStore, tmp_path: Path) -> None:
    blob = encrypt_blob(bytes(CS), chunk_size=CS)
    store.add_manifest(blob.manifest, org=ORG, room=ROOM)
    orphan = encrypt_blob(b"orphan", chunk_size=CS)
    store._write_batch({orphan.manifest.chunk_hashes[0]: orphan.chunks[0]})  # crash sim
    assert store.collect_garbage() == 1
    assert len(files(tmp_path / "blobs")) == 2  # root + page of the registered blob


def test_not_a_blob_store(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "index.sqlite3").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError):
        BlobStore(tmp_path / "b")


def test_put_chunks_stores_a_batch_all_or_nothing(tmp_path: Path) -> None:
    blob = encrypt_blob(os.urandom(6 * CS), chunk_size=CS)
    m, h = blob.manifest, blob.manifest.chunk_hashes
    with BlobStore(tmp_path / "blobs") as s:  # durable: the batched fsync path
        s.add_manifest(m, org=ORG, room=ROOM)
        assert s.put_chunk(h[0], blob.chunks[0])
        before = files(tmp_path / "blobs")
        bad = bytearray(blob.chunks[3])
        bad[0] ^= 1
        with pytest.raises(ChunkMismatchError):  # one bad chunk: none of the batch
            s.put_chunks([(h[1], blob.chunks[1]), (h[3], bytes(bad))])
        assert files(tmp_path / "blobs") == before
        assert s.missing(m.root_hash) == (1, 2, 3, 4, 5)
        # already held and repeated chunks are skipped, not written twice
        stored = s.put_chunks([(h[0], blob.chunks[0]), (h[1], blob.chunks[1]),
                               (h[1], blob.chunks[1]), (h[4], blob.chunks[4])])
        assert stored == [h[1], h[4]]
        assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
    with BlobStore(tmp_path / "blobs") as again:  # the rows were committed
        assert again.missing(m.root_hash) == (2, 3, 5)


def test_put_chunks_verified_skips_only_the_hash(store: BlobStore) -> None:
    blob = encrypt_blob(os.urandom(3 * CS), chunk_size=CS)
    m, h = blob.manifest, blob.manifest.chunk_hashes
    store.add_manifest(m, org=ORG, room=ROOM)
    with pytest.raises(ChunkMismatchError):  # the length is still checked
        store.put_chunks([(h[0], blob.chunks[0][:-1])], verified=True)
    with pytest.raises(StoreError):  # and the chunk must belong to a registered blob
        store.put_chunks([(os.urandom(32), blob.chunks[0])], verified=True)
    assert store.put_chunks([(h[2], blob.chunks[2])], verified=True) == [h[2]]
    assert store.get(h[2]) == blob.chunks[2]
    assert store.missing(m.root_hash) == (0, 1)
