"""The audit log: a local, append-only, hash-chained, node-signed record of events (I/O).

This module does file I/O (SQLite, its own file, never the message store) and is
therefore outside the sans-IO core; time is still an argument (``at_ms``).

Theory of operation
-------------------
Each record is ``(seq, at_ms, kind, details)``; ``details`` is a small JSON object
of identifiers and counts — **never message content** (the API refuses bytes
values, long strings and large objects; callers hex-encode ids and keys). Records
are chained::

    digest(n) = BLAKE2b-256(digest(n-1) || canonical CBOR [1, seq, at_ms, kind, json])
    signature(n) = Ed25519(node key, Domain.AUDIT || digest(n))

with ``digest(0) = 32 zero bytes``. Changing, removing or reordering any record
breaks every later digest; a record the node did not sign fails its signature.
Truncating the *tail* cannot be detected from the file alone: export the head
(:meth:`AuditLog.head`) to a second place (SIEM, the DPO's mailbox) to anchor it,
and check a remembered head later with :meth:`AuditLog.check_anchor` (``p2pmsg
audit verify --anchor SEQ:DIGEST``). The daemon writes the head to its structured
log after every purge run, so the journal is such a second place by default.

**Retention of the log itself** (the records are personal data: device keys,
peers, times). :meth:`AuditLog.prune` deletes the oldest records — the longest
prefix stamped before a cut-off — and keeps a signed *checkpoint*
``(base_seq, base_digest)``: the sequence number and digest of the last deleted
record, signed in the AUDIT_CHECKPOINT domain over
``canonical CBOR [1, base_seq, base_digest]``. Verification then starts from the
checkpoint instead of from zero, so the remaining records still verify and
nothing can be inserted before them; the prune itself is recorded
(``audit_pruned``: how many records, the new base). Exports carry the checkpoint
in their header line.

Every :meth:`AuditLog.append` is one fsync'd SQLite transaction
(``synchronous=FULL``): when it returns the record survives ``kill -9`` and power
loss (tests/test_governance_audit.py kills a writer and reopens).

Query with :meth:`AuditLog.query`, verify with :meth:`AuditLog.verify`, export with
:meth:`AuditLog.export_jsonl` and check an export offline with
:func:`verify_audit_export`.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeAlias

from .. import _cbor
from ..errors import P2PMsgError, Reason, StoreError, ValidationError
from ..identity import Domain, Identity, verify

__all__ = [
    "AuditError",
    "AuditKind",
    "AuditLog",
    "AuditRecord",
    "Checkpoint",
    "Detail",
    "verify_audit_export",
]

MAX_DETAIL_STRING = 512
MAX_DETAILS_JSON = 8192
_ZERO = bytes(32)
_RECORD_VERSION = 1

Detail: TypeAlias = str | int | bool | list[str] | list[int] | None
"""A detail value: identifiers (hex), counts, flags, reason codes — not content."""


class AuditKind(enum.Enum):
    """What happened. Values are stable strings (they are in exports)."""

    CONNECTION_ACCEPTED = "connection_accepted"
    CONNECTION_REFUSED = "connection_refused"
    FEDERATION_LIST_CHANGED = "federation_list_changed"
    FEDERATION_LIST_REFUSED = "federation_list_refused"
    MEMBERSHIP_CHANGED = "membership_changed"
    KEY_ROTATED = "key_rotated"
    EXPORT = "export"
    PURGE = "purge"
    REDACTION = "redaction"
    ERASURE = "erasure"
    LEGAL_HOLD = "legal_hold"
    FORK_DETECTED = "fork_detected"
    DEVICE_REVOKED = "device_revoked"
    BAD_SIGNATURE = "bad_signature"
    TOPICS_DENIED = "topics_denied"
    """A peer asked for topics the policy does not let it read (at the session hello)."""
    PROTOCOL_ERROR = "protocol_error"
    """A session ended because the peer broke the sync protocol (reason code only)."""
    ACCESS_REVOKED = "access_revoked"
    """An open session was closed because the policy no longer grants what it had."""
    AUDIT_PRUNED = "audit_pruned"
    """The oldest audit records were deleted by the audit log's own retention."""


