"""The Store contract, run against every backend (MemoryStore is the reference).

Sections: parametrised behaviour tests (``store`` fixture: memory and sqlite), a
hypothesis property that both backends end in the same state for random batches,
then SqliteStore-only tests: reopening, file identity/corruption, secure erasure.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from chain_helpers import Chain, build_chain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pmsg.entry import Entry, create_entry
from p2pmsg.errors import ForkError, StoreCorruptError, StoreError
from p2pmsg.forks import ForkProof
from p2pmsg.identity import Identity
from p2pmsg.store import LogHead, MemoryStore, PayloadState, SqliteStore, Store
from p2pmsg.store import sqlite as sqlite_store
from p2pmsg.store.base import Misbehaviour
from p2pmsg.store.sqlite import APPLICATION_ID, SCHEMA_VERSION
from p2pmsg.validate import verify_run

AnyStore = MemoryStore | SqliteStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyStore]:
    s: AnyStore = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db")
    yield s
    s.close()


def snapshot(store: AnyStore, ids: Sequence[bytes] = ()) -> dict[str, Any]:
    """Everything observable through the Store API (plus payload states of ``ids``)."""
    state: dict[str, Any] = {"topics": store.topics(), "forks": store.forks(), "logs": {}}
    known = list(ids)
    for topic in state["topics"]:
        heads = store.heads(topic)
        state.setdefault("heads", {})[topic] = heads
        state.setdefault("missing", {})[topic] = store.missing_payloads(topic)
        for h in heads:
            log = store.get_range(h.author, topic, 1, h.seq)
            state["logs"][(h.author, topic)] = log
            known.extend(e.id for e in log)
    logs = set(state["logs"]) | {p.log_id for p in state["forks"]}
    state["frozen"] = {log: store.is_frozen(*log) for log in logs}
    state["payloads"] = {i: store.get_payload(i) for i in known}
    state["folded"] = {topic: store.folded(topic) for topic in state["topics"]}
    return state


# -- basics ------------------------------------------------------------------------


def test_both_implement_the_protocol(store: AnyStore) -> None:
    assert isinstance(store, Store)


def test_empty_store(store: AnyStore, topic: bytes, identity: Identity) -> None:
    assert store.topics() == []
    assert store.heads(topic) == []
    assert store.head(identity.public_key, topic) is None
    assert store.get_range(identity.public_key, topic, 1, 10) == []
    assert store.get_entry(b"\x00" * 32) is None
    assert store.get_payload(b"\x00" * 32) is PayloadState.UNKNOWN
    assert store.missing_payloads(topic) == []
    assert store.forks() == []
    assert not store.is_frozen(identity.public_key, topic)
    assert store.append([]).added == ()


def test_append_and_read_back(store: AnyStore) -> None:
    chain = build_chain(5)
    result = store.append(chain.entries, chain.payloads)
    assert result.added == tuple(chain.entries)
    assert result.duplicates == 0
    assert store.head(chain.author, chain.topic) == chain.entries[-1]
    assert store.heads(chain.topic) == [LogHead(chain.author, 5, chain.entries[-1].id)]
    assert store.topics() == [chain.topic]
    for e in chain.entries:
        assert store.get_entry(e.id) == e
        assert store.get_payload(e.id) == chain.payloads[e.id]
    assert store.missing_payloads(chain.topic) == []


@pytest.mark.parametrize(
    ("start", "end", "want"),
    [(1, 5, [1, 2, 3, 4, 5]), (0, 2, [1, 2]), (-7, 1, [1]), (2, 4, [2, 3, 4]),
     (4, 100, [4, 5]), (3, 3, [3]), (4, 3, []), (6, 9, []), (1, 0, []),
     (-3, -1, []), (2, 2**64, [2, 3, 4, 5]), (2**64, 2**65, [])],
)
def test_get_range(store: AnyStore, start: int, end: int, want: list[int]) -> None:
    chain = build_chain(5)
    store.append(chain.entries)
    got = store.get_range(chain.author, chain.topic, start, end)
    assert [e.seq for e in got] == want
    assert got == [chain.entries[s - 1] for s in want]
    assert store.get_range(chain.author, os.urandom(32), start, end) == []


def test_heads_and_topics_are_sorted(store: AnyStore, topic: bytes) -> None:
    chains = [build_chain(n, topic=topic) for n in (1, 3, 2)]
    other = build_chain(2)
    for c in [*chains, other]:
        store.append(c.entries)
    want = sorted((c.author, len(c.entries), c.entries[-1].id) for c in chains)
    assert store.heads(topic) == [LogHead(*w) for w in want]
    assert store.topics() == sorted([topic, other.topic])


def test_batch_may_extend_several_logs_interleaved(store: AnyStore, topic: bytes) -> None:
    a, b = build_chain(3, topic=topic), build_chain(3, topic=topic)
    mixed = [a.entries[0], b.entries[0], b.entries[1], a.entries[1], a.entries[2], b.entries[2]]
    assert store.append(mixed).added == tuple(mixed)
    assert store.head(a.author, topic) == a.entries[-1]
    assert store.head(b.author, topic) == b.entries[-1]


def test_extends_in_several_batches(store: AnyStore) -> None:
    chain = build_chain(6)
    for i in range(0, 6, 2):
        store.append(chain.entries[i : i + 2])
    assert store.get_range(chain.author, chain.topic, 1, 6) == chain.entries


# -- refusals: the batch is all or nothing --------------------------------------------


def test_gap_is_refused_and_nothing_stored(store: AnyStore) -> None:
    chain = build_chain(4)
    with pytest.raises(StoreError, match="seq_gap"):
        store.append([chain.entries[0], chain.entries[2]], chain.payloads)
    assert store.head(chain.author, chain.topic) is None
    assert store.topics() == []
    assert store.get_payload(chain.entries[0].id) is PayloadState.UNKNOWN


def test_first_entry_must_be_seq_1(store: AnyStore) -> None:
    chain = build_chain(2)
    with pytest.raises(StoreError, match="seq_gap"):
        store.append(chain.entries[1:])


def test_wrong_backlink_is_refused(store: AnyStore) -> None:
    chain = build_chain(2)
    fork = build_chain(2, identity=chain.identity, after=chain.entries[0], tag=b"x")
    store.append(chain.entries[:1])
    other_branch = build_chain(1, identity=chain.identity, after=fork.entries[0])
    # seq 3 whose backlink is the id of the *other* seq 2
    with pytest.raises(StoreError, match="backlink"):
        store.append([chain.entries[1], other_branch.entries[0]])
    assert store.head(chain.author, chain.topic) == chain.entries[0]


def test_error_late_in_batch_rolls_back_other_logs(store: AnyStore, topic: bytes) -> None:
    a, b = build_chain(2, topic=topic), build_chain(3, topic=topic)
    store.append(a.entries[:1])
    with pytest.raises(StoreError):
        store.append([a.entries[1], b.entries[0], b.entries[2]])
    assert store.heads(topic) == [LogHead(a.author, 1, a.entries[0].id)]
    assert store.get_entry(b.entries[0].id) is None


def test_bad_payload_rejects_the_batch(store: AnyStore) -> None:
    chain = build_chain(3)
    bad = dict(chain.payloads)
    bad[chain.entries[2].id] = b"not the payload"
    with pytest.raises(StoreError, match="payload"):
        store.append(chain.entries, bad)
    assert store.get_entry(chain.entries[0].id) is None
    same_size = dict(chain.payloads)
    p = chain.payloads[chain.entries[1].id]
    same_size[chain.entries[1].id] = bytes([p[0] ^ 1]) + p[1:]
    with pytest.raises(StoreError, match="payload"):
        store.append(chain.entries, same_size)
    assert store.topics() == []


def test_payloads_are_optional_and_extra_keys_ignored(store: AnyStore) -> None:
    chain = build_chain(3)
    first = chain.entries[0].id
    store.append(chain.entries, {first: chain.payloads[first], b"\x01" * 32: b"stray"})
    assert store.get_payload(first) == chain.payloads[first]
    assert store.get_payload(chain.entries[1].id) is PayloadState.MISSING
    assert store.get_payload(b"\x01" * 32) is PayloadState.UNKNOWN


# -- duplicates ---------------------------------------------------------------------


def test_duplicates_are_idempotent(store: AnyStore) -> None:
    chain = build_chain(3)
    store.append(chain.entries[:2])
    result = store.append(chain.entries)
    assert result.added == (chain.entries[2],)
    assert result.duplicates == 2
    again = store.append(chain.entries)
    assert again.added == ()
    assert again.duplicates == 3
    assert store.get_range(chain.author, chain.topic, 1, 9) == chain.entries


def test_duplicate_within_one_batch(store: AnyStore) -> None:
    chain = build_chain(2)
    e1, e2 = chain.entries
    result = store.append([e1, e1, e2, e1])
    assert result.added == (e1, e2)
    assert result.duplicates == 2


# -- forks --------------------------------------------------------------------------


def _forked(n: int = 3, at: int = 2) -> tuple[Chain, Chain]:
    main = build_chain(n)
    prev = main.entries[at - 2] if at > 1 else None
    branch = build_chain(
        n - at + 1, identity=main.identity, topic=main.topic, after=prev, tag=b"branch"
    )
    return main, branch


def test_fork_is_recorded_and_freezes_the_log(store: AnyStore, topic: bytes) -> None:
    main, branch = _forked(3, at=2)
    other = build_chain(1, topic=topic)
    store.append(main.entries)
    with pytest.raises(ForkError) as info:
        store.append([other.entries[0], branch.entries[0]])
    proof = ForkProof.of(main.entries[1], branch.entries[0])
    assert info.value.proof == proof
    assert store.forks() == [proof]
    assert store.is_frozen(main.author, main.topic)
    assert store.get_entry(other.entries[0].id) is None  # the batch was not stored
    assert store.get_entry(branch.entries[0].id) is None
    assert store.head(main.author, main.topic) == main.entries[-1]
    assert not store.is_frozen(other.author, other.topic)


def test_frozen_log_refuses_new_entries_but_accepts_duplicates(store: AnyStore) -> None:
    main, branch = _forked(4, at=3)
    store.append(main.entries[:3])
    with pytest.raises(ForkError):
        store.append(branch.entries[:1])
    with pytest.raises(ForkError, match="frozen") as info:
        store.append(main.entries[3:])
    assert info.value.proof == store.forks()[0]
    with pytest.raises(ForkError, match="frozen"):  # also a second conflicting entry
        store.append(branch.entries[:1])
    assert len(store.forks()) == 1
    assert store.append(main.entries[:2]).duplicates == 2
    assert store.head(main.author, main.topic) == main.entries[2]


def test_fork_within_one_batch(store: AnyStore) -> None:
    main, branch = _forked(2, at=1)
    with pytest.raises(ForkError) as info:
        store.append([main.entries[0], branch.entries[0]])
    assert info.value.proof == ForkProof.of(main.entries[0], branch.entries[0])
    assert store.is_frozen(main.author, main.topic)
    assert store.topics() == []


def test_record_fork(store: AnyStore) -> None:
    main, branch = _forked(2, at=2)
    proof = ForkProof.of(main.entries[1], branch.entries[0])
    assert not store.is_frozen(main.author, main.topic)
    assert store.record_fork(proof) is True  # no entries of that log needed
    assert store.record_fork(proof) is False
    assert store.is_frozen(main.author, main.topic)
    with pytest.raises(ForkError, match="frozen"):
        store.append(main.entries[:1])
    later = _forked(2, at=1)
    second = ForkProof.of(later[0].entries[0], later[1].entries[0])
    assert store.record_fork(second) is True
    assert store.forks() == [proof, second]


def test_record_misbehaviour(store: AnyStore) -> None:
    chain = build_chain(3)
    other = build_chain(1)
    assert store.misbehaviours() == []
    first = Misbehaviour("bad_signature", chain.entries[1], b"\x07" * 32)
    assert store.record_misbehaviour(first) is True
    # one record per (kind, log): the first is the evidence, later ones are ignored
    assert store.record_misbehaviour(Misbehaviour("bad_signature", chain.entries[2])) is False
    second = Misbehaviour("bad_signature", other.entries[0])
    assert store.record_misbehaviour(second) is True
    assert store.misbehaviours() == [first, second]
    # evidence is not a fork: the log still accepts entries (the node decides)
    assert not store.is_frozen(chain.author, chain.topic)
    assert store.append(chain.entries).added == tuple(chain.entries)


# -- payloads -----------------------------------------------------------------------


def test_put_payload(store: AnyStore) -> None:
    chain = build_chain(2)
    store.append(chain.entries)
    e = chain.entries[0]
    with pytest.raises(StoreError, match="unknown entry"):
        store.put_payload(b"\x02" * 32, b"x")
    with pytest.raises(StoreError, match="payload"):
        store.put_payload(e.id, chain.payloads[e.id] + b"!")
    assert store.get_payload(e.id) is PayloadState.MISSING
    assert store.put_payload(e.id, chain.payloads[e.id]) is True
    assert store.put_payload(e.id, chain.payloads[e.id]) is False
    assert store.get_payload(e.id) == chain.payloads[e.id]
    assert store.missing_payloads(chain.topic) == [chain.entries[1].id]


def test_payloads_verified_skips_nothing_but_the_hash(store: AnyStore) -> None:
    chain = build_chain(3)
    result = store.append(chain.entries[:2], chain.payloads, payloads_verified=True)
    assert result.added == tuple(chain.entries[:2])
    assert store.get_payload(chain.entries[0].id) == chain.payloads[chain.entries[0].id]
    # the flag only trusts payload hashes: log linkage is still enforced
    with pytest.raises(StoreError, match="seq_gap"):
        store.append([build_chain(3).entries[2]], payloads_verified=True)
    # and without it a wrong payload is still refused
    bad = {chain.entries[2].id: b"not the payload"}
    with pytest.raises(StoreError, match="payload"):
        store.append(chain.entries[2:], bad)


def test_erase_payload_is_final(store: AnyStore) -> None:
    chain = build_chain(3)
    store.append(chain.entries, chain.payloads)
    a, b, _ = chain.entries
    assert store.erase_payload(a.id) is True
    assert store.get_payload(a.id) is PayloadState.ERASED
    assert store.put_payload(a.id, chain.payloads[a.id]) is False  # never resurrected
    assert store.get_payload(a.id) is PayloadState.ERASED
    assert store.erase_payload(a.id) is True
    assert store.erase_payload(b"\x03" * 32) is False
    assert store.get_payload(b.id) == chain.payloads[b.id]
    assert store.get_entry(a.id) == a  # header kept: the log still verifies
    verify_run(None, store.get_range(chain.author, chain.topic, 1, 3), full=True)


def test_erase_missing_payload(store: AnyStore) -> None:
    chain = build_chain(2)
    store.append(chain.entries)
    assert store.erase_payload(chain.entries[0].id) is True
    assert store.get_payload(chain.entries[0].id) is PayloadState.ERASED
    assert store.missing_payloads(chain.topic) == [chain.entries[1].id]


def test_erase_payload_keeps_the_folded_link(store: AnyStore, topic: bytes) -> None:
    """An erased edit or reaction keeps the id of the message it was folded into
    (local metadata, per topic); the first link given stays; counted as an erasure."""
    chain = build_chain(5, topic=topic)
    other = build_chain(2)
    store.append(chain.entries, chain.payloads)
    store.append(other.entries)  # payloads MISSING
    a, b, c, d, _ = (e.id for e in chain.entries)
    into, elsewhere = b"\x01" * 32, b"\x02" * 32
    assert store.folded(topic) == {}
    start = store.erasures
    assert store.erase_payload(a) and store.folded(topic) == {}  # a message: no link
    assert store.erase_payload(b, folded_into=into)
    assert store.get_payload(b) is PayloadState.ERASED
    assert store.folded(topic) == {b: into}
    assert store.erasures == start + 2
    # again, with another link: nothing changes, the first link stays
    assert store.erase_payload(b, folded_into=elsewhere)
    assert store.erase_payload(b)
    assert store.folded(topic) == {b: into} and store.erasures == start + 2
    # an entry already erased without a link gains one (and that counts)
    assert store.erase_payload(a, folded_into=elsewhere)
    assert store.folded(topic) == {a: elsewhere, b: into} and store.erasures == start + 3
    # a MISSING payload, in another topic: kept under that topic
    assert store.erase_payload(other.entries[0].id, folded_into=into)
    assert store.folded(other.topic) == {other.entries[0].id: into}
    assert store.folded(topic) == {a: elsewhere, b: into}
    assert store.folded(os.urandom(32)) == {}
    # unknown entry: nothing kept; empty link: refused, nothing changed
    assert store.erase_payload(os.urandom(32), folded_into=into) is False
    with pytest.raises(StoreError, match="folded_into"):
        store.erase_payload(c, folded_into=b"")
    assert store.get_payload(c) == chain.payloads[c] and store.erasures == start + 4
    # the answer is a copy, not the store's own record
    store.folded(topic)[d] = into
    assert d not in store.folded(topic)
    verify_run(None, store.get_range(chain.author, topic, 1, 5), full=True)


def test_missing_payloads_order_and_limit(store: AnyStore, topic: bytes) -> None:
    a = build_chain(3, topic=topic, timestamp=500)
    b = build_chain(3, topic=topic, timestamp=100)
    c = build_chain(2, topic=topic, timestamp=100)  # same timestamps as b: tie on id
    other = build_chain(2)
    for ch in (a, b, c, other):
        store.append(ch.entries)
    store.put_payload(b.entries[0].id, b.payloads[b.entries[0].id])
    store.erase_payload(a.entries[1].id)
    pending = [e for e in (*a.entries, *b.entries, *c.entries)
               if e not in (b.entries[0], a.entries[1])]
    want = [e.id for e in sorted(pending, key=lambda e: (e.header.timestamp, e.id))]
    assert store.missing_payloads(topic) == want
    assert store.missing_payloads(topic, limit=3) == want[:3]
    assert store.missing_payloads(topic, limit=0) == []
    assert store.missing_payloads(topic, limit=-1) == []
    assert store.missing_payloads(os.urandom(32)) == []


def test_close_is_idempotent(store: AnyStore) -> None:
    store.close()
    store.close()


# -- property: both stores agree -------------------------------------------------------

_LOG_LEN = 5


@pytest.fixture(scope="session")
def pool() -> list[tuple[Chain, Chain]]:
    """Three logs (two authors, two topics), each with a main chain and a fork branch.

    The branch forks at seq 2 (entry 2' follows entry 1), so picking branch entries
    yields forks (at or below the height), wrong backlinks (above it) and gaps.
    """
    alice, bob = Identity.from_seed(b"a" * 32), Identity.from_seed(b"b" * 32)
    t1, t2 = b"\x01" * 32, b"\x02" * 32
    result = []
    for ident, topic in ((alice, t1), (bob, t1), (alice, t2)):
        main = build_chain(_LOG_LEN, identity=ident, topic=topic)
        branch = build_chain(
            _LOG_LEN - 1, identity=ident, after=main.entries[0], tag=b"fork"
        )
        result.append((main, branch))
    return result


_pick = st.tuples(st.integers(0, 2), st.booleans(), st.integers(1, _LOG_LEN))
_op = st.one_of(
    st.tuples(
        st.just("append"),
        st.lists(st.tuples(_pick, st.sampled_from(["none", "good", "bad"])), max_size=6),
    ),
    st.tuples(st.just("put"), st.tuples(_pick, st.booleans())),
    st.tuples(st.just("erase"), st.tuples(_pick, st.sampled_from(
        [None, b"\x0a" * 32, b"\x0b" * 32]))),
    st.tuples(st.just("fork"), st.tuples(st.integers(0, 2), st.integers(2, _LOG_LEN))),
)


def _entry(pool: list[tuple[Chain, Chain]], pick: tuple[int, bool, int]) -> tuple[Entry, bytes]:
    log, on_branch, seq = pick
    main, branch = pool[log]
    chain = branch if on_branch and seq >= 2 else main
    entry = chain.entries[seq - 1] if chain is main else chain.entries[seq - 2]
    return entry, chain.payloads[entry.id]


def _apply(store: AnyStore, pool: list[tuple[Chain, Chain]], op: tuple[Any, Any]) -> object:
    kind, arg = op
    try:
        if kind == "append":
            entries, payloads = [], {}
            for pick, mode in arg:
                entry, payload = _entry(pool, pick)
                entries.append(entry)
                if mode != "none":
                    payloads[entry.id] = payload if mode == "good" else payload + b"?"
            r = store.append(entries, payloads)
            return ("ok", r.added, r.duplicates)
        if kind == "put":
            (pick, good) = arg
            entry, payload = _entry(pool, pick)
            return ("ok", store.put_payload(entry.id, payload if good else payload[:-1]))
        if kind == "erase":
            pick, into = arg
            return ("ok", store.erase_payload(_entry(pool, pick)[0].id, folded_into=into))
        log, seq = arg
        main, branch = pool[log]
        proof = ForkProof.of(main.entries[seq - 1], branch.entries[seq - 2])
        return ("ok", store.record_fork(proof))
    except ForkError as exc:
        return ("fork", exc.proof)
    except StoreError as exc:
        return ("error", type(exc))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=st.lists(_op, min_size=1, max_size=10))
def test_memory_and_sqlite_agree(pool: list[tuple[Chain, Chain]], ops: list[Any]) -> None:
    all_ids = [e.id for main, branch in pool for e in (*main.entries, *branch.entries)]
    with tempfile.TemporaryDirectory() as d:
        memory = MemoryStore()
        # NORMAL: this property is about logical behaviour, not fsync; it keeps it fast.
        with SqliteStore(Path(d) / "s.db", synchronous="NORMAL") as sqlite:
            for op in ops:
                assert _apply(memory, pool, op) == _apply(sqlite, pool, op)
            state = snapshot(memory, all_ids)
            assert snapshot(sqlite, all_ids) == state
            assert sqlite.erasures == memory.erasures
        for log in state["logs"].values():
            verify_run(None, log, full=True)
        with SqliteStore(Path(d) / "s.db") as reopened:
            assert snapshot(reopened, all_ids) == state


# -- SqliteStore only: reopening ----------------------------------------------------------


def test_reopen_preserves_everything(tmp_path: Path, topic: bytes) -> None:
    path = tmp_path / "s.db"
    main, branch = _forked(4, at=3)
    a = build_chain(3, topic=topic)
    b = build_chain(2, topic=topic)
    with SqliteStore(path) as s:
        s.append(main.entries[:3], main.payloads)
        with pytest.raises(ForkError):
            s.append(branch.entries[:1])
        s.append(a.entries, {a.entries[0].id: a.payloads[a.entries[0].id]})
        s.append(b.entries, b.payloads)
        s.erase_payload(b.entries[1].id, folded_into=b.entries[0].id)  # an edit of b[0]
        before = snapshot(s)
    assert not (tmp_path / "s.db-wal").exists()  # clean close checkpoints the WAL
    with SqliteStore(path) as s:
        assert snapshot(s) == before
        assert s.is_frozen(main.author, main.topic)
        assert s.get_payload(b.entries[1].id) is PayloadState.ERASED
        assert s.folded(topic) == {b.entries[1].id: b.entries[0].id}
        assert s.get_payload(a.entries[1].id) is PayloadState.MISSING
        assert s.append(a.entries).duplicates == 3
        more = build_chain(1, identity=a.identity, after=a.entries[-1])
        assert s.append(more.entries).added == tuple(more.entries)


def test_reopen_preserves_misbehaviour(tmp_path: Path) -> None:
    chain = build_chain(2)
    record = Misbehaviour("bad_signature", chain.entries[1], b"\x01" * 32)
    with SqliteStore(tmp_path / "s.db") as s:
        assert s.record_misbehaviour(record)
    with SqliteStore(tmp_path / "s.db") as s:
        assert s.misbehaviours() == [record]
        assert not s.record_misbehaviour(record)


def _as_version_2(path: Path, *, misbehaviour: bool = True) -> None:
    """Make a current store file look as schema 2 wrote it (no ``folded`` table;
    without ``misbehaviour`` either, as the first version-2 files)."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE folded")
    if not misbehaviour:
        conn.execute("DROP TABLE misbehaviour")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def test_version_2_file_without_misbehaviour_table_gains_it(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(path):
        pass
    _as_version_2(path, misbehaviour=False)
    with SqliteStore(path) as s:
        assert s.misbehaviours() == []
        record = Misbehaviour("bad_signature", build_chain(1).entries[0])
        assert s.record_misbehaviour(record) and s.misbehaviours() == [record]
    assert {"misbehaviour", "folded"} <= _tables(path)


def test_version_2_file_is_migrated_on_open(tmp_path: Path) -> None:
    """Schema 3 adds the ``folded`` table: a version-2 file keeps every entry,
    payload and erasure, gains the table and the new version, and keeps links."""
    path = tmp_path / "s.db"
    chain = build_chain(4)
    record = Misbehaviour("bad_signature", chain.entries[3])
    with SqliteStore(path) as s:
        s.append(chain.entries, chain.payloads)
        s.erase_payload(chain.entries[0].id)
        s.record_misbehaviour(record)
        before = snapshot(s)
    _as_version_2(path)
    with SqliteStore(path) as s:
        assert snapshot(s) == before  # folded: {} before too
        assert s.misbehaviours() == [record]
        assert s.erase_payload(chain.entries[2].id, folded_into=chain.entries[1].id)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    finally:
        conn.close()
    with SqliteStore(path) as s:
        assert s.folded(chain.topic) == {chain.entries[2].id: chain.entries[1].id}
        s.integrity_check()


def test_version_2_file_missing_core_tables_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    _as_version_2(path)
    _tamper(path, "DROP TABLE ids")
    assert "damaged" in _refuses(path)


def test_current_file_without_folded_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    _tamper(path, "DROP TABLE folded")  # version 3 stamped, table gone: damaged
    assert "damaged" in _refuses(path)


def test_damaged_folded_record_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    chain = _filled_store(path, 3)
    with SqliteStore(path) as s:
        s.erase_payload(chain.entries[1].id, folded_into=chain.entries[0].id)
    _tamper(path, "UPDATE folded SET message = 7")
    with SqliteStore(path) as s, pytest.raises(StoreCorruptError, match="folded"):
        s.folded(chain.topic)


def test_context_manager_and_use_after_close(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db") as s:
        assert "open" in repr(s)
    assert "closed" in repr(s)
    with pytest.raises(StoreError, match="closed"):
        s.topics()
    with pytest.raises(StoreError, match="closed"):
        s.append(build_chain(1).entries)


def test_bad_synchronous_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(tmp_path / "s.db", synchronous="SOMETIMES")
    assert not (tmp_path / "s.db").exists()


def test_file_is_stamped_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


# -- SqliteStore only: refusing files that are not (intact) stores ------------------------


def _refuses(path: Path, error: type[Exception] = StoreCorruptError) -> str:
    """Open must raise ``error`` naming the path, and leave the file untouched."""
    before = path.read_bytes()
    siblings = set(path.parent.iterdir())
    with pytest.raises(error) as info:
        SqliteStore(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == before
    assert set(path.parent.iterdir()) - siblings == set()
    return str(info.value)


def test_random_bytes_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(os.urandom(8192))
    assert "not an SQLite" in _refuses(path)


def test_sqlite_magic_with_garbage_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4096 - 16))
    _refuses(path)


def test_tiny_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"SQLite format 3\x00\x10")
    _refuses(path)


