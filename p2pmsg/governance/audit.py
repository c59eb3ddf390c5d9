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
(:meth:`AuditLog.head`) to a second place (SIEM, the DPO's mailbox) to anchor it.

Every :meth:`AuditLog.append` is one fsync'd SQLite transaction
(``synchronous=FULL``): when it returns the record survives ``kill -9`` and power
loss (tests/test_governance_audit.py kills a writer and reopens).

Query with :meth:`AuditLog.query`, verify with :meth:`AuditLog.verify`, export with
:meth:`AuditLog.export_jsonl` and check an export offline with
:func:`verify_audit_export`.
"""

from __future__ import annotations

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
        """(seq, digest) of the last record; (0, zeros) if empty. Anchor it elsewhere."""
        row = self._db().execute(
            "SELECT seq, digest FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, _ZERO) if row is None else (int(row[0]), bytes(row[1]))

    def append(self, kind: AuditKind, at_ms: int, **details: Detail) -> AuditRecord:
        """Record an event durably (fsync'd on return). ValueError for content-like details."""
        text = _details_json(details)
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT seq, digest FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev = (1, _ZERO) if row is None else (int(row[0]) + 1, bytes(row[1]))
                digest = _digest(prev, seq, at_ms, kind.value, text)
                signature = self._node.sign(Domain.AUDIT, digest)
                conn.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)",
                             (seq, at_ms, kind.value, text, digest, signature))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: audit append failed ({exc})") from exc
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
        rows = self._db().execute(
            "SELECT seq, at_ms, kind, details, digest, signature FROM audit ORDER BY seq")
        return _verify_chain(
            ((int(s), int(t), str(k), str(d), bytes(g), bytes(sig))
             for s, t, k, d, g, sig in rows),
            self.node_key,
        )

    def export_jsonl(self, out: IO[str]) -> int:
        """Write a header line and one JSON line per record; verify with
        :func:`verify_audit_export`. Returns the number of records."""
        out.write(json.dumps({"format": "p2pmsg-audit/1", "node": self.node_key.hex()}) + "\n")
        count = 0
        for seq, at_ms, kind, text, digest, sig in self._db().execute(
                "SELECT seq, at_ms, kind, details, digest, signature FROM audit ORDER BY seq"):
            out.write(json.dumps({"seq": seq, "at_ms": at_ms, "kind": kind, "details": text,
                                  "digest": bytes(digest).hex(),
                                  "signature": bytes(sig).hex()}) + "\n")
            count += 1
        return count


_Row: TypeAlias = tuple[int, int, str, str, bytes, bytes]


def _verify_chain(rows: Iterable[_Row], node_key: bytes) -> int:
    prev, expected = _ZERO, 1
    for seq, at_ms, kind, text, digest, sig in rows:
        if seq != expected:
            raise AuditError(Reason.SEQ_GAP, f"audit record {expected} is missing")
        if _digest(prev, seq, at_ms, kind, text) != digest:
            raise AuditError(Reason.BACKLINK_MISMATCH, f"audit record {seq} was altered")
        if not verify(node_key, Domain.AUDIT, digest, sig):
            raise AuditError(Reason.BAD_SIGNATURE, f"audit record {seq} is not node-signed")
        prev, expected = digest, expected + 1
    return expected - 1


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
        return _verify_chain(rows(), key)
    except AuditError:
        raise
    except (StopIteration, ValueError, KeyError, TypeError, P2PMsgError) as exc:
        raise AuditError(Reason.MALFORMED, f"audit export is malformed ({exc})") from exc
