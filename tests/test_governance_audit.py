"""Audit log: append-only, hash-chained, node-signed, durable, queryable, exportable."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmsg.errors import StoreError
from p2pmsg.governance.audit import AuditError, AuditKind, AuditLog, verify_audit_export
from p2pmsg.identity import Identity

NODE = Identity.from_seed(b"\x05" * 32)


def fill(log: AuditLog) -> None:
    log.append(AuditKind.CONNECTION_ACCEPTED, 100, peer="ab" * 6, org="cd" * 6)
    log.append(AuditKind.CONNECTION_REFUSED, 200, peer="ef" * 6, reason="stale")
    log.append(AuditKind.PURGE, 300, topic="00" * 32, erased=3)
    log.append(AuditKind.ERASURE, 400, devices=["11" * 32], erased=2)


def test_append_query_verify_export(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db", NODE) as log:
        fill(log)
        assert log.verify() == 4
        conns = log.query(kinds=[AuditKind.CONNECTION_ACCEPTED, AuditKind.CONNECTION_REFUSED])
        assert [r.seq for r in conns] == [1, 2]
        assert [r.kind for r in log.query(since_ms=250, until_ms=400)] == [AuditKind.PURGE]
        assert log.query(kinds=[]) == []
        assert log.query(kinds=[AuditKind.PURGE])[0].details == {"topic": "00" * 32,
                                                                 "erased": 3}
        buf = io.StringIO()
        assert log.export_jsonl(buf) == 4
        assert log.head()[0] == 4
    lines = buf.getvalue().splitlines()
    assert verify_audit_export(lines, NODE.public_key) == 4
    with pytest.raises(AuditError):
        verify_audit_export(lines, Identity.generate().public_key)
    tampered = lines[2].replace("stale", "fresh")
    with pytest.raises(AuditError):
        verify_audit_export([*lines[:2], tampered, *lines[3:]])
    with pytest.raises(AuditError):
        verify_audit_export(lines[:2] + lines[3:])  # a record removed


def test_refuses_content_like_details(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.db", NODE) as log:
        with pytest.raises(ValueError, match="content"):
            log.append(AuditKind.EXPORT, 1, payload=b"secret")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            log.append(AuditKind.EXPORT, 1, text="x" * 10_000)
        assert log.verify() == 0


@pytest.mark.parametrize("sql", [
    "UPDATE audit SET details = '{\"erased\":4}' WHERE seq = 3",
    "DELETE FROM audit WHERE seq = 2",
    "UPDATE audit SET at_ms = 1 WHERE seq = 1",
    "UPDATE audit SET signature = zeroblob(64) WHERE seq = 4",
])
def test_tampering_in_the_file_is_detected(tmp_path: Path, sql: str) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path, NODE) as log:
        fill(log)
    conn = sqlite3.connect(path)
    conn.execute(sql)
    conn.commit()
    conn.close()
    with AuditLog(path, NODE) as log, pytest.raises(AuditError):
        log.verify()


def test_other_node_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    AuditLog(path, NODE).close()
    with pytest.raises(StoreError):
        AuditLog(path, Identity.generate())


@settings(max_examples=200)
@given(st.lists(st.text(max_size=60), max_size=6))
def test_export_verifier_raises_only_audit_error(lines: list[str]) -> None:
    with contextlib.suppress(AuditError):
        verify_audit_export(lines)


def test_record_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    child = textwrap.dedent(f"""
        import sys, time
        from p2pmsg.governance.audit import AuditKind, AuditLog
        from p2pmsg.identity import Identity
        log = AuditLog({str(path)!r}, Identity.from_seed(b"\\x05" * 32))
        for i in range(3):
            log.append(AuditKind.PURGE, 1000 + i, erased=i)
        print("written", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with AuditLog(path, NODE) as log:
        assert log.verify() == 3
        assert [r.details["erased"] for r in log.query()] == [0, 1, 2]
        log.append(AuditKind.PURGE, 2000, erased=9)  # the chain continues
        assert log.verify() == 4


# -- the audit log's own retention -------------------------------------------------------

def test_prune_keeps_a_verifiable_suffix_and_records_itself(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path, NODE) as log:
        fill(log)
        head_before = log.head()
        assert log.prune(before_ms=250, at_ms=500) == 2  # records at 100 and 200
        assert [r.seq for r in log.query()] == [3, 4, 5]
        pruned = log.query(kinds=[AuditKind.AUDIT_PRUNED])[0]
        assert pruned.details == {"deleted": 2, "base_seq": 2, "before_ms": 250}
        assert log.verify() == 3
        log.check_anchor(*head_before)  # record 4 is still there, unchanged
        buf = io.StringIO()
        assert log.export_jsonl(buf) == 3
    assert verify_audit_export(buf.getvalue().splitlines(), NODE.public_key) == 3
    with sqlite3.connect(path) as conn:  # the pruned rows are gone from the file
        assert conn.execute("SELECT COUNT(*) FROM audit WHERE seq <= 2").fetchone()[0] == 0
    with AuditLog(path, NODE) as log:  # the checkpoint survives a reopen
        assert log.verify() == 3
        with pytest.raises(AuditError, match="pruned"):
            log.check_anchor(1, head_before[1])


def test_prune_only_removes_a_prefix(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db", NODE) as log:
        log.append(AuditKind.PURGE, 100, erased=1)
        log.append(AuditKind.PURGE, 900, erased=1)
        log.append(AuditKind.PURGE, 50, erased=1)  # clock stepped back: stays
        assert log.prune(before_ms=500, at_ms=1000) == 1
        assert [r.at_ms for r in log.query()] == [900, 50, 1000]
        assert log.prune(before_ms=0, at_ms=1000) == 0
        assert log.verify() == 3


def test_prune_everything_then_append_continues_the_chain(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db", NODE) as log:
        fill(log)
        assert log.prune(before_ms=10_000, at_ms=10_000) == 4
        assert log.prune(before_ms=20_000, at_ms=20_000) == 1  # the first AUDIT_PRUNED
        assert [r.seq for r in log.query()] == [6]
        log.append(AuditKind.EXPORT, 30_000, room="00" * 32)
        assert log.verify() == 2
        assert log.head()[0] == 7


def test_forged_or_rolled_back_checkpoint_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path, NODE) as log:
        fill(log)
        log.prune(before_ms=150, at_ms=500)
        old = sqlite3.connect(path).execute(
            "SELECT v FROM audit_meta WHERE k = 'checkpoint'").fetchone()[0]
        log.prune(before_ms=350, at_ms=600)
    with sqlite3.connect(path) as conn:  # roll the checkpoint back: a gap appears
        conn.execute("UPDATE audit_meta SET v = ? WHERE k = 'checkpoint'", (old,))
    with AuditLog(path, NODE) as log, pytest.raises(AuditError):
        log.verify()
    other = Identity.generate()
    from p2pmsg import _cbor
    from p2pmsg.identity import Domain
    body = _cbor.dumps([1, 3, b"\x00" * 32])
    forged = _cbor.dumps([3, b"\x00" * 32, other.sign(Domain.AUDIT_CHECKPOINT, body)])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE audit_meta SET v = ? WHERE k = 'checkpoint'", (forged,))
    with AuditLog(path, NODE) as log, pytest.raises(AuditError, match="checkpoint"):
        log.verify()


def test_anchor_detects_a_truncated_tail(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path, NODE) as log:
        fill(log)
        anchor = log.head()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM audit WHERE seq = 4")
    with AuditLog(path, NODE) as log:
        assert log.verify() == 3  # the chain alone cannot tell
        with pytest.raises(AuditError, match="truncated"):
            log.check_anchor(*anchor)
        with pytest.raises(AuditError, match="differs"):
            log.check_anchor(3, anchor[1])