def _filled_store(path: Path, n: int = 200) -> Chain:
    chain = build_chain(n, payload_size=200)
    with SqliteStore(path) as s:
        s.append(chain.entries, chain.payloads)
    return chain


def test_truncated_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _filled_store(path)
    data = path.read_bytes()
    assert len(data) > 8 * 4096
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in _refuses(path)


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE patients (name TEXT)")
    conn.execute("INSERT INTO patients VALUES ('x')")
    conn.commit()
    conn.close()
    assert "another application" in _refuses(path)
    conn = sqlite3.connect(path)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert names == {"patients"}
    finally:
        conn.close()


def test_foreign_application_id_is_refused_even_without_tables(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 42")
    conn.commit()
    conn.close()
    assert path.stat().st_size > 0
    _refuses(path)


def test_our_id_but_missing_tables_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE forks")
    conn.commit()
    conn.close()
    _refuses(path)


def test_newer_schema_is_refused_as_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    message = _refuses(path, StoreError)
    assert "newer" in message
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    assert not isinstance(info.value, StoreCorruptError)


def test_zero_length_file_is_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.touch()
    chain = build_chain(2)
    with SqliteStore(path) as s:
        s.append(chain.entries)
    with SqliteStore(path) as s:
        assert s.head(chain.author, chain.topic) == chain.entries[-1]


def test_directory_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="directory"):
        SqliteStore(tmp_path)


