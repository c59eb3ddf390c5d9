"""Reconciliation: index fingerprints, range answers, convergence and its byte cost."""

from __future__ import annotations

import os

from chain_helpers import build_chain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pmsg.entry import create_entry
from p2pmsg.identity import Identity
from p2pmsg.policy import TopicPolicy
from p2pmsg.sync import LogIndex
from p2pmsg.sync.reconcile import separating_bound
from p2pmsg.sync.testing import ConnectionPair, SyncPeer


def test_separating_bound_is_shortest_prefix_between() -> None:
    assert separating_bound(b"\x01\x02\x03", b"\x01\x05\x00") == b"\x01\x05"
    assert separating_bound(b"\x00" * 32, b"\x80" + b"\x00" * 31) == b"\x80"
    for _ in range(200):
        x, y = sorted([os.urandom(32), os.urandom(32)])
        b = separating_bound(x, y)
        assert x < b <= y and y.startswith(b)


def test_fingerprint_depends_on_set_only_and_changes_with_heads() -> None:
    topic = os.urandom(32)
    chains = [build_chain(2, topic=topic) for _ in range(20)]
    i1, i2 = LogIndex(), LogIndex()
    i1.update(c.entries[0] for c in chains)
    i2.update(c.entries[0] for c in reversed(chains))
    assert i1.fingerprint(topic, b"", None) == i2.fingerprint(topic, b"", None)
    i2.update([chains[3].entries[1]])
    assert i1.fingerprint(topic, b"", None) != i2.fingerprint(topic, b"", None)
    # ranges: split point anywhere, counts add up
    mid = sorted(c.author for c in chains)[10]
    assert i1.count(topic, b"", mid) + i1.count(topic, mid, None) == 20
    assert i1.height(chains[0].author, topic) == 1 and i2.height(chains[3].author, topic) == 2
    i1.update([chains[0].entries[0]])  # stale update ignored
    assert i1.head(chains[0].author, topic) == chains[0].entries[0]


def _mass(n_logs: int, n_diff: int) -> tuple[SyncPeer, SyncPeer, bytes]:
    topic = os.urandom(32)
    a, b = SyncPeer(os.urandom(32)), SyncPeer(os.urandom(32))
    ids = [Identity.generate() for _ in range(n_logs)]
    firsts = [create_entry(i, topic, 1, None, 1, b"p") for i in ids]
    a.add(firsts)
    b.add(firsts)
    a.add([create_entry(i, topic, 2, f.id, 2, b"q")
           for i, f in zip(ids[:n_diff], firsts[:n_diff], strict=True)])
    return a, b, topic


def test_idle_resync_of_10000_logs_costs_bytes_proportional_to_difference() -> None:
    """10,000 logs, 10 differ by one entry: total bytes both ways < 5% of a height
    vector (10,000 x (32-byte author + 8-byte seq)). A size property, not timing."""
    a, b, topic = _mass(10_000, 10)
    pair = ConnectionPair.connect(a, b, [topic], [topic])
    pair.run()
    assert b.entry_ids([topic]) == a.entry_ids([topic])
    vector = 10_000 * (32 + 8)
    assert pair.total_bytes < 0.05 * vector, pair.total_bytes
    assert pair.round_trips <= 8
    # and an in-sync re-sync costs almost nothing
    a2, b2, topic2 = _mass(10_000, 0)
    pair2 = ConnectionPair.connect(a2, b2, [topic2], [topic2])
    pair2.run()
    assert pair2.total_bytes < 0.002 * vector


def test_one_way_topic_sends_item_list_and_leaks_nothing_back() -> None:
    topic = os.urandom(32)
    a, b = SyncPeer(os.urandom(32)), SyncPeer(os.urandom(32))
    a.policy = TopicPolicy({topic: [b.node_id]})
    chain_a, chain_b = build_chain(2, topic=topic), build_chain(2, topic=topic)
    a.add(chain_a.entries, chain_a.payloads)
    b.add(chain_b.entries, chain_b.payloads)
    # B asks for the topic, but A does not ask B (A's policy lists B as a reader,
    # B's own policy (allow-all) would grant; A simply does not subscribe).
    pair = ConnectionPair.connect(a, b, [], [topic])
    pair.run()
    assert b.entry_ids([topic]) == {e.id for e in chain_a.entries + chain_b.entries}
    assert a.entry_ids([topic]) == {e.id for e in chain_a.entries}
    assert a.c.stats.recon_bytes_sent > 0 and b.c.stats.recon_bytes_sent == 0


_workload = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 2)),  # (h_a, h_b, topic)
    min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_workload, st.booleans(), st.data())
def test_random_workloads_converge_and_never_leak(
        logs: list[tuple[int, int, int]], payloads: bool, data: st.DataObject) -> None:
    topics = [os.urandom(32) for _ in range(3)]
    a, b = SyncPeer(os.urandom(32)), SyncPeer(os.urandom(32))
    # topic 0: both read; topic 1: only B may read A's; topic 2: nobody
    a.policy = TopicPolicy({topics[0]: [b.node_id], topics[1]: [b.node_id]})
    b.policy = TopicPolicy({topics[0]: [a.node_id], topics[1]: [a.node_id]})
    asks_a = data.draw(st.sets(st.sampled_from(topics)))
    asks_b = data.draw(st.sets(st.sampled_from(topics)))
    chains = []
    for h_a, h_b, t in logs:
        chain = build_chain(max(h_a, h_b, 1), topic=topics[t], payload_size=8)
        chains.append(chain)
        pay = chain.payloads if payloads else None
        if h_a:
            a.add(chain.entries[:h_a], pay)
        if h_b:
            b.add(chain.entries[:h_b], pay)
    pair = ConnectionPair.connect(a, b, sorted(asks_a), sorted(asks_b))
    pair.run()
    assert a.error is None and b.error is None
    before_a = {t: a.entry_ids([t]) for t in topics}
    for t in topics:
        ids_a, ids_b = a.entry_ids([t]), b.entry_ids([t])
        a_gets = t in asks_a and t != topics[2]
        b_gets = t in asks_b and t != topics[2]
        own_a = {e.id for c, (h, _, ti) in zip(chains, logs, strict=True)
                 if topics[ti] == t for e in c.entries[:h]}
        own_b = {e.id for c, (_, h, ti) in zip(chains, logs, strict=True)
                 if topics[ti] == t for e in c.entries[:h]}
        assert ids_a == own_a | (own_b if a_gets else set())
        assert ids_b == own_b | (own_a if b_gets else set())
    assert before_a == {t: a.entry_ids([t]) for t in topics}
