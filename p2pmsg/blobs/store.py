"""BlobStore: attachment objects on disk in the node's data directory (does I/O).

Layout under the directory given (the node uses ``<data dir>/blobs``)::

    index.sqlite3               which blobs exist, who owns them, which objects are held
    objects/ab/abcd...ef        one file per object, named by its BLAKE2b-256 hash (hex),
                                fanned out over 256 directories by the first byte
    tmp/                        files being written (same filesystem, for rename)

Theory of operation
-------------------
The **index database is the truth**: an object is held when its row says so.
Files are written before their rows are committed (temp file, fsync, rename, fsync
of the directory — once per directory per batch, :meth:`BlobStore.put_chunks`),
and rows are deleted before their files are unlinked, so a
crash leaves at worst unreferenced files, which :meth:`BlobStore.collect_garbage`
removes — never a row pointing at a half-written file.

A blob is registered by :meth:`BlobStore.add_manifest` for an (organisation, room):
that **reserves** its full stored size against both quotas up front, so a quota
refusal (:class:`QuotaExceededError`) comes before any chunk is transferred and
nothing is stored. :meth:`BlobStore.put_chunk` accepts only chunks of registered
blobs and verifies length and hash before writing anything
(:class:`ChunkMismatchError`). :meth:`BlobStore.missing` lists what a resumed fetch
still needs. :meth:`BlobStore.delete_blob` / :meth:`BlobStore.purge_room` remove
files for retention and erasure; the plaintext is made unrecoverable by destroying
the per-file key (crypto-shredding), not by overwriting files — see
docs/attachments.md.

Encrypt a local file into the store with :meth:`BlobStore.import_file` and read
one back with :meth:`BlobStore.export`; the transfer machine (transfer.py) is fed
from :meth:`BlobStore.get_many` and feeds :meth:`BlobStore.add_manifest` /
:meth:`BlobStore.put_chunk`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import StoreCorruptError, StoreError
from .errors import BlobIncompleteError, ChunkMismatchError, FileTooLargeError, QuotaExceededError
from .format import (
    CHUNK_OVERHEAD,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_FILE_SIZE,
    HASH_SIZE,
    BlobEncryptor,
    Manifest,
    decrypt_stored_chunk,
    hash_object,
)

__all__ = ["BlobStore", "ChunkBatch", "Quotas", "estimate_stored_size"]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000

_ROOT, _PAGE, _CHUNK = 0, 1, 2
_WRITE_BATCH_BYTES = 2 << 20
"""Chunk bytes :meth:`BlobStore.import_file` writes per batch (memory bound)."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    root BLOB PRIMARY KEY, org BLOB NOT NULL, room BLOB NOT NULL,
    size INTEGER NOT NULL, chunk_size INTEGER NOT NULL, pages INTEGER NOT NULL,
    stored INTEGER NOT NULL, registered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS blobs_org ON blobs(org);
