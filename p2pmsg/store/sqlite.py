"""``SqliteStore``: the default, durable :class:`~p2pmsg.store.base.Store` in one SQLite file.

Theory of operation
-------------------
Behaviour is defined by :class:`~p2pmsg.store.memory.MemoryStore`; both run the same
test suite (tests/test_store.py). This module adds durability and identity checks:

* **One file, WAL mode, ``synchronous=FULL``** by default: :meth:`SqliteStore.append`
  returns only after its transaction is fsync'd to the write-ahead log, so an
  acknowledged append survives ``kill -9`` and power loss. ``NORMAL`` survives a
  process crash but may lose the last commits on power loss.
* **Schema** (``SCHEMA_VERSION`` 3; docs/storage.md has the table)::

      logs(log PK, author, topic, height, head, indexed)   one row per non-empty log
      entries(k PK, idp, id, ts, pstate, data, payload)    k = log << 36 | seq (rowid)
      ids(idp, k) PK WITHOUT ROWID                         the id index (merged in bulk)
      forks(n PK, author, topic, first_id, second_id, first, second)
      misbehaviour(n PK, kind, author, topic, peer, entry)
      folded(topic, id, message) PK (topic, id) WITHOUT ROWID

  Packing (log, seq) into the integer rowid keeps each log contiguous in one integer
  b-tree (cheapest inserts and range reads in SQLite); it bounds a store to
  :data:`MAX_LOGS` logs of :data:`MAX_STORED_SEQ` entries. The payload sits in the
  entry's own row (last column, so reading ``data`` never touches it): one b-tree
  insert per entry.

  ``entries.data`` is the exact wire bytes of the entry (header || signature); rows
  are decoded with :func:`p2pmsg.entry.decode_entry` on every read, nothing is
  cached. ``pstate`` is 0 = payload MISSING, 1 = present, 2 = ERASED; a partial
  index over ``pstate = 0`` serves :meth:`~SqliteStore.missing_payloads`. ``ts`` is
  the HLC timestamp as 8 big-endian bytes (HLC values use all 64 bits, which an
  SQLite INTEGER cannot hold; bytes sort the same), kept only while the payload is
  missing (that index is its only reader). A log is frozen iff ``forks`` holds a
  proof for it. ``folded`` links an erased entry that was no message (an edit or
  reaction a redaction erased) to the message it was folded into: written in the
  erasure's own transaction (:meth:`~SqliteStore.erase_payload` ``folded_into``),
  read per room (:meth:`~SqliteStore.folded`); ids only, local, never replicated.
* **Lookups by id** go through ``ids``: ``idp`` (the id's first 8 bytes as an
  integer) -> ``k``; the full ``id`` is compared in the row, so prefix collisions cost
  a row read, never a wrong answer. ``ids`` is *not* maintained per insert: random
  64-bit keys would dirty nearly every index page on every commit. Entries above
  their log's ``indexed`` mark (at most ~:data:`_TAIL_LIMIT`, "the tail") are found
  through an in-memory ``idp -> k`` map instead, and merged into ``ids`` by one sorted
  ``INSERT ... SELECT`` inside the append that fills the tail. The map is derived
  from the file (rebuilt lazily, and again whenever ``PRAGMA data_version`` shows
  another connection committed), so a crash loses nothing.
* **Appends** are planned in Python against the ``logs`` row of each touched log (one
  indexed read per log, not per entry), then written with one ``executemany`` inside
  one ``BEGIN IMMEDIATE`` transaction. An entry at or below a log's height is either
  a duplicate (same id at that seq) or a fork, so no per-entry id lookup is needed.
  The planning loop costs ~0.6 µs per entry, plus ~1 µs hashing each payload unless
  the caller passes ``payloads_verified=True``.
* **Erasure**: ``PRAGMA secure_delete=ON`` zeroes the old row cell and freed overflow
  pages when :meth:`~SqliteStore.erase_payload` rewrites the row with a NULL payload,
  and it then checkpoints and truncates the WAL, so the erased bytes are gone from
  both files when it returns.
* **Identity**: ``PRAGMA application_id`` = :data:`APPLICATION_ID` and
  ``user_version`` = :data:`SCHEMA_VERSION`. Opening checks the file *before* writing
  anything: not SQLite, truncated, damaged, or another application's database ->
  :class:`~p2pmsg.errors.StoreCorruptError`; a newer schema version, or one older
  than 2 -> :class:`~p2pmsg.errors.StoreError`. Such files are never modified.
  A version-2 file is **migrated** on open, in one transaction (it gains the
  ``folded`` table, and ``misbehaviour`` if it predates it; nothing else changes).

Open with ``with SqliteStore(path) as store:`` (or call :meth:`~SqliteStore.close`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ..entry import Entry, Header, decode_entry, payload_hash
from ..errors import DecodeError, ForkError, StoreCorruptError, StoreError, ValidationError
from ..forks import ForkProof
from ..validate import verify_payload
from .base import AppendResult, LogHead, Misbehaviour, PayloadState

__all__ = ["APPLICATION_ID", "MAX_LOGS", "MAX_STORED_SEQ", "SCHEMA_VERSION", "SqliteStore"]

APPLICATION_ID = 0x7032706D
"""``PRAGMA application_id`` of p2pmsg stores: ASCII ``p2pm``."""
SCHEMA_VERSION = 3
"""``PRAGMA user_version`` written by this code; newer versions are refused.

