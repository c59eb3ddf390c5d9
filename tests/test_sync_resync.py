"""Anti-entropy inside a live session and fork proofs from diverged logs, with two
honest machines over the fake link (pure: the clock is stepped by hand)."""

from __future__ import annotations

import os

import pytest
from chain_helpers import build_chain

from p2pmsg.entry import Entry
from p2pmsg.forks import ForkProof
from p2pmsg.sync import (
    MAX_FRAME_SIZE,
    ForkProofReceived,
    LogDiverged,
    Offer,
    State,
    SyncConfig,
)
from p2pmsg.sync.states import ROUND_INITIAL, ROUND_TRANSITIONS, round_mermaid
from p2pmsg.sync.testing import ConnectionPair, SyncPeer


def _peer() -> SyncPeer:
    return SyncPeer(os.urandom(32))


def _ids(entries: list[Entry]) -> set[bytes]:
    return {e.id for e in entries}


@pytest.mark.parametrize("sender_is_initiator", [True, False])
def test_dropped_live_offers_are_recovered_by_a_resync_round(sender_is_initiator: bool) -> None:
    """Overflow the sender's queue so live offers are dropped, stop appending, and
    the session still converges: the drained queue triggers a round (directly if
    the sender opens rounds, via RESYNC otherwise). No further append helps."""
    topic = os.urandom(32)
    config = SyncConfig(max_in_flight=MAX_FRAME_SIZE + 4, max_send_queue=300_000,
                        run_target_bytes=64 * 1024, resync_interval=None)
    sender, receiver = _peer(), _peer()
    first, second = (sender, receiver) if sender_is_initiator else (receiver, sender)
    pair = ConnectionPair.connect(first, second, [topic], [topic], config=config)
    pair.run()
    receiver.auto_apply = False  # a slow receiver: credit runs out, the queue fills
    chain = build_chain(30, topic=topic, payload_size=100_000)
    for e in chain.entries:
        sender.add([e], chain.payloads)
        sender.send(Offer([e], chain.payloads))
        pair.run()
    assert sender.c.stats.live_dropped > 0
    last = chain.entries[-1]
    assert receiver.store.get_entry(last.id) is None  # the tail was dropped, not queued
    while receiver.unapplied:  # the receiver catches up; nobody appends any more
        for token in list(receiver.unapplied):
            receiver.apply(token)
        pair.run()
    assert receiver.entry_ids([topic]) == _ids(chain.entries)
    assert first.c.stats.resync_rounds >= 1  # the opener ran an extra round
    if not sender_is_initiator:
        assert sender.c.stats.sent_by_type.get("RESYNC", 0) > 0
    assert sender.error is None and receiver.error is None
    assert receiver.c.stats.credit_in_use == 0


def test_resync_timer_heals_a_difference_nobody_announced() -> None:
    """Entries added on both sides without a live offer (a lost push) are found by
    the periodic round of the opener; an in-sync round costs about 100 bytes."""
    topic = os.urandom(32)
    config = SyncConfig(resync_interval=5.0, keepalive_interval=15.0, idle_timeout=60.0)
    a, b = _peer(), _peer()
    pair = ConnectionPair.connect(a, b, [topic], [topic], config=config)
    pair.run()
    assert a.c.get_timer() == 5.0  # the opener (initiator) schedules the round
    assert b.c.get_timer() == 15.0  # the responder only keeps alive
    # in sync: one idle round
    pair.now = 5.0
    before = pair.total_bytes
    a.c.handle_timer(pair.now)
    pair.run()
    idle_cost = pair.total_bytes - before
    assert 0 < idle_cost < 200
    assert a.c.stats.resync_rounds == 1
    assert a.c.get_timer() == 10.0  # next round counted from the end of this one
    # silent differences on both sides
    on_a = build_chain(3, topic=topic)
    on_b = build_chain(2, topic=topic)
    a.add(on_a.entries, on_a.payloads)
    b.add(on_b.entries, on_b.payloads)
    pair.run()
    assert b.entry_ids([topic]) == _ids(on_b.entries)  # nothing moved without a round
    assert a.entry_ids([topic]) == _ids(on_a.entries)
    pair.now = 10.0
    a.c.handle_timer(pair.now)
    pair.run()
    want = _ids(on_a.entries) | _ids(on_b.entries)
    assert a.entry_ids([topic]) == want and b.entry_ids([topic]) == want
    assert a.c.state is State.ESTABLISHED and b.c.state is State.ESTABLISHED


def test_responder_asks_for_a_round_after_a_short_answer() -> None:
    """A request the server answers short of what it announced makes the receiver
    ask (RESYNC) for a round; the server re-sends its item list."""
    topic = os.urandom(32)
    a, b = _peer(), _peer()
    chain = build_chain(4, topic=topic)
    a.add(chain.entries[:2], chain.payloads)
    pair = ConnectionPair.connect(a, b, [topic], [topic], config=SyncConfig(resync_interval=None))
    pair.run()
    assert b.entry_ids([topic]) == _ids(chain.entries[:2])
    # A's index claims 4 entries but its store (what it serves) holds only 3 when
    # B's request arrives: B gets a short answer.
    a.index.update(chain.entries[2:4])
    a.store.append(chain.entries[2:3], chain.payloads)
    a.send(Offer(chain.entries[3:4], chain.payloads))  # B sees a gap and requests 3..4
    pair.step()
    pair.step()
    a.store.append(chain.entries[3:4], chain.payloads)  # now A can serve it all
    pair.run()
    assert b.entry_ids([topic]) == _ids(chain.entries)
    assert b.c.stats.sent_by_type.get("RESYNC", 0) > 0
    assert a.c.stats.resync_rounds >= 1


def test_fork_below_our_head_yields_a_full_proof_on_both_sides() -> None:
    """The author equivocated at seq 3; A holds x3, B holds y3, y4. A requests 4,
    sees y4 does not extend x3 (LogDiverged), fetches B's seq 3, builds the proof,
    and both sides record it (B learns it from A's FORK_PROOF)."""
    topic = os.urandom(32)
    a, b = _peer(), _peer()
    base = build_chain(2, topic=topic)
    x = build_chain(1, identity=base.identity, after=base.entries[-1], tag=b"x")
    y = build_chain(2, identity=base.identity, after=base.entries[-1], tag=b"y")
    a.add(base.entries + x.entries, {**base.payloads, **x.payloads})
    b.add(base.entries + y.entries, {**base.payloads, **y.payloads})
    pair = ConnectionPair.connect(a, b, [topic], [topic])
    pair.run()
    diverged = a.of_type(LogDiverged)
    assert len(diverged) == 1 and diverged[0].seq == 4  # type: ignore[attr-defined]
    want = ForkProof.of(x.entries[0], y.entries[0])
    assert ForkProofReceived(want) in a.events and ForkProofReceived(want) in b.events
    for peer in (a, b):
        assert want in peer.store.forks()
        assert peer.store.is_frozen(base.author, topic)
    assert a.error is None and b.error is None


def test_round_diagram_in_docs_matches_table() -> None:
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "protocol-sync.md")
    with open(path, encoding="utf-8") as f:
        doc = f.read()
    assert round_mermaid() in doc
    for (src, trig), dst in ROUND_TRANSITIONS.items():
        assert f"{src.name} --> {dst.name}: {trig.value}" in doc
    for trig, dst in ROUND_INITIAL.items():
        assert f"[*] --> {dst.name}: {trig.value}" in doc