CREATE INDEX IF NOT EXISTS blobs_room ON blobs(room);
CREATE INDEX IF NOT EXISTS blobs_registered ON blobs(registered);
CREATE TABLE IF NOT EXISTS objects (
    hash BLOB PRIMARY KEY, root BLOB NOT NULL, kind INTEGER NOT NULL,
    idx INTEGER NOT NULL, size INTEGER NOT NULL, present INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_root ON objects(root, kind, present);
"""


@dataclass(frozen=True)
class Quotas:
    """Byte limits on stored attachments per organisation and per room.

    A limit applies to the sum of :attr:`Manifest.stored_size` of the blobs
    registered for that owner. Missing entries fall back to the defaults; None
    means unlimited.
    """

    org: Mapping[bytes, int] = field(default_factory=dict)
    room: Mapping[bytes, int] = field(default_factory=dict)
    default_org: int | None = None
    default_room: int | None = None

    def org_limit(self, org: bytes) -> int | None:
        return self.org.get(org, self.default_org)

    def room_limit(self, room: bytes) -> int | None:
        return self.room.get(room, self.default_room)


def estimate_stored_size(size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Stored bytes of a blob of ``size`` plaintext bytes, within a few bytes
    (the root's CBOR length varies by a handful of bytes; 64 are added)."""
    count = max(1, -(-size // chunk_size))
    pages = -(-count // 8192)
    return size + count * (CHUNK_OVERHEAD + HASH_SIZE) + 64 + pages * (HASH_SIZE + 2)


@dataclass
class _Temps:
    """Temp files of a batch written and not yet synced/renamed."""

    temps: list[tuple[str, Path]] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    dirs: dict[Path, None] = field(default_factory=dict)


@dataclass
class ChunkBatch:
    """Chunks between :meth:`BlobStore.prepare_chunks` and :meth:`BlobStore.commit_chunks`."""

    objects: dict[bytes, bytes] = field(repr=False)
    """hash -> chunk bytes, length checked, not yet held."""
    verified: bool
    """Every chunk was hashed against its address (by the caller or write_chunks)."""
    temps: _Temps | None = field(default=None, repr=False)
    written: bool = False
    """Synced and renamed into place: ready for commit_chunks."""

    @property
    def size(self) -> int:
        return sum(map(len, self.objects.values()))


class BlobStore:
    """Content-addressed attachment storage in ``path``. See the module docstring.

    ``durable=False`` skips fsync (only for tests/benchmarks on throwaway data).
    ``clock`` gives wall-clock milliseconds; it stamps each blob's registration
    time, which retention (:meth:`registered_before`) measures from.
    Not thread-safe; use from one thread (the node's) — except
    :meth:`sync_chunks`, which touches only files and may run in a worker thread
    while nothing else uses that batch. Close with :meth:`close`
    (or use as a context manager).
    """

    def __init__(self, path: str | os.PathLike[str], *, quotas: Quotas | None = None,
                 max_file_size: int = DEFAULT_MAX_FILE_SIZE, durable: bool = True,
                 clock: Callable[[], int] = _wall_ms) -> None:
        self.path = Path(path)
        self.clock = clock
        self.quotas = quotas or Quotas()
        self.max_file_size = max_file_size
        self.durable = durable
        self._objects = self.path / "objects"
        self._tmp = self.path / "tmp"
        for d in (self.path, self._objects, self._tmp):
            d.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path / "index.sqlite3", isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            self._migrate()
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreCorruptError("blob index is damaged or not a p2pmsg blob store") from exc
        for leftover in self._tmp.iterdir():  # temp files of a crashed write
            leftover.unlink(missing_ok=True)

    def _migrate(self) -> None:
        """Add the ``registered`` column to an index made before it existed (0 =
        unknown time: such blobs count as registered at the epoch, so the first
        retention run after the upgrade applies to them)."""
        cols = [row[1] for row in self._db.execute("PRAGMA table_info(blobs)")]
        if cols and "registered" not in cols:
            self._db.execute(
                "ALTER TABLE blobs ADD COLUMN registered INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> BlobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- files ----------------------------------------------------------------------

    def _object_path(self, h: bytes) -> Path:
        x = h.hex()
        return self._objects / x[:2] / x

    def _fsync_dir(self, d: Path) -> None:
        if not self.durable:
            return
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_batch(self, objects: Mapping[bytes, bytes]) -> None:
        """Write files durably: all temp files, then fsync each, rename all into
        place, then fsync each directory touched once (not once per file)."""
        self._publish(self._write_temps(objects))

    def _write_temps(self, objects: Mapping[bytes, bytes]) -> _Temps:
        """First half of :meth:`_write_batch`: the temp files, written, not synced."""
        t = _Temps()
        try:
            for h, data in objects.items():
                final = self._object_path(h)
                if final.parent not in t.dirs and not final.parent.is_dir():
                    final.parent.mkdir(exist_ok=True)
                    self._fsync_dir(final.parent.parent)
                t.dirs[final.parent] = None
                fd, tmp = tempfile.mkstemp(dir=self._tmp)
                t.temps.append((tmp, final))
                t.fds.append(fd)
                with os.fdopen(fd, "wb", closefd=False) as f:
                    f.write(data)
        except BaseException:
            self._discard(t)
            raise
        return t

    def _publish(self, t: _Temps) -> None:
        """Second half (the disk waits; touches no SQLite, safe in a worker thread):
        fsync every temp file — after all are written, so the kernel writes the batch
        back together — rename them into place, fsync each directory once."""
        try:
            while t.fds:
                fd = t.fds[-1]
                if self.durable:
                    os.fsync(fd)
                t.fds.pop()
                os.close(fd)
            for tmp, final in t.temps:
                os.replace(tmp, final)
        except BaseException:
            self._discard(t)
            raise
        for d in t.dirs:
            self._fsync_dir(d)

    @staticmethod
    def _discard(t: _Temps) -> None:
        for fd in t.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        t.fds.clear()
        for tmp, _ in t.temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _read(self, h: bytes) -> bytes | None:
        try:
            return self._object_path(h).read_bytes()
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- quotas ---------------------------------------------------------------------

    def usage(self, *, org: bytes | None = None, room: bytes | None = None) -> int:
        """Bytes reserved by blobs of ``org`` and/or ``room`` (all blobs if neither)."""
        sql, args = "SELECT COALESCE(SUM(stored), 0) FROM blobs WHERE 1", []
        if org is not None:
            sql += " AND org = ?"
            args.append(org)
        if room is not None:
            sql += " AND room = ?"
            args.append(room)
        return int(self._db.execute(sql, args).fetchone()[0])

    def check_quota(self, needed: int, *, org: bytes, room: bytes) -> None:
        """Raise :class:`QuotaExceededError` if ``needed`` more bytes do not fit."""
        for scope, owner, limit in (("org", org, self.quotas.org_limit(org)),
                                    ("room", room, self.quotas.room_limit(room))):
            if limit is None:
                continue
            used = self.usage(org=owner) if scope == "org" else self.usage(room=owner)
            if used + needed > limit:
                raise QuotaExceededError(scope, owner, used, needed, limit)

    # --- registering blobs ----------------------------------------------------------

    def add_manifest(self, manifest: Manifest, *, org: bytes, room: bytes) -> bool:
        """Register a blob for (org, room) and store its root and pages.

        Reserves ``manifest.stored_size`` against both quotas. Returns False if the
        blob was already registered (nothing changes). Raises
        :class:`QuotaExceededError` or :class:`FileTooLargeError` (nothing stored).
        """
        return self._register(manifest, org=org, room=room, chunks_present=False)

    def _register(self, manifest: Manifest, *, org: bytes, room: bytes,
                  chunks_present: bool) -> bool:
        root = manifest.root_hash
        if self._db.execute("SELECT 1 FROM blobs WHERE root = ?", (root,)).fetchone():
            return False
        if manifest.size > self.max_file_size:
            raise FileTooLargeError(manifest.size, self.max_file_size)
        self.check_quota(manifest.stored_size, org=org, room=room)
        meta = manifest.metadata_objects()
        self._write_batch(meta)
        rows = [(root, root, _ROOT, 0, len(manifest.root), 1)]
        rows += [(hash_object(p), root, _PAGE, i, len(p), 1)
                 for i, p in enumerate(manifest.pages)]
        present = int(chunks_present)
        rows += [(h, root, _CHUNK, i, manifest.cipher_size(i), present)
                 for i, h in enumerate(manifest.chunk_hashes)]
        try:
            with self._transaction() as db:
                # re-check inside the write lock (another store object, same directory)
                self.check_quota(manifest.stored_size, org=org, room=room)
                db.execute("INSERT INTO blobs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (root, org, room, manifest.size, manifest.chunk_size,
                            len(manifest.pages), manifest.stored_size, self.clock()))
                db.executemany("INSERT INTO objects VALUES (?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError as exc:
            raise StoreError("an object of this blob belongs to another blob") from exc
        return True

    def get_manifest(self, root: bytes) -> Manifest | None:
        """The manifest of a registered blob, or None."""
        row = self._db.execute("SELECT pages FROM blobs WHERE root = ?", (root,)).fetchone()
        if row is None:
            return None
        pages = self._db.execute(
            "SELECT hash FROM objects WHERE root = ? AND kind = ? ORDER BY idx",
            (root, _PAGE)).fetchall()
        root_bytes = self._read(root)
        page_bytes = [self._read(h) for (h,) in pages]
        if root_bytes is None or any(p is None for p in page_bytes) or len(pages) != row[0]:
            raise StoreCorruptError("a manifest object of a registered blob is missing")
        try:
            return Manifest.from_objects(root_bytes, [p for p in page_bytes if p is not None])
        except (ValueError, ChunkMismatchError) as exc:
            raise StoreCorruptError("a stored manifest does not verify") from exc

    def roots(self, *, org: bytes | None = None, room: bytes | None = None) -> list[bytes]:
        """Registered blob roots, optionally of one org and/or room."""
        sql, args = "SELECT root FROM blobs WHERE 1", []
        if org is not None:
            sql += " AND org = ?"
            args.append(org)
        if room is not None:
            sql += " AND room = ?"
            args.append(room)
        return [r for (r,) in self._db.execute(sql + " ORDER BY root", args)]

    def registered_before(self, before_ms: int) -> list[tuple[bytes, bytes, bytes, int]]:
        """(root, org, room, registered_ms) of every blob registered before
        ``before_ms``, oldest first: what a retention sweep considers."""
        return [(bytes(r), bytes(o), bytes(m), t) for r, o, m, t in self._db.execute(
            "SELECT root, org, room, registered FROM blobs WHERE registered < ? "
            "ORDER BY registered, root", (before_ms,))]

    # --- objects --------------------------------------------------------------------

    def room_of(self, h: bytes) -> bytes | None:
        """The room the blob holding object ``h`` is registered under (serving
        access control), or None if no registered blob has that object."""
        row = self._db.execute(
            "SELECT b.room FROM objects o JOIN blobs b ON b.root = o.root WHERE o.hash = ?",
            (h,)).fetchone()
        return None if row is None else bytes(row[0])

    def have(self, h: bytes) -> bool:
        """Whether the object (root, page or chunk) ``h`` is stored."""
        row = self._db.execute("SELECT present FROM objects WHERE hash = ?", (h,)).fetchone()
        return bool(row and row[0])

    def get(self, h: bytes) -> bytes | None:
        """The bytes of a stored object, or None (not held)."""
        return self._read(h) if self.have(h) else None

    def get_many(self, hashes: Iterable[bytes]) -> dict[bytes, bytes | None]:
        """Objects by hash (None for those not held): the answer to ObjectsRequested."""
        return {h: self.get(h) for h in hashes}

    def put_chunk(self, h: bytes, data: bytes, *, verified: bool = False) -> bool:
        """Store a chunk of a registered blob. Returns False if it was already held.

        Raises :class:`ChunkMismatchError` (wrong length or hash; nothing stored) or
        :class:`StoreError` (the chunk belongs to no registered blob). ``verified``:
        see :meth:`put_chunks`.
        """
        return bool(self.put_chunks([(h, data)], verified=verified))

    def put_chunks(self, chunks: Iterable[tuple[bytes, bytes]], *,
                   verified: bool = False) -> list[bytes]:
        """Store several chunks as one batch; returns the hashes newly stored.

        Every chunk is checked before anything is written (one bad chunk: nothing
        stored). The files are written, each fsynced, renamed into place, each
        directory fsynced once, and then **one** transaction marks them all
        present — so a crash stores all of the batch or re-fetches the rest
        (:meth:`missing` reads the rows). ``verified=True`` skips re-hashing: pass
        it only for bytes whose hash was just checked against ``h`` (the transfer
        machine does so for every :class:`~.transfer.ChunkReceived`); the length
        is always checked.
        """
        batch = self.prepare_chunks(chunks, verified=verified)
        self.write_chunks(batch)
        self.sync_chunks(batch)
        return self.commit_chunks(batch)

    def prepare_chunks(self, chunks: Iterable[tuple[bytes, bytes]], *,
                       verified: bool = False) -> ChunkBatch:
        """Step 1 of :meth:`put_chunks` (index lookups, in the store's thread):
        check every chunk belongs to a registered blob and has its length; drop
        those already held. Raises :class:`StoreError` / :class:`ChunkMismatchError`.

        The four steps (prepare, :meth:`write_chunks`, :meth:`sync_chunks`,
        :meth:`commit_chunks`) let a node wait for the disk (fsync) in a worker
        thread — :meth:`sync_chunks` touches no SQLite connection — while its own
        thread keeps serving the network.
        """
        todo: dict[bytes, bytes] = {}
        for h, data in chunks:
            row = self._db.execute(
                "SELECT size, present FROM objects WHERE hash = ? AND kind = ?",
                (h, _CHUNK)).fetchone()
            if row is None:
                raise StoreError("chunk of no registered blob")
            if row[1] or h in todo:
                continue
            if len(data) != row[0]:
                raise ChunkMismatchError("chunk has the wrong length")
            todo[h] = data
        return ChunkBatch(todo, verified)

    def write_chunks(self, batch: ChunkBatch) -> None:
        """Step 2 (CPU): unless the batch is ``verified``, hash every chunk first —
        one mismatch raises :class:`ChunkMismatchError` and nothing of the batch is
        written — then write the temp files (not yet synced)."""
        if batch.temps is not None:
            raise StoreError("write_chunks called twice")
        if not batch.verified:
            for h, data in batch.objects.items():
                if hash_object(data) != h:
                    raise ChunkMismatchError("chunk does not match its hash")
            batch.verified = True
        batch.temps = self._write_temps(batch.objects)

    def sync_chunks(self, batch: ChunkBatch) -> None:
        """Step 3 (the disk waits; files only, no SQLite: safe in a worker thread):
        fsync the temp files, rename them into place, fsync their directories."""
        if batch.temps is None:
            raise StoreError("sync_chunks before write_chunks")
        self._publish(batch.temps)
        batch.written = True

    def discard_chunks(self, batch: ChunkBatch) -> None:
        """Give up a batch between the steps: its temp files are removed."""
        if batch.temps is not None and not batch.written:
            self._discard(batch.temps)

    def commit_chunks(self, batch: ChunkBatch) -> list[bytes]:
        """Step 4 (the store's thread): one transaction marks the written chunks
        held; returns their hashes. Only now do they count as stored. Chunks of a
        blob deleted meanwhile are not marked (their files are garbage for
        :meth:`collect_garbage`)."""
        if not batch.written:
            raise StoreError("commit_chunks before sync_chunks")
        if not batch.objects:
            return []
        stored: list[bytes] = []
        with self._transaction() as db:
            for h in batch.objects:
                if db.execute("UPDATE objects SET present = 1 WHERE hash = ? AND kind = ?",
                              (h, _CHUNK)).rowcount:
                    stored.append(h)
        return stored

    def missing(self, root: bytes) -> tuple[int, ...]:
        """Indices of the chunks of ``root`` not yet held: what a resumed fetch asks for.

        Raises :class:`StoreError` if the blob is not registered (fetch its manifest).
        """
        if not self._db.execute("SELECT 1 FROM blobs WHERE root = ?", (root,)).fetchone():
            raise StoreError("blob not registered")
        return tuple(i for (i,) in self._db.execute(
            "SELECT idx FROM objects WHERE root = ? AND kind = ? AND present = 0 ORDER BY idx",
            (root, _CHUNK)))

    def is_complete(self, root: bytes) -> bool:
        return not self.missing(root)

    # --- plaintext in and out --------------------------------------------------------

    def import_file(self, src: BinaryIO, size: int, *, org: bytes, room: bytes,
                    chunk_size: int = DEFAULT_CHUNK_SIZE,
                    key: bytes | None = None) -> tuple[Manifest, bytes]:
        """Encrypt ``size`` bytes read from ``src`` into the store; returns (manifest, key).

        Reads one chunk at a time (memory does not grow with the file). The quota
        is checked before reading and again at registration; on any failure the
        chunks written so far are removed. Build the message with
        :func:`p2pmsg.blobs.format.describe`.
        """
        if size > self.max_file_size:
            raise FileTooLargeError(size, self.max_file_size)
        self.check_quota(estimate_stored_size(size, chunk_size), org=org, room=room)
        enc = BlobEncryptor(size, key=key, chunk_size=chunk_size,
                            max_file_size=self.max_file_size)
        written: list[bytes] = []
        batch: dict[bytes, bytes] = {}

        def write_batch() -> None:  # a few chunks at once: one fsync per directory
            written.extend(batch)  # listed first: a failure mid-batch removes them
            self._write_batch(batch)
            batch.clear()

        try:
            remaining = size
            while remaining:
                piece = src.read(min(chunk_size, remaining))
                if not piece:
                    raise ValueError(f"source ended {remaining} bytes early")
                remaining -= len(piece)
                for c in enc.update(piece):
                    batch[c.hash] = c.data
                if sum(map(len, batch.values())) >= _WRITE_BATCH_BYTES:
                    write_batch()
            tail, manifest = enc.finish()
            batch.update((c.hash, c.data) for c in tail)
            write_batch()
            self._register(manifest, org=org, room=room, chunks_present=True)
        except BaseException:
            for h in written:
                self._object_path(h).unlink(missing_ok=True)
            raise
        return manifest, enc.key

    def export(self, root: bytes, key: bytes, dst: BinaryIO) -> int:
        """Decrypt a complete blob into ``dst`` chunk by chunk; returns bytes written.

        Raises :class:`BlobIncompleteError`, :class:`StoreError` (unknown blob),
        :class:`ChunkMismatchError` (a file on disk was damaged) or
        :class:`~p2pmsg.messaging.errors.DecryptionError` (wrong key).
        """
        manifest = self.get_manifest(root)
        if manifest is None:
            raise StoreError("blob not registered")
        missing = self.missing(root)
        if missing:
            raise BlobIncompleteError(len(missing))
        written = 0
        for i, h in enumerate(manifest.chunk_hashes):
            data = self._read(h)
            if data is None:
                raise StoreCorruptError("a chunk file of a complete blob is missing")
            plain = decrypt_stored_chunk(manifest, key, i, data)  # hashed on arrival
            dst.write(plain)
            written += len(plain)
        return written

    # --- deletion -------------------------------------------------------------------

    def delete_blob(self, root: bytes) -> int:
        """Remove a blob's objects and rows; returns the bytes of quota freed.

        Files are unlinked, not overwritten: on journaling/copy-on-write filesystems
        and SSDs an overwrite does not reach the old blocks. Erasure relies on
        destroying the per-file key (it lives only in sealed room payloads).
        """
        row = self._db.execute("SELECT stored FROM blobs WHERE root = ?", (root,)).fetchone()
        if row is None:
            return 0
        hashes = [h for (h,) in self._db.execute(
            "SELECT hash FROM objects WHERE root = ?", (root,))]
        with self._transaction() as db:
            db.execute("DELETE FROM objects WHERE root = ?", (root,))
            db.execute("DELETE FROM blobs WHERE root = ?", (root,))
        for h in hashes:
            self._object_path(h).unlink(missing_ok=True)
        return int(row[0])

    def purge_room(self, room: bytes) -> int:
        """Delete every blob of ``room`` (retention, erasure); returns bytes freed."""
        return sum(self.delete_blob(r) for r in self.roots(room=room))

    def purge_org(self, org: bytes) -> int:
        """Delete every blob of ``org``; returns bytes freed."""
        return sum(self.delete_blob(r) for r in self.roots(org=org))

    def collect_garbage(self) -> int:
        """Remove object files no row references (left by a crash); returns count."""
        removed = 0
        for f in self._objects.glob("*/*"):
            try:
                h = bytes.fromhex(f.name)
            except ValueError:
                continue
            if len(h) == HASH_SIZE and not self._db.execute(
                    "SELECT 1 FROM objects WHERE hash = ?", (h,)).fetchone():
                f.unlink(missing_ok=True)
                removed += 1
        return removed