2: payload bytes moved into the ``entries`` row (one b-tree insert per entry, not
two). Version-1 files predate any deployment and are refused, not migrated.
3: the ``folded`` table (links of erased edits and reactions to their message).
Version-2 files are migrated on open (:func:`_migrate`)."""

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
# Checkpoint every ~40 MB of WAL instead of SQLite's 4 MB: fewer checkpoint fsyncs and
# page copies during bulk ingest; the WAL is cut back to 64 MB after each checkpoint.
_WAL_AUTOCHECKPOINT_PAGES = 10_000
_JOURNAL_SIZE_LIMIT = 64 << 20
# 16 MiB page cache (SQLite's default is 2 MiB): keeps the random-keyed id index's
# pages in memory (~20 bytes per entry, so ~800k entries) instead of re-reading them.
_CACHE_KIB = 16 << 10
# Entries not yet in the ``ids`` index (the "tail", held in memory) are merged into it
# in one sorted INSERT once this many accumulate: each index page is then written
# once per merge instead of once per commit (random 64-bit keys touch every page).
_TAIL_LIMIT = 16_384
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_SIZE = 100
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_MISSING, _PRESENT, _ERASED = 0, 1, 2
_TABLES = frozenset({"logs", "entries", "ids", "forks", "misbehaviour", "folded"})
"""Tables every current (version 3) file has."""
_TABLES_V2 = frozenset({"logs", "entries", "ids", "forks"})
"""Tables a version-2 file must have to be migrated (``misbehaviour`` came later)."""
_MIGRATABLE = 2
"""The oldest schema version :func:`_migrate` brings up to date."""

_SEQ_BITS = 36
_SEQ_MASK = (1 << _SEQ_BITS) - 1
MAX_STORED_SEQ = _SEQ_MASK
"""Longest log this schema holds: 2**36 - 1 entries (seq cannot jump, so unreachable)."""
MAX_LOGS = (1 << 27) - 1
"""Most logs this schema holds (keys pack ``log << 36 | seq`` into one 63-bit rowid)."""

_SQL_MISBEHAVIOUR_TABLE = """CREATE TABLE IF NOT EXISTS misbehaviour (
        n INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        author BLOB NOT NULL,
        topic BLOB NOT NULL,
        peer BLOB NOT NULL,
        entry BLOB NOT NULL,
        UNIQUE (kind, author, topic)
    )"""
"""Part of ``_SCHEMA``; also created by the migration of a version-2 file when
missing, as it was added to files of that version after they were first written."""

_SQL_FOLDED_TABLE = """CREATE TABLE IF NOT EXISTS folded (
        topic BLOB NOT NULL,
        id BLOB NOT NULL,
        message BLOB NOT NULL,
        PRIMARY KEY (topic, id)
    ) WITHOUT ROWID"""
"""Erased entry -> the message it was folded into (schema 3; see the module docs)."""

_SCHEMA = (
    """CREATE TABLE logs (
        log INTEGER PRIMARY KEY,
        author BLOB NOT NULL,
        topic BLOB NOT NULL,
        height INTEGER NOT NULL,
        head BLOB NOT NULL,
        indexed INTEGER NOT NULL DEFAULT 0,
        UNIQUE (topic, author)
    )""",
    # ``payload`` is the last column so reading ``data`` never touches the payload's
    # overflow pages; ``ts`` is only kept while the payload is missing (see below).
    """CREATE TABLE entries (
        k INTEGER PRIMARY KEY,
        idp INTEGER NOT NULL,
        id BLOB NOT NULL,
        ts BLOB,
        pstate INTEGER NOT NULL,
        data BLOB NOT NULL,
        payload BLOB
    )""",
    "CREATE INDEX entries_missing ON entries (k, ts, id) WHERE pstate = 0",
    # The id index, filled in bulk (see _SQL_MERGE_IDS): entries above their log's
    # ``indexed`` mark are found through SqliteStore._tail in memory instead.
    """CREATE TABLE ids (
        idp INTEGER NOT NULL,
        k INTEGER NOT NULL,
        PRIMARY KEY (idp, k)
    ) WITHOUT ROWID""",
    """CREATE TABLE forks (
        n INTEGER PRIMARY KEY,
        author BLOB NOT NULL,
        topic BLOB NOT NULL,
        first_id BLOB NOT NULL,
        second_id BLOB NOT NULL,
        first BLOB NOT NULL,
        second BLOB NOT NULL,
        UNIQUE (first_id, second_id)
    )""",
    "CREATE INDEX forks_log ON forks (author, topic)",
    _SQL_MISBEHAVIOUR_TABLE,
    _SQL_FOLDED_TABLE,
)

# SQL text is kept constant so sqlite3's statement cache reuses the prepared statements.
# An entry's key is ``k = log << 36 | seq``: one integer b-tree, each log contiguous.
_SQL_LOG = "SELECT log, height, head FROM logs WHERE topic = ? AND author = ?"
_SQL_NEW_LOG = "INSERT INTO logs (author, topic, height, head) VALUES (?, ?, 0, x'')"
_SQL_SET_HEAD = "UPDATE logs SET height = ?, head = ? WHERE log = ?"
_SQL_ID_AT = "SELECT id, data FROM entries WHERE k = ?"
_SQL_INSERT_ENTRY = (
    "INSERT INTO entries (k, idp, id, ts, pstate, data, payload) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SQL_FROZEN = "SELECT 1 FROM forks WHERE author = ? AND topic = ? LIMIT 1"
_SQL_FIRST_PROOF = (
    "SELECT first, second FROM forks WHERE author = ? AND topic = ? ORDER BY n LIMIT 1"
)
_SQL_HEAD = (
    "SELECT e.id, e.data FROM logs l JOIN entries e ON e.k = (l.log << 36) + l.height"
    " WHERE l.topic = ? AND l.author = ?"
)
_SQL_HEADS = "SELECT author, height, head FROM logs WHERE topic = ? ORDER BY author"
_SQL_TOPICS = "SELECT DISTINCT topic FROM logs ORDER BY topic"
_SQL_RANGE = (
    "SELECT e.id, e.data FROM logs l JOIN entries e"
    " ON e.k BETWEEN (l.log << 36) + ? AND (l.log << 36) + ?"
    " WHERE l.topic = ? AND l.author = ? ORDER BY e.k"
)
# Lookups by id come in pairs: through the ``ids`` index, and by key for the tail.
_SQL_ENTRY = (
    "SELECT e.id, e.data FROM ids i JOIN entries e ON e.k = i.k WHERE i.idp = ? AND e.id = ?",
    "SELECT id, data FROM entries WHERE k = ? AND id = ?",
)
_SQL_ENTRY_STATE = (
    "SELECT e.k, e.pstate, e.data FROM ids i JOIN entries e ON e.k = i.k"
    " WHERE i.idp = ? AND e.id = ?",
    "SELECT k, pstate, data FROM entries WHERE k = ? AND id = ?",
)
_SQL_PAYLOAD = (
    "SELECT e.pstate, e.payload FROM ids i JOIN entries e ON e.k = i.k"
    " WHERE i.idp = ? AND e.id = ?",
    "SELECT pstate, payload FROM entries WHERE k = ? AND id = ?",
)
_TAIL_ROWS = (
    "FROM logs l JOIN entries e"
    " ON e.k BETWEEN (l.log << 36) + l.indexed + 1 AND (l.log << 36) + l.height"
    " WHERE l.height > l.indexed"
)
_SQL_TAIL = f"SELECT e.idp, e.k {_TAIL_ROWS}"
_SQL_MERGE_IDS = f"INSERT INTO ids (idp, k) SELECT e.idp, e.k {_TAIL_ROWS} ORDER BY e.idp, e.k"
_SQL_MARK_INDEXED = "UPDATE logs SET indexed = height WHERE height > indexed"
# Both rewrite the row; with secure_delete the old cell (and freed overflow pages) is
# zeroed, so an erased payload leaves no copy in the database pages.
_SQL_PUT_PAYLOAD = "UPDATE entries SET pstate = 1, ts = NULL, payload = ? WHERE k = ?"
_SQL_ERASE_PAYLOAD = "UPDATE entries SET pstate = 2, ts = NULL, payload = NULL WHERE k = ?"
_SQL_FOLD = "INSERT OR IGNORE INTO folded (topic, id, message) VALUES (?, ?, ?)"
_SQL_FOLDED = "SELECT id, message FROM folded WHERE topic = ?"
_SQL_MISSING = (
    "SELECT e.id FROM logs l JOIN entries e"
    " ON e.k BETWEEN (l.log << 36) + 1 AND (l.log << 36) + 68719476735"
    " WHERE l.topic = ? AND e.pstate = 0 ORDER BY e.ts, e.id LIMIT ?"
)
_SQL_INSERT_FORK = (
    "INSERT OR IGNORE INTO forks (author, topic, first_id, second_id, first, second)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_SQL_FORKS = "SELECT first, second FROM forks ORDER BY n"


_Row = tuple[int, int, bytes, bytes | None, int, bytes, bytes | None]
"""An ``entries`` row as inserted: k, idp, id, ts, pstate, data, payload."""
_IDP = struct.Struct(">q")
"""The indexed id prefix: the id's first 8 bytes as a signed big-endian integer."""