class AuditError(ValidationError):
    """The audit log (or an export of it) does not verify: tampered, reordered, forged."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at_ms: int
    kind: AuditKind
    details: Mapping[str, Detail]
    digest: bytes
    signature: bytes

    def to_json(self) -> dict[str, object]:
        return {"seq": self.seq, "at_ms": self.at_ms, "kind": self.kind.value,
                "details": dict(self.details), "digest": self.digest.hex(),
                "signature": self.signature.hex()}


def _details_json(details: Mapping[str, object]) -> str:
    for key, value in details.items():
        if not isinstance(key, str) or not _ok_value(value):
            raise ValueError(
                f"audit detail {key!r}: only str (<= {MAX_DETAIL_STRING} chars), int, bool, "
                "None or lists of str/int are allowed (hex-encode ids; never content)"
            )
    text = json.dumps(dict(details), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    if len(text) > MAX_DETAILS_JSON:
        raise ValueError(f"audit details larger than {MAX_DETAILS_JSON} characters")
    return text


def _ok_value(value: object) -> bool:
    if isinstance(value, list):
        return all(_ok_scalar(v) and v is not None and not isinstance(v, bool) for v in value)
    return _ok_scalar(value)


def _ok_scalar(value: object) -> bool:
    if value is None or isinstance(value, bool | int):
        return True
    return isinstance(value, str) and len(value) <= MAX_DETAIL_STRING


def _checkpoint_body(base_seq: int, base_digest: bytes) -> bytes:
    return _cbor.dumps([_RECORD_VERSION, base_seq, base_digest])


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a pruned audit log now starts: the last deleted record, node-signed."""

    base_seq: int
    base_digest: bytes
    signature: bytes

    def verify(self, node_key: bytes) -> None:
        """Raise :class:`AuditError` unless ``node_key`` signed this checkpoint."""
        ok = (self.base_seq >= 0 and len(self.base_digest) == 32
              and verify(node_key, Domain.AUDIT_CHECKPOINT,
                         _checkpoint_body(self.base_seq, self.base_digest), self.signature))
        if not ok:
            raise AuditError(Reason.BAD_SIGNATURE, "audit checkpoint is not node-signed")

    def to_json(self) -> dict[str, object]:
        return {"base_seq": self.base_seq, "base_digest": self.base_digest.hex(),
                "signature": self.signature.hex()}


_GENESIS = Checkpoint(0, _ZERO, b"")


def _digest(prev: bytes, seq: int, at_ms: int, kind: str, details: str) -> bytes:
    body = _cbor.dumps([_RECORD_VERSION, seq, at_ms, kind, details])
    return hashlib.blake2b(prev + body, digest_size=32).digest()


