"""An acknowledged SqliteStore append survives ``kill -9``.

A child process appends entries (one at a time and in small batches, to two logs)
and prints each entry id only *after* ``append()`` returned. The test kills it with
SIGKILL at a random point, reopens the store, and checks that every acknowledged
entry is there with its payload, that every log still verifies, and that the file
passes SQLite's integrity check. The next round's child resumes from the stored
heads, so recovery is exercised repeatedly on the same file.

A second test kills a process in the middle of redaction-style erasures
(``erase_payload`` with a ``folded_into`` link) and checks that payload and link
changed together.

This covers process crashes. Power loss (the other half of ``synchronous=FULL``)
cannot be simulated here; docs/storage.md states what it relies on.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from p2pmsg.entry import create_entry
from p2pmsg.identity import Identity
from p2pmsg.store import PayloadState, SqliteStore
from p2pmsg.validate import verify_run

CHILD = r"""
import random, sys
from p2pmsg.entry import create_entry
from p2pmsg.identity import Identity
from p2pmsg.store.sqlite import SqliteStore

path, seed, topics, rng_seed = sys.argv[1:5]
ident = Identity.from_seed(bytes.fromhex(seed))
topics = [bytes.fromhex(t) for t in topics.split(",")]
rng = random.Random(int(rng_seed))
store = SqliteStore(path)
heads = {t: store.head(ident.public_key, t) for t in topics}
for _ in range(20000):
    topic = rng.choice(topics)
    prev, batch = heads[topic], []
    for _ in range(rng.choice([1, 1, 1, 2, 3, 5])):
        seq = 1 if prev is None else prev.seq + 1
        entry = create_entry(ident, topic, seq, None if prev is None else prev.id, seq,
                             b"payload %d" % seq)
        batch.append(entry)
        prev = entry
    store.append(batch, {e.id: b"payload %d" % e.seq for e in batch})
    heads[topic] = prev
    sys.stdout.write("".join(e.id.hex() + "\n" for e in batch))
    sys.stdout.flush()
"""


def _run_and_kill(path: Path, seed: bytes, topics: list[bytes], rng: random.Random) -> list[str]:
    """Start a writer, SIGKILL it after a random number of acks; all acknowledged ids."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), seed.hex(), ",".join(t.hex() for t in topics),
         str(rng.randrange(1 << 30))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    acked: list[str] = []
    try:
        assert proc.stdout is not None
        want = rng.randint(1, 300)
        while len(acked) < want:
            line = proc.stdout.readline()
            if not line:
                break
            acked.append(line.decode().strip())
        time.sleep(rng.random() * 0.005)  # land the kill at varying points of a commit
        os.kill(proc.pid, signal.SIGKILL)
        rest, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    # Whatever reached the pipe before the kill was acknowledged too (complete lines only).
    acked.extend(line.decode() for line in rest.split(b"\n") if len(line) == 64)
    return acked


def test_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random()
    seed = os.urandom(32)
    author = Identity.from_seed(seed).public_key
    topics = [os.urandom(32), os.urandom(32)]
    path = tmp_path / "store.db"
    acked_total: list[str] = []
    for _ in range(6):
        acked = _run_and_kill(path, seed, topics, rng)
        assert acked, "the writer acknowledged nothing before being killed"
        acked_total.extend(acked)
        with SqliteStore(path) as store:
            store.integrity_check()
            stored = set()
            for topic in topics:
                head = store.head(author, topic)
                log = store.get_range(author, topic, 1, head.seq) if head else []
                verify_run(None, log, full=True)
                assert len(log) == (head.seq if head else 0)
                for e in log:
                    assert store.get_payload(e.id) == b"payload %d" % e.seq
                stored |= {e.id.hex() for e in log}
            missing = [i for i in acked_total if i not in stored]
            assert not missing, f"{len(missing)} acknowledged entries lost"


ERASER = r"""
import sys
from p2pmsg.store.sqlite import SqliteStore

path, author, topic = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
store = SqliteStore(path)
head = store.head(author, topic)
for e in store.get_range(author, topic, 1, head.seq):
    if isinstance(store.get_payload(e.id), bytes):
        store.erase_payload(e.id, folded_into=e.id[::-1])
        sys.stdout.write(e.id.hex() + "\n")
        sys.stdout.flush()
"""


def test_an_erasure_and_its_folded_link_survive_sigkill_together(tmp_path: Path) -> None:
    """``erase_payload(..., folded_into=...)`` is one transaction: after a SIGKILL at
    any point, every acknowledged erasure has its link, and no entry is erased
    without its link (nor linked with its payload still there)."""
    rng = random.Random()
    ident = Identity.from_seed(os.urandom(32))
    topic = os.urandom(32)
    path = tmp_path / "store.db"
    entries = []
    prev = None
    for seq in range(1, 401):
        prev = create_entry(ident, topic, seq, None if prev is None else prev.id, seq,
                            b"payload %d" % seq)
        entries.append(prev)
    with SqliteStore(path) as store:
        store.append(entries, {e.id: b"payload %d" % e.seq for e in entries})
    acked: set[str] = set()
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", ERASER, str(path), ident.public_key.hex(), topic.hex()],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            want = rng.randint(1, 40)
            got = 0
            while got < want:
                line = proc.stdout.readline()
                if not line:
                    break
                acked.add(line.decode().strip())
                got += 1
            time.sleep(rng.random() * 0.005)
            os.kill(proc.pid, signal.SIGKILL)
            rest, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL, err.decode()
        acked |= {line.decode() for line in rest.split(b"\n") if len(line) == 64}
        with SqliteStore(path) as store:
            store.integrity_check()
            links = store.folded(topic)
            erased = {e.id for e in entries if store.get_payload(e.id) is PayloadState.ERASED}
            assert set(links) == erased  # atomic: erased iff linked
            assert all(links[i] == i[::-1] for i in erased)
            assert {bytes.fromhex(i) for i in acked} <= erased
            for e in entries:
                if e.id not in erased:
                    assert store.get_payload(e.id) == b"payload %d" % e.seq
            verify_run(None, store.get_range(ident.public_key, topic, 1, 400), full=True)
    assert acked, "the eraser acknowledged nothing before being killed"