class _ForkFound(Exception):
    """Internal: planning hit a fork; the transaction is rolled back before recording it."""

    def __init__(self, proof: ForkProof, record: bool, message: str) -> None:
        super().__init__(message)
        self.proof = proof
        self.record = record
        self.message = message


class _LogState:
    """A log as seen while planning one batch: stored part plus accepted entries."""

    __slots__ = ("base", "frozen", "head", "height", "log", "new", "stored")

    def __init__(self, log: int | None, height: int, head: bytes, frozen: bool) -> None:
        self.log = log
        self.base = 0 if log is None else log << _SEQ_BITS
        self.stored = height
        self.height = height
        self.head = head
        self.frozen = frozen
        self.new: list[Entry] = []


class SqliteStore:
    """A :class:`~p2pmsg.store.base.Store` in one SQLite file (WAL, fsync'd commits).

    ``path`` is created if missing (a zero-length file also counts as a new store).
    ``synchronous`` is the SQLite setting: ``"FULL"`` (default) makes every
    acknowledged write survive power loss; ``"NORMAL"`` only a process crash.

    Not thread-safe: one owner at a time (it may be handed to a worker thread, e.g.
    with ``trio.to_thread.run_sync``, but never used from two threads at once).

    Raises:
        StoreCorruptError: the file is not SQLite, is truncated or damaged, or belongs
            to another application. The file is left untouched.
        StoreError: the file was written by a newer p2pmsg schema, or cannot be opened.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "FULL") -> None:
        mode = synchronous.upper()
        if mode not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        # The tail: idp -> k of entries not yet merged into ``ids`` (a cache of rows
        # above each log's ``indexed`` mark, rebuilt from the file on open and
        # whenever another connection changed it); collisions go to _tail_more.
        # Loaded lazily (first lookup or append), so opening reads no rows.
        self._tail: dict[int, int] = {}
        self._tail_more: dict[int, list[int]] = {}
        self._tail_size = 0
        self._data_version = -1
        self.erasures = 0
        """Payloads erased through this object (see :meth:`Store.erase_payload`)."""
        _precheck_file(self.path)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open store: {exc}") from exc
        try:
            conn.execute("PRAGMA trusted_schema = OFF")
            conn.execute("PRAGMA secure_delete = ON")
            new, version = _inspect(conn, self.path)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {mode}")
            conn.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_AUTOCHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA cache_size = {-_CACHE_KIB}")
            if new:
                _create_schema(conn)
            elif version < SCHEMA_VERSION:
                _migrate(conn, version)
        except sqlite3.Error as exc:
            conn.close()
            raise _translate(exc, self.path, "cannot open store") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Close the file (SQLite checkpoints and removes the WAL). Idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"SqliteStore({str(self.path)!r}, {state})"

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: store is closed")
        return self._conn

    # -- appending -------------------------------------------------------------------

    def append(
        self,
        entries: Sequence[Entry],
        payloads: Mapping[bytes, bytes] | None = None,
        *,
        payloads_verified: bool = False,
    ) -> AppendResult:
        """See :meth:`Store.append`. Durable (per ``synchronous``) when it returns.

        ``payloads_verified=True`` skips re-hashing payloads the caller has already
        checked against their headers (:func:`p2pmsg.validate.verify_payload`, as
        :mod:`p2pmsg.sync` does for every payload it receives): ~1 µs per entry.
        Pass it only for payloads checked in this process; the default re-checks.
        """
        conn = self._db()
        if not entries:
            return AppendResult((), 0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._sync_tail(conn)
                result, rows = self._append_in_txn(
                    conn, entries, payloads or {}, check_payloads=not payloads_verified
                )
                merge = self._tail_size + len(rows) >= _TAIL_LIMIT
                if merge:
                    conn.execute(_SQL_MERGE_IDS)
                    conn.execute(_SQL_MARK_INDEXED)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except _ForkFound as fork:
            if fork.record:
                self.record_fork(fork.proof)
            raise ForkError(fork.proof, fork.message) from None
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "append failed") from exc
        # Only now, after COMMIT, does the in-memory tail follow the file.
        tail = self._tail
        if merge:
            tail.clear()
            self._tail_more.clear()
            self._tail_size = 0
        elif rows:
            size = len(tail)
            tail.update({row[1]: row[0] for row in rows})
            self._tail_size += len(rows)
            if len(tail) != size + len(rows):  # an id-prefix collision: the dict lost a
                self._data_version = -1  # key, so re-read the tail on the next access
        return result

    def _append_in_txn(
        self,
        conn: sqlite3.Connection,
        entries: Sequence[Entry],
        payloads: Mapping[bytes, bytes],
        *,
        check_payloads: bool,
    ) -> tuple[AppendResult, list[_Row]]:
        # Hot loop (docs/storage.md, "Appends"): the current log's height/head live in
        # locals and are saved on a log switch; per entry a few comparisons, one dict
        # lookup for the payload and one row tuple. Everything unusual (duplicate,
        # fork, frozen log, gap) leaves the fast path through one ``if``.
        logs: dict[tuple[bytes, bytes], _LogState] = {}
        rows: list[_Row] = []
        add_row = rows.append
        skipped: list[int] = []
        get_payload = payloads.get
        idp_of = _IDP.unpack_from
        state = _LogState(None, 0, b"", False)
        author: bytes | None = None
        topic: bytes | None = None
        head = b""
        height = base = 0
        frozen = False
        add_new = state.new.append
        for entry in entries:
            h = entry.header
            if h.author != author or h.topic != topic:
                state.height, state.head = height, head
                author, topic = h.author, h.topic
                found = logs.get((author, topic))
                if found is None:
                    found = logs[author, topic] = self._load_log(conn, author, topic)
                state = found
                height, head, base, frozen = state.height, state.head, state.base, state.frozen
                add_new = state.new.append
            seq = h.seq
            if seq != height + 1 or frozen:
                if seq <= height:
                    existing = self._entry_at(conn, state, seq)
                    if existing.id == entry.id:
                        skipped.append(len(rows) + len(skipped))
                        continue
                    if frozen:
                        raise self._frozen(conn, author, topic)
                    proof = ForkProof.of(existing, entry)
                    raise _ForkFound(proof, True, "conflicting entries at one seq")
                if frozen:
                    raise self._frozen(conn, author, topic)
                raise StoreError(
                    f"entry does not extend its log: seq_gap: seq {seq} does not follow"
                    f" head {height}"
                )
            if height:
                if h.backlink != head:
                    raise StoreError(
                        f"entry does not extend its log: backlink_mismatch: seq {seq}:"
                        " backlink is not the head id"
                    )
                if seq > _SEQ_MASK:
                    raise StoreError(f"log longer than this store holds ({_SEQ_MASK} entries)")
            elif state.log is None:  # first entry of a log this store has not seen
                state.log = self._new_log(conn, (author, topic))
                base = state.base = state.log << _SEQ_BITS
            eid = entry.id
            payload = get_payload(eid)
            if payload is None:
                # ts is kept only while the payload is missing: missing_payloads() order.
                add_row((
                    base + seq, idp_of(eid)[0], eid, h.timestamp.to_bytes(8, "big"),
                    _MISSING, entry.raw + entry.signature, None,
                ))
            else:
                if check_payloads and (
                    len(payload) != h.payload_size or payload_hash(payload) != h.payload_hash
                ):
                    raise _payload_rejected(h, payload)
                add_row((
                    base + seq, idp_of(eid)[0], eid, None,
                    _PRESENT, entry.raw + entry.signature, payload,
                ))
            height = seq
            head = eid
            add_new(entry)
        state.height, state.head = height, head
        if rows:
            conn.executemany(_SQL_INSERT_ENTRY, rows)
            conn.executemany(
                _SQL_SET_HEAD,
                [(s.height, s.head, s.log) for s in logs.values() if s.height != s.stored],
            )
        if not skipped:
            return AppendResult(tuple(entries), 0), rows
        gone = set(skipped)
        added = tuple(e for i, e in enumerate(entries) if i not in gone)
        return AppendResult(added, len(skipped)), rows

    def _sync_tail(self, conn: sqlite3.Connection) -> None:
        """Load the tail if not loaded yet or another connection committed since."""
        if conn.execute("PRAGMA data_version").fetchone()[0] != self._data_version:
            self._load_tail(conn)

    def _load_tail(self, conn: sqlite3.Connection) -> None:
        """Rebuild the in-memory tail from the file (at most ~_TAIL_LIMIT rows)."""
        self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        tail: dict[int, int] = {}
        more: dict[int, list[int]] = {}
        rows = conn.execute(_SQL_TAIL).fetchall()
        for idp, k in rows:
            if tail.setdefault(idp, k) != k:
                more.setdefault(idp, []).append(k)
        self._tail, self._tail_more, self._tail_size = tail, more, len(rows)

    def _find(self, sql: tuple[str, str], entry_id: bytes) -> tuple[Any, ...] | None:
        """The row of the entry with this id: ``sql`` = (through ``ids``, by key)."""
        conn = self._db()
        try:
            self._sync_tail(conn)
            idp = _idp(entry_id)
            k = self._tail.get(idp)
            row: tuple[Any, ...] | None
            if k is not None:
                for key in (k, *self._tail_more.get(idp, ())):
                    row = conn.execute(sql[1], (key, entry_id)).fetchone()
                    if row is not None:
                        return row
            row = conn.execute(sql[0], (idp, entry_id)).fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "read failed") from exc
        return row

    def _load_log(self, conn: sqlite3.Connection, author: bytes, topic: bytes) -> _LogState:
        frozen = conn.execute(_SQL_FROZEN, (author, topic)).fetchone() is not None
        row = conn.execute(_SQL_LOG, (topic, author)).fetchone()
        if row is None:
            return _LogState(None, 0, b"", frozen)
        return _LogState(row[0], row[1], row[2], frozen)

    def _new_log(self, conn: sqlite3.Connection, key: tuple[bytes, bytes]) -> int:
        log = conn.execute(_SQL_NEW_LOG, key).lastrowid
        if log is None or log > MAX_LOGS:
            raise StoreError(f"{self.path}: store holds the most logs it can ({MAX_LOGS})")
        return log

    def _entry_at(self, conn: sqlite3.Connection, state: _LogState, seq: int) -> Entry:
        if seq > state.stored:
            return state.new[seq - state.stored - 1]
        row = conn.execute(_SQL_ID_AT, (state.base + seq,)).fetchone()
        if row is None:
            raise StoreCorruptError(f"{self.path}: log has a hole at seq {seq}")
        return self._decode(row[0], row[1])

    def _frozen(self, conn: sqlite3.Connection, author: bytes, topic: bytes) -> _ForkFound:
        row = conn.execute(_SQL_FIRST_PROOF, (author, topic)).fetchone()
        if row is None:  # pragma: no cover - frozen was read in this transaction
            raise StoreCorruptError(f"{self.path}: frozen log without a proof")
        proof = ForkProof(self._decode(None, row[0]), self._decode(None, row[1]))
        return _ForkFound(proof, False, "log is frozen by an earlier fork")

    # -- reading entries -------------------------------------------------------------

    def head(self, author: bytes, topic: bytes) -> Entry | None:
        row = self._query_one(_SQL_HEAD, (topic, author))
        return None if row is None else self._decode(row[0], row[1])

    def heads(self, topic: bytes) -> list[LogHead]:
        return [LogHead(a, s, i) for a, s, i in self._query_all(_SQL_HEADS, (topic,))]

    def topics(self) -> list[bytes]:
        return [row[0] for row in self._query_all(_SQL_TOPICS, ())]

    def get_range(self, author: bytes, topic: bytes, start: int, end: int) -> list[Entry]:
        start, end = max(start, 1), min(end, _SEQ_MASK)
        if end < start:
            return []
        rows = self._query_all(_SQL_RANGE, (start, end, topic, author))
        return [self._decode(i, d) for i, d in rows]

    def get_entry(self, entry_id: bytes) -> Entry | None:
        row = self._find(_SQL_ENTRY, entry_id)
        return None if row is None else self._decode(row[0], row[1])

    # -- payloads --------------------------------------------------------------------

    def put_payload(self, entry_id: bytes, payload: bytes) -> bool:
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._find(_SQL_ENTRY_STATE, entry_id)
                if row is None:
                    raise StoreError("payload for an unknown entry")
                k, pstate, data = row
                if pstate != _MISSING:
                    conn.execute("ROLLBACK")
                    return False
                try:
                    verify_payload(self._decode(entry_id, data).header, payload)
                except ValidationError as exc:
                    raise StoreError(f"payload rejected: {exc}") from exc
                conn.execute(_SQL_PUT_PAYLOAD, (bytes(payload), k))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "put_payload failed") from exc
        return True

    def get_payload(self, entry_id: bytes) -> bytes | PayloadState:
        row = self._find(_SQL_PAYLOAD, entry_id)
        if row is None:
            return PayloadState.UNKNOWN
        pstate, data = row
        if pstate == _ERASED:
            return PayloadState.ERASED
        if pstate == _MISSING:
            return PayloadState.MISSING
        if pstate != _PRESENT or not isinstance(data, bytes):
            raise StoreCorruptError(f"{self.path}: payload row inconsistent with its entry")
        return data

    def erase_payload(self, entry_id: bytes, *, folded_into: bytes | None = None) -> bool:
        """See :meth:`Store.erase_payload`. The payload and the ``folded_into`` link
        change in one transaction; a payload erased now also checkpoints and
        truncates the WAL."""
        if folded_into is not None and not folded_into:
            raise StoreError("folded_into must be a message id")
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._find(_SQL_ENTRY_STATE, entry_id)
                if row is None:
                    conn.execute("ROLLBACK")
                    return False
                k, pstate, data = row
                erase = pstate != _ERASED
                if erase:
                    conn.execute(_SQL_ERASE_PAYLOAD, (k,))
                linked = folded_into is not None and conn.execute(
                    _SQL_FOLD, (self._decode(entry_id, data).header.topic, entry_id,
                                bytes(folded_into))).rowcount == 1
                if not erase and not linked:
                    conn.execute("ROLLBACK")
                    return True
                conn.execute("COMMIT")
                self.erasures += 1
                if not erase:
                    return True  # a link only: no payload bytes to purge from the WAL
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "erase_payload failed") from exc
        self.checkpoint()
        return True

    def folded(self, topic: bytes) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        for entry_id, message in self._query_all(_SQL_FOLDED, (topic,)):
            if not isinstance(entry_id, bytes) or not isinstance(message, bytes):
                raise StoreCorruptError(f"{self.path}: damaged folded record")
            out[entry_id] = message
        return out

    def missing_payloads(self, topic: bytes, limit: int = 1000) -> list[bytes]:
        if limit <= 0:
            return []
        return [row[0] for row in self._query_all(_SQL_MISSING, (topic, limit))]

    # -- forks -----------------------------------------------------------------------

    def record_fork(self, proof: ForkProof) -> bool:
        conn = self._db()
        first, second = proof.first, proof.second
        author, topic = first.log_id
        try:
            with _immediate(conn):
                cursor = conn.execute(
                    _SQL_INSERT_FORK,
                    (author, topic, first.id, second.id, first.to_bytes(), second.to_bytes()),
                )
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "record_fork failed") from exc
        return cursor.rowcount == 1

    def forks(self) -> list[ForkProof]:
        return [
            ForkProof(self._decode(None, a), self._decode(None, b))
            for a, b in self._query_all(_SQL_FORKS, ())
        ]

    def is_frozen(self, author: bytes, topic: bytes) -> bool:
        return self._query_one(_SQL_FROZEN, (author, topic)) is not None

    def record_misbehaviour(self, record: Misbehaviour) -> bool:
        conn = self._db()
        author, topic = record.entry.log_id
        try:
            with _immediate(conn):
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO misbehaviour (kind, author, topic, peer, entry)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (record.kind, author, topic, record.peer_id, record.entry.to_bytes()),
                )
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "record_misbehaviour failed") from exc
        return cursor.rowcount == 1

    def misbehaviours(self) -> list[Misbehaviour]:
        rows = self._query_all("SELECT kind, peer, entry FROM misbehaviour ORDER BY n", ())
        out: list[Misbehaviour] = []
        for kind, peer, data in rows:
            if not isinstance(kind, str) or not isinstance(peer, bytes):
                raise StoreCorruptError(f"{self.path}: damaged misbehaviour record")
            out.append(Misbehaviour(kind, self._decode(None, data), peer))
        return out

    # -- maintenance -----------------------------------------------------------------

    def checkpoint(self) -> None:
        """Copy the WAL into the main file and truncate the WAL to zero bytes.

        Called by :meth:`erase_payload` so erased bytes leave the WAL too. Raises
        StoreError if another connection's reader prevented a complete checkpoint.
        """
        row = self._query_one("PRAGMA wal_checkpoint(TRUNCATE)", ())
        if row is not None and row[0] != 0:
            raise StoreError(f"{self.path}: WAL checkpoint blocked by another connection")

    def integrity_check(self) -> None:
        """Run SQLite's ``quick_check`` over the whole file (O(size)); raise if damaged.

        Opening only checks the header, schema and file length; call this (e.g. from
        an admin command) to scan every page.
        """
        rows = self._query_all("PRAGMA quick_check", ())
        if rows != [("ok",)]:
            detail = str(rows[0][0]) if rows else "no result"
            raise StoreCorruptError(f"{self.path}: integrity check failed: {detail}")

    # -- helpers ---------------------------------------------------------------------

    def _query_one(self, sql: str, args: tuple[object, ...]) -> tuple[Any, ...] | None:
        conn = self._db()
        try:
            row: tuple[Any, ...] | None = conn.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "read failed") from exc
        return row

    def _query_all(self, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        conn = self._db()
        try:
            rows: list[tuple[Any, ...]] = conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "read failed") from exc
        return rows

    def _decode(self, entry_id: object, data: object) -> Entry:
        """Decode a stored row; any mismatch means the file was damaged."""
        if not isinstance(data, bytes):
            raise StoreCorruptError(f"{self.path}: stored entry is not a blob")
        try:
            entry = decode_entry(data)
        except DecodeError as exc:
            raise StoreCorruptError(f"{self.path}: stored entry does not decode: {exc}") from exc
        if entry_id is not None and entry.id != entry_id:
            raise StoreCorruptError(f"{self.path}: stored entry does not match its id")
        return entry


def _idp(entry_id: bytes) -> int:
    """The indexed 64-bit prefix of an id (the full id is compared in the row)."""
    if len(entry_id) < _IDP.size:
        return 0  # no stored id is this short; the id comparison then finds nothing
    idp: int = _IDP.unpack_from(entry_id)[0]
    return idp


def _payload_rejected(header: Header, payload: bytes) -> StoreError:
    """The StoreError for a payload that does not match ``header`` (cold path)."""
    try:
        verify_payload(header, payload)
    except ValidationError as exc:
        return StoreError(f"payload rejected: {exc}")
    return StoreError("payload rejected")  # pragma: no cover - caller saw a mismatch


def _translate(exc: sqlite3.Error, path: Path, what: str) -> StoreError:
    """Map an sqlite3 error to ours: damaged-file codes become StoreCorruptError."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return StoreCorruptError(f"{path}: database is damaged or not a database: {exc}")
    return StoreError(f"{path}: {what}: {exc}")


