"""``SqliteStore``: the default, durable :class:`~p2pmsg.store.base.Store` in one SQLite file.

Theory of operation
-------------------
Behaviour is defined by :class:`~p2pmsg.store.memory.MemoryStore`; both run the same
test suite (tests/test_store.py). This module adds durability and identity checks:

* **One file, WAL mode, ``synchronous=FULL``** by default: :meth:`SqliteStore.append`
  returns only after its transaction is fsync'd to the write-ahead log, so an
  acknowledged append survives ``kill -9`` and power loss. ``NORMAL`` survives a
  process crash but may lose the last commits on power loss.
* **Schema** (``SCHEMA_VERSION`` 1; docs/storage.md has the table)::

      logs(log PK, author, topic, height, head)   one row per non-empty log
      entries(k PK, idp, id, ts, pstate, data)    k = log << 36 | seq (rowid)
      payloads(k PK, data)                        same key as the entry
      forks(n PK, author, topic, first_id, second_id, first, second)

  Packing (log, seq) into the integer rowid keeps each log contiguous in one integer
  b-tree (cheapest inserts and range reads in SQLite); it bounds a store to
  :data:`MAX_LOGS` logs of :data:`MAX_STORED_SEQ` entries. ``idp`` (the id's first 8
  bytes as an integer) is indexed for lookups by id; the full ``id`` is compared in
  the row, so prefix collisions cost a row read, never a wrong answer.

  ``entries.data`` is the exact wire bytes of the entry (header || signature); rows
  are decoded with :func:`p2pmsg.entry.decode_entry` on every read, nothing is
  cached. ``pstate`` is 0 = payload MISSING, 1 = present, 2 = ERASED; a partial
  index over ``pstate = 0`` serves :meth:`~SqliteStore.missing_payloads`. ``ts`` is
  the HLC timestamp as 8 big-endian bytes (HLC values use all 64 bits, which an
  SQLite INTEGER cannot hold; bytes sort the same). A log is frozen iff ``forks``
  holds a proof for it.
* **Appends** are planned in Python against the ``logs`` row of each touched log (one
  indexed read per log, not per entry), then written with ``executemany`` inside one
  ``BEGIN IMMEDIATE`` transaction. An entry at or below a log's height is either a
  duplicate (same id at that seq) or a fork, so no per-entry id lookup is needed.
* **Erasure**: ``PRAGMA secure_delete=ON`` zeroes deleted cells and freed pages, and
  :meth:`~SqliteStore.erase_payload` checkpoints and truncates the WAL, so the erased
  bytes are gone from both files when it returns.
* **Identity**: ``PRAGMA application_id`` = :data:`APPLICATION_ID` and
  ``user_version`` = :data:`SCHEMA_VERSION`. Opening checks the file *before* writing
  anything: not SQLite, truncated, damaged, or another application's database ->
  :class:`~p2pmsg.errors.StoreCorruptError`; a newer schema ->
  :class:`~p2pmsg.errors.StoreError`. Such files are never modified.

Open with ``with SqliteStore(path) as store:`` (or call :meth:`~SqliteStore.close`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ..entry import Entry, decode_entry
from ..errors import DecodeError, ForkError, StoreCorruptError, StoreError, ValidationError
from ..forks import ForkProof
from ..validate import verify_payload
from .base import AppendResult, LogHead, Misbehaviour, PayloadState

__all__ = ["APPLICATION_ID", "MAX_LOGS", "MAX_STORED_SEQ", "SCHEMA_VERSION", "SqliteStore"]

APPLICATION_ID = 0x7032706D
"""``PRAGMA application_id`` of p2pmsg stores: ASCII ``p2pm``."""
SCHEMA_VERSION = 1
"""``PRAGMA user_version`` written by this code; newer files are refused."""

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_SIZE = 100
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_MISSING, _PRESENT, _ERASED = 0, 1, 2
_TABLES = frozenset({"logs", "entries", "payloads", "forks"})

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
"""Added after schema version 1 shipped: created (additively) on open when missing,
so version-1 files stay readable by older code and gain the table here."""

_SCHEMA = (
    """CREATE TABLE logs (
        log INTEGER PRIMARY KEY,
        author BLOB NOT NULL,
        topic BLOB NOT NULL,
        height INTEGER NOT NULL,
        head BLOB NOT NULL,
        UNIQUE (topic, author)
    )""",
    """CREATE TABLE entries (
        k INTEGER PRIMARY KEY,
        idp INTEGER NOT NULL,
        id BLOB NOT NULL,
        ts BLOB NOT NULL,
        pstate INTEGER NOT NULL,
        data BLOB NOT NULL
    )""",
    "CREATE INDEX entries_idp ON entries (idp)",
    "CREATE INDEX entries_missing ON entries (k, ts, id) WHERE pstate = 0",
    "CREATE TABLE payloads (k INTEGER PRIMARY KEY, data BLOB NOT NULL)",
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
)

# SQL text is kept constant so sqlite3's statement cache reuses the prepared statements.
# An entry's key is ``k = log << 36 | seq``: one integer b-tree, each log contiguous.
_SQL_LOG = "SELECT log, height, head FROM logs WHERE topic = ? AND author = ?"
_SQL_NEW_LOG = "INSERT INTO logs (author, topic, height, head) VALUES (?, ?, 0, x'')"
_SQL_SET_HEAD = "UPDATE logs SET height = ?, head = ? WHERE log = ?"
_SQL_ID_AT = "SELECT id, data FROM entries WHERE k = ?"
_SQL_INSERT_ENTRY = "INSERT INTO entries (k, idp, id, ts, pstate, data) VALUES (?, ?, ?, ?, ?, ?)"
_SQL_INSERT_PAYLOAD = "INSERT INTO payloads (k, data) VALUES (?, ?)"
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
_SQL_ENTRY = "SELECT id, data FROM entries WHERE idp = ? AND id = ?"
_SQL_ENTRY_STATE = "SELECT k, pstate, data FROM entries WHERE idp = ? AND id = ?"
_SQL_PAYLOAD = (
    "SELECT e.pstate, p.data FROM entries e LEFT JOIN payloads p ON p.k = e.k"
    " WHERE e.idp = ? AND e.id = ?"
)
_SQL_SET_PSTATE = "UPDATE entries SET pstate = ? WHERE k = ?"
_SQL_DELETE_PAYLOAD = "DELETE FROM payloads WHERE k = ?"
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
        _precheck_file(self.path)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open store: {exc}") from exc
        try:
            conn.execute("PRAGMA trusted_schema = OFF")
            conn.execute("PRAGMA secure_delete = ON")
            new = _inspect(conn, self.path)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {mode}")
            conn.execute("PRAGMA journal_size_limit = 67108864")
            if new:
                _create_schema(conn)
            else:
                conn.execute(_SQL_MISBEHAVIOUR_TABLE)
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
        self, entries: Sequence[Entry], payloads: Mapping[bytes, bytes] | None = None
    ) -> AppendResult:
        """See :meth:`Store.append`. Durable (per ``synchronous``) when it returns."""
        conn = self._db()
        if not entries:
            return AppendResult((), 0)
        payloads = payloads or {}
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = self._append_in_txn(conn, entries, payloads)
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
        return result

    def _append_in_txn(
        self, conn: sqlite3.Connection, entries: Sequence[Entry], payloads: Mapping[bytes, bytes]
    ) -> AppendResult:
        # Hot loop: one dict lookup per log switch, no per-entry SQL on the common path.
        logs: dict[tuple[bytes, bytes], _LogState] = {}
        rows: list[tuple[int, int, bytes, bytes, int, bytes]] = []
        payload_rows: list[tuple[int, bytes]] = []
        added: list[Entry] = []
        duplicates = 0
        get_payload = payloads.get
        from_bytes = int.from_bytes
        key: tuple[bytes, bytes] | None = None
        state = _LogState(None, 0, b"", False)
        for entry in entries:
            h = entry.header
            if (h.author, h.topic) != key:
                key = (h.author, h.topic)
                found = logs.get(key)
                if found is None:
                    found = logs[key] = self._load_log(conn, h.author, h.topic)
                state = found
            seq = h.seq
            if seq <= state.height:
                existing = self._entry_at(conn, state, seq)
                if existing.id == entry.id:
                    duplicates += 1
                    continue
                if state.frozen:
                    raise self._frozen(conn, h.author, h.topic)
                proof = ForkProof.of(existing, entry)
                raise _ForkFound(proof, True, "conflicting entries at one seq")
            if state.frozen:
                raise self._frozen(conn, h.author, h.topic)
            if seq != state.height + 1:
                raise StoreError(
                    f"entry does not extend its log: seq_gap: seq {seq} does not follow"
                    f" head {state.height}"
                )
            if state.height and h.backlink != state.head:
                raise StoreError(
                    f"entry does not extend its log: backlink_mismatch: seq {seq}:"
                    " backlink is not the head id"
                )
            if seq > _SEQ_MASK:
                raise StoreError(f"log longer than this store holds ({_SEQ_MASK} entries)")
            if state.log is None:
                state.log = self._new_log(conn, (h.author, h.topic))
                state.base = state.log << _SEQ_BITS
            k = state.base + seq
            eid = entry.id
            payload = get_payload(eid)
            pstate = _MISSING
            if payload is not None:
                try:
                    verify_payload(h, payload)
                except ValidationError as exc:
                    raise StoreError(f"payload rejected: {exc}") from exc
                pstate = _PRESENT
                payload_rows.append((k, bytes(payload)))
            rows.append(
                (
                    k,
                    from_bytes(eid[:8], "big", signed=True),
                    eid,
                    h.timestamp.to_bytes(8, "big"),
                    pstate,
                    entry.raw + entry.signature,
                )
            )
            state.height = seq
            state.head = eid
            state.new.append(entry)
            added.append(entry)
        if rows:
            conn.executemany(_SQL_INSERT_ENTRY, rows)
            if payload_rows:
                conn.executemany(_SQL_INSERT_PAYLOAD, payload_rows)
            conn.executemany(
                _SQL_SET_HEAD,
                [(s.height, s.head, s.log) for s in logs.values() if s.height != s.stored],
            )
        return AppendResult(tuple(added), duplicates)

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
        row = self._query_one(_SQL_ENTRY, (_idp(entry_id), entry_id))
        return None if row is None else self._decode(row[0], row[1])

    # -- payloads --------------------------------------------------------------------

    def put_payload(self, entry_id: bytes, payload: bytes) -> bool:
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(_SQL_ENTRY_STATE, (_idp(entry_id), entry_id)).fetchone()
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
                conn.execute(_SQL_INSERT_PAYLOAD, (k, bytes(payload)))
                conn.execute(_SQL_SET_PSTATE, (_PRESENT, k))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "put_payload failed") from exc
        return True

    def get_payload(self, entry_id: bytes) -> bytes | PayloadState:
        row = self._query_one(_SQL_PAYLOAD, (_idp(entry_id), entry_id))
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

    def erase_payload(self, entry_id: bytes) -> bool:
        """See :meth:`Store.erase_payload`. Also checkpoints and truncates the WAL."""
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(_SQL_ENTRY_STATE, (_idp(entry_id), entry_id)).fetchone()
                if row is None:
                    conn.execute("ROLLBACK")
                    return False
                k, pstate, _ = row
                if pstate == _ERASED:
                    conn.execute("ROLLBACK")
                    return True
                conn.execute(_SQL_DELETE_PAYLOAD, (k,))
                conn.execute(_SQL_SET_PSTATE, (_ERASED, k))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "erase_payload failed") from exc
        self.checkpoint()
        return True

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
            conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = conn.execute(
                    _SQL_INSERT_FORK,
                    (author, topic, first.id, second.id, first.to_bytes(), second.to_bytes()),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
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
            conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO misbehaviour (kind, author, topic, peer, entry)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (record.kind, author, topic, record.peer_id, record.entry.to_bytes()),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
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
    return int.from_bytes(entry_id[:8], "big", signed=True)


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


def _inspect(conn: sqlite3.Connection, path: Path) -> bool:
    """Check an opened file is ours (True: empty, create the schema). Reads only."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    names = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id == 0 and objects == 0 and version == 0:
        return True
    if app_id != APPLICATION_ID:
        raise StoreCorruptError(
            f"{path}: not a p2pmsg store (SQLite database of another application)"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: store schema version {version} is newer than supported"
            f" ({SCHEMA_VERSION}); upgrade p2pmsg"
        )
    if version != SCHEMA_VERSION or not names >= _TABLES:
        raise StoreCorruptError(f"{path}: p2pmsg store with a damaged or unknown schema")
    return False


def _create_schema(conn: sqlite3.Connection) -> None:
    """Create every table and stamp the file as ours, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