class AuditLog:
    """An audit log file owned by one node key. Not thread-safe; one owner.

    Open with ``AuditLog(path, node_identity)``; a file written under another node
    key is refused (StoreError) rather than silently mixed.
    """

    def __init__(self, path: str | os.PathLike[str], node: Identity) -> None:
        self.path = Path(path)
        self._node = node
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS audit_meta (k TEXT PRIMARY KEY, v BLOB NOT NULL)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, at_ms INTEGER NOT "
                "NULL, kind TEXT NOT NULL, details TEXT NOT NULL, digest BLOB NOT NULL, "
                "signature BLOB NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS audit_kind_time ON audit (kind, at_ms)")
            conn.execute("CREATE INDEX IF NOT EXISTS audit_time ON audit (at_ms)")
            row = conn.execute("SELECT v FROM audit_meta WHERE k = 'node'").fetchone()
            if row is None:
                conn.execute("INSERT INTO audit_meta VALUES ('node', ?)", (node.public_key,))
            elif bytes(row[0]) != node.public_key:
                conn.close()
                raise StoreError(f"{self.path}: audit log belongs to another node key")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open audit log ({exc})") from exc
        self._conn: sqlite3.Connection | None = conn

    @property
    def node_key(self) -> bytes:
        return self._node.public_key

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("audit log is closed")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def head(self) -> tuple[int, bytes]:
        """(seq, digest) of the last record; the checkpoint (or (0, zeros)) if there
        is none. Anchor it elsewhere and check it later with :meth:`check_anchor`."""
        row = self._db().execute(
            "SELECT seq, digest FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            base = self.checkpoint()
            return base.base_seq, base.base_digest
        return int(row[0]), bytes(row[1])

    def checkpoint(self) -> Checkpoint:
        """Where the chain starts: the last :meth:`prune`'s checkpoint, or genesis."""
        row = self._db().execute(
            "SELECT v FROM audit_meta WHERE k = 'checkpoint'").fetchone()
        if row is None:
            return _GENESIS
        try:
            seq, digest, sig = _cbor.loads_canonical(bytes(row[0]), "audit checkpoint", 256)
            return Checkpoint(int(seq), bytes(digest), bytes(sig))
        except (P2PMsgError, TypeError, ValueError) as exc:
            raise AuditError(Reason.MALFORMED, "audit checkpoint is damaged") from exc

    def check_anchor(self, seq: int, digest: bytes) -> None:
        """Raise :class:`AuditError` unless record ``seq`` (still held, or the
        checkpoint) has ``digest``: detects a truncated or rewritten tail against a
        head remembered elsewhere. Verify the chain too (:meth:`verify`)."""
        base = self.checkpoint()
        if seq == base.base_seq:
            found: bytes | None = base.base_digest
        elif seq < base.base_seq:
            raise AuditError(Reason.SEQ_GAP, f"audit record {seq} was pruned; anchor newer")
        else:
            row = self._db().execute("SELECT digest FROM audit WHERE seq = ?", (seq,)).fetchone()
            found = None if row is None else bytes(row[0])
        if found is None:
            raise AuditError(Reason.SEQ_GAP, f"audit record {seq} is missing: tail truncated")
        if found != digest:
            raise AuditError(Reason.BACKLINK_MISMATCH, f"audit record {seq} differs from anchor")

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed (fsync'd) on success, rolled
        back on any exception; SQLite errors become :class:`StoreError`."""
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: audit {what} failed ({exc})") from exc

    def prune(self, before_ms: int, at_ms: int) -> int:
        """Delete the longest prefix of records stamped before ``before_ms``; keep a
        signed checkpoint and record the prune. Returns how many were deleted.

        Only a prefix goes (a record with an earlier stamp after a later one stays
        until everything before it goes), so the rest still verifies from the
        checkpoint. The deleted rows are overwritten (``secure_delete``)."""
        self._db().execute("PRAGMA secure_delete = ON")
        with self._write("prune") as conn:
            stop = conn.execute(
                "SELECT MIN(seq) FROM audit WHERE at_ms >= ?", (before_ms,)).fetchone()[0]
            cut = conn.execute(
                "SELECT seq, digest FROM audit WHERE seq < COALESCE(?, 1 << 62) "
                "ORDER BY seq DESC LIMIT 1", (stop,)).fetchone()
            if cut is None:
                return 0
            base_seq, base_digest = int(cut[0]), bytes(cut[1])
            deleted = int(conn.execute("DELETE FROM audit WHERE seq <= ?", (base_seq,)).rowcount)
            sig = self._node.sign(Domain.AUDIT_CHECKPOINT,
                                  _checkpoint_body(base_seq, base_digest))
            conn.execute("INSERT OR REPLACE INTO audit_meta VALUES ('checkpoint', ?)",
                         (_cbor.dumps([base_seq, base_digest, sig]),))
        self.append(AuditKind.AUDIT_PRUNED, at_ms, deleted=deleted, base_seq=base_seq,
                    before_ms=before_ms)
        return deleted

    def append(self, kind: AuditKind, at_ms: int, **details: Detail) -> AuditRecord:
        """Record an event durably (fsync'd on return). ValueError for content-like details."""
        text = _details_json(details)
        with self._write("append") as conn:
            row = conn.execute(
                "SELECT seq, digest FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            if row is None:  # empty: continue from the checkpoint (pruned log)
                base = self.checkpoint()
                seq, prev = base.base_seq + 1, base.base_digest
            else:
                seq, prev = int(row[0]) + 1, bytes(row[1])
            digest = _digest(prev, seq, at_ms, kind.value, text)
            signature = self._node.sign(Domain.AUDIT, digest)
            conn.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)",
                         (seq, at_ms, kind.value, text, digest, signature))
        return AuditRecord(seq, at_ms, kind, json.loads(text), digest, signature)

    def _rows(self, sql: str, args: Sequence[object]) -> Iterator[AuditRecord]:
        for seq, at_ms, kind, text, digest, sig in self._db().execute(sql, tuple(args)):
            yield AuditRecord(int(seq), int(at_ms), AuditKind(kind), json.loads(text),
                              bytes(digest), bytes(sig))

    def query(
        self,
        kinds: Iterable[AuditKind] | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> list[AuditRecord]:
        """Records of the given kinds with ``since_ms <= at_ms < until_ms``, in seq order."""
        where: list[str] = []
        args: list[object] = []
        if kinds is not None:
            values = [k.value for k in kinds]
            where.append(f"kind IN ({','.join('?' * len(values))})" if values else "0")
            args += values
        if since_ms is not None:
            where.append("at_ms >= ?")
            args.append(since_ms)
        if until_ms is not None:
            where.append("at_ms < ?")
            args.append(until_ms)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return list(self._rows(
            "SELECT seq, at_ms, kind, details, digest, signature FROM audit"  # noqa: S608
            + clause + " ORDER BY seq", args))

    def verify(self) -> int:
        """Check the whole chain and every signature; the number of records. AuditError."""
        base = self.checkpoint()
        if base is not _GENESIS:
            base.verify(self.node_key)
        rows = self._db().execute(
            "SELECT seq, at_ms, kind, details, digest, signature FROM audit ORDER BY seq")
        return _verify_chain(
            ((int(s), int(t), str(k), str(d), bytes(g), bytes(sig))
             for s, t, k, d, g, sig in rows),
            self.node_key, base,
        )

    def export_jsonl(self, out: IO[str]) -> int:
        """Write a header line and one JSON line per record; verify with
        :func:`verify_audit_export`. Returns the number of records."""
        header: dict[str, object] = {"format": "p2pmsg-audit/1", "node": self.node_key.hex()}
        base = self.checkpoint()
        if base is not _GENESIS:
            header["checkpoint"] = base.to_json()
        out.write(json.dumps(header) + "\n")
        count = 0
        for seq, at_ms, kind, text, digest, sig in self._db().execute(
                "SELECT seq, at_ms, kind, details, digest, signature FROM audit ORDER BY seq"):
            out.write(json.dumps({"seq": seq, "at_ms": at_ms, "kind": kind, "details": text,
                                  "digest": bytes(digest).hex(),
                                  "signature": bytes(sig).hex()}) + "\n")
            count += 1
        return count


_Row: TypeAlias = tuple[int, int, str, str, bytes, bytes]


def _verify_chain(rows: Iterable[_Row], node_key: bytes, base: Checkpoint = _GENESIS) -> int:
    """Check records from ``base`` on (its signature is checked by the caller);
    returns the number of records checked."""
    prev, expected = base.base_digest, base.base_seq + 1
    for seq, at_ms, kind, text, digest, sig in rows:
        if seq != expected:
            raise AuditError(Reason.SEQ_GAP, f"audit record {expected} is missing")
        if _digest(prev, seq, at_ms, kind, text) != digest:
            raise AuditError(Reason.BACKLINK_MISMATCH, f"audit record {seq} was altered")
        if not verify(node_key, Domain.AUDIT, digest, sig):
            raise AuditError(Reason.BAD_SIGNATURE, f"audit record {seq} is not node-signed")
        prev, expected = digest, expected + 1
    return expected - 1 - base.base_seq


def verify_audit_export(lines: Iterable[str], node_key: bytes | None = None) -> int:
    """Verify an exported audit log offline; the number of records. Raises AuditError.

    ``node_key`` pins the expected node; without it the key in the header line is
    used (which proves integrity, not origin).
    """
    it = iter(lines)
    try:
        header = json.loads(next(it))
        key = bytes.fromhex(header["node"])
        if header.get("format") != "p2pmsg-audit/1":
            raise AuditError(Reason.UNKNOWN_VERSION, "not a p2pmsg audit export")

        def rows() -> Iterator[_Row]:
            for line in it:
                r = json.loads(line)
                yield (int(r["seq"]), int(r["at_ms"]), str(r["kind"]), str(r["details"]),
                       bytes.fromhex(r["digest"]), bytes.fromhex(r["signature"]))

        if node_key is not None and node_key != key:
            raise AuditError(Reason.WRONG_ISSUER, "audit export is from another node")
        base = _GENESIS
        if "checkpoint" in header:
            cp = header["checkpoint"]
            base = Checkpoint(int(cp["base_seq"]), bytes.fromhex(cp["base_digest"]),
                              bytes.fromhex(cp["signature"]))
            base.verify(key)
        return _verify_chain(rows(), key, base)
    except AuditError:
        raise
    except (StopIteration, ValueError, KeyError, TypeError, P2PMsgError) as exc:
        raise AuditError(Reason.MALFORMED, f"audit export is malformed ({exc})") from exc