def _tamper(path: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def test_undecodable_row_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    chain = _filled_store(path, 3)
    _tamper(path, "UPDATE entries SET data = ? WHERE k & 0xffff = 2", b"\xff" * 100)
    with SqliteStore(path) as s:
        assert s.get_entry(chain.entries[0].id) == chain.entries[0]
        with pytest.raises(StoreCorruptError, match="does not decode"):
            s.get_entry(chain.entries[1].id)
        with pytest.raises(StoreCorruptError):
            s.get_range(chain.author, chain.topic, 1, 3)


def test_row_swapped_for_another_entry_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    chain = _filled_store(path, 3)
    _tamper(path, "UPDATE entries SET data = ? WHERE k & 0xffff = 3", chain.entries[0].to_bytes())
    with SqliteStore(path) as s, pytest.raises(StoreCorruptError, match="does not match"):
        s.head(chain.author, chain.topic)


def test_damaged_page_is_reported_as_corruption(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    chain = _filled_store(path, 300)
    data = bytearray(path.read_bytes())
    for page in range(2, len(data) // 4096):  # scribble over every page but the first
        data[page * 4096 + 8 : page * 4096 + 200] = os.urandom(192)
    path.write_bytes(bytes(data))
    with SqliteStore(path) as s:
        with pytest.raises(StoreCorruptError):
            s.integrity_check()
        # SQLite does not notice every damaged page on a read (an index page may just
        # look empty), but a read never returns an entry that was not stored.
        try:
            got = s.get_range(chain.author, chain.topic, 1, 300)
        except StoreCorruptError:
            got = []
        assert set(got) <= set(chain.entries)
        for e in chain.entries[::25]:
            with contextlib.suppress(StoreCorruptError):
                assert s.get_entry(e.id) in (e, None)


def test_integrity_check_passes_on_a_good_store(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _filled_store(path, 50)
    with SqliteStore(path) as s:
        s.integrity_check()


# -- SqliteStore only: erased bytes leave the disk -----------------------------------------


@pytest.mark.parametrize("size", [300, 20_000])  # in-page cell and overflow pages
def test_erased_payload_bytes_are_overwritten(tmp_path: Path, size: int) -> None:
    path = tmp_path / "s.db"
    wal = tmp_path / "s.db-wal"
    marker = os.urandom(16).hex().encode()  # unique, so any hit is our payload
    payload = (marker * (size // len(marker) + 1))[:size]
    ident = Identity.generate()
    chain = build_chain(3, identity=ident)
    secret = create_entry(ident, chain.topic, 4, chain.entries[-1].id, 9999, payload)

    def on_disk() -> bytes:
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    s = SqliteStore(path)
    try:
        s.append(chain.entries, chain.payloads)
        s.append([secret], {secret.id: payload})
        s.checkpoint()
        assert marker in on_disk()  # the test can fail: the bytes were on disk
        more = build_chain(2, identity=ident, after=secret)
        s.append(more.entries, more.payloads)  # the WAL now holds newer frames too
        assert s.erase_payload(secret.id)
        assert marker not in on_disk()
        s.checkpoint()
        assert marker not in on_disk()
        assert s.get_payload(secret.id) is PayloadState.ERASED
    finally:
        s.close()
    assert marker not in path.read_bytes()


# -- SqliteStore only: the id index and its in-memory tail --------------------------------


def _check_lookups(s: SqliteStore, chains: Sequence[Chain], upto: int = 1 << 30) -> None:
    for chain in chains:
        for e in chain.entries[:upto]:
            assert s.get_entry(e.id) == e
            assert s.get_payload(e.id) == chain.payloads[e.id]
        for e in chain.entries[upto:]:
            assert s.get_entry(e.id) is None
    assert s.get_entry(b"\x00" * 32) is None
    assert s.get_payload(b"\x01" * 32) is PayloadState.UNKNOWN


def test_id_lookups_across_index_merges_and_prefix_collisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, topic: bytes
) -> None:
    # A merge every 5 entries, and an "id prefix" of one bool: nearly all ids collide.
    monkeypatch.setattr(sqlite_store, "_TAIL_LIMIT", 5)
    monkeypatch.setattr(sqlite_store, "_IDP", struct.Struct(">?"))
    path = tmp_path / "s.db"
    chains = [build_chain(12, topic=topic) for _ in range(3)]
    with SqliteStore(path) as s:
        for start in range(0, 12, 3):  # batches of 3 from each log, interleaved
            for c in chains:
                s.append(c.entries[start : start + 3], c.payloads)
            _check_lookups(s, chains, upto=start + 3)
        extra = build_chain(2, topic=topic)  # stays in the tail: 36 merged, 2 not
        s.append(extra.entries, extra.payloads)
        _check_lookups(s, [*chains, extra])
        merged, tail = chains[0].entries[0], extra.entries[0]
        assert s.erase_payload(merged.id) and s.erase_payload(tail.id)
        assert s.get_payload(merged.id) is PayloadState.ERASED
        assert s.get_payload(tail.id) is PayloadState.ERASED
    with SqliteStore(path) as s:  # reopening rebuilds the tail from the file
        assert s.get_entry(tail.id) == tail and s.get_entry(merged.id) == merged
        assert s.append(extra.entries).duplicates == 2
        rest = [e for c in chains for e in c.entries[1:]]
        assert all(s.get_entry(e.id) == e for e in rest + extra.entries[1:])
        conn = sqlite3.connect(path)
        try:
            indexed = conn.execute("SELECT count(*) FROM ids").fetchone()[0]
        finally:
            conn.close()
        assert indexed >= 35  # the test can fail: merges did fill the index


def test_entries_appended_through_another_connection_are_found(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    a, b = build_chain(3), build_chain(3)
    with SqliteStore(path) as first, SqliteStore(path) as second:
        first.append(a.entries[:1], a.payloads)
        assert second.get_entry(a.entries[0].id) == a.entries[0]
        first.append(a.entries[1:], a.payloads)  # second's tail is now stale
        second.append(b.entries, b.payloads)
        for s in (first, second):
            for chain in (a, b):
                assert [s.get_entry(e.id) for e in chain.entries] == chain.entries
                assert s.get_payload(chain.entries[-1].id) == chain.payloads[chain.entries[-1].id]


def test_older_schema_is_refused_as_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    _tamper(path, "PRAGMA user_version = 1")  # version 2 is migrated; 1 is not
    message = _refuses(path, StoreError)
    assert "older" in message
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    assert not isinstance(info.value, StoreCorruptError)