def _precheck_file(path: Path) -> None:
    """Refuse, without opening it with SQLite, a file that cannot be one of our stores.

    Checks the magic string and that the file holds every page its header counts
    (a truncated store). The page count is only trusted when the header says it is
    valid and no WAL is pending (a crash mid-checkpoint may leave it ahead).
    """
    try:
        with path.open("rb") as f:
            header = f.read(_HEADER_SIZE)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return
    except IsADirectoryError as exc:
        raise StoreError(f"{path}: is a directory, not a store file") from exc
    except OSError as exc:
        raise StoreError(f"{path}: cannot read store file: {exc.strerror}") from exc
    if size == 0:
        return
    if len(header) < _HEADER_SIZE or not header.startswith(_SQLITE_MAGIC):
        raise StoreCorruptError(f"{path}: not a p2pmsg store (not an SQLite database)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    change_counter = header[24:28]
    valid_for = header[92:96]
    wal = path.with_name(path.name + "-wal")
    wal_pending = wal.exists() and wal.stat().st_size > 0
    if change_counter == valid_for and not wal_pending and size < pages * page_size:
        raise StoreCorruptError(
            f"{path}: store file is truncated ({size} bytes, header says {pages * page_size})"
        )


def _inspect(conn: sqlite3.Connection, path: Path) -> tuple[bool, int]:
    """Check an opened file is ours. Reads only. Returns (new, version): new is True
    for an empty file (create the schema); a version below :data:`SCHEMA_VERSION`
    is one :func:`_migrate` brings up to date."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    names = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id == 0 and objects == 0 and version == 0:
        return True, SCHEMA_VERSION
    if app_id != APPLICATION_ID:
        raise StoreCorruptError(
            f"{path}: not a p2pmsg store (SQLite database of another application)"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: store schema version {version} is newer than supported"
            f" ({SCHEMA_VERSION}); upgrade p2pmsg"
        )
    if 0 < version < _MIGRATABLE and names >= {"logs", "entries", "forks"}:
        raise StoreError(
            f"{path}: store schema version {version} is older than this p2pmsg"
            f" ({SCHEMA_VERSION}) and cannot be migrated (pre-release format)"
        )
    if version == _MIGRATABLE and names >= _TABLES_V2:
        return False, version
    if version != SCHEMA_VERSION or not names >= _TABLES:
        raise StoreCorruptError(f"{path}: p2pmsg store with a damaged or unknown schema")
    return False, version


def _create_schema(conn: sqlite3.Connection) -> None:
    """Create every table and stamp the file as ours, in one transaction."""
    with _immediate(conn):
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a version-2 file (checked by :func:`_inspect`) to :data:`SCHEMA_VERSION`
    in one transaction: add the tables it lacks, then stamp the new version. Safe
    against another connection migrating the same file at the same time (the
    version is read again under the write lock; tables are created if missing)."""
    with _immediate(conn):
        if conn.execute("PRAGMA user_version").fetchone()[0] != version:
            return  # another connection migrated it since _inspect looked
        conn.execute(_SQL_MISBEHAVIOUR_TABLE)  # v2 files written before it existed
        conn.execute(_SQL_FOLDED_TABLE)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on any error.

    COMMIT is what makes the write durable (synchronous=FULL fsyncs the WAL there)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
