"""The total order: causal (backlinks, deps) first, then HLC, then entry id."""

from __future__ import annotations

import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmsg.entry import Entry, create_entry
from p2pmsg.identity import Identity
from p2pmsg.messaging import total_order

TOPIC = os.urandom(32)


def _entry(author: Identity, seq: int, prev: Entry | None, ts: int,
           deps: tuple[bytes, ...] = ()) -> Entry:
    return create_entry(author, TOPIC, seq, None if prev is None else prev.id, ts, b"x", deps)


def test_causal_beats_timestamp() -> None:
    a, b = Identity.generate(), Identity.generate()
    a1 = _entry(a, 1, None, ts=100)
    b1 = _entry(b, 1, None, ts=5, deps=(a1.id,))  # b's clock is behind but b saw a1
    assert [e.id for e in total_order([b1, a1])] == [a1.id, b1.id]


def test_backlink_beats_timestamp() -> None:
    a = Identity.generate()
    a1 = _entry(a, 1, None, ts=100)
    a2 = _entry(a, 2, a1, ts=1)  # a broken clock cannot reorder a log
    assert total_order([a2, a1]) == [a1, a2]


def test_concurrent_entries_by_timestamp_then_id() -> None:
    authors = [Identity.generate() for _ in range(4)]
    firsts = [_entry(x, 1, None, ts=7) for x in authors[:3]] + [_entry(authors[3], 1, None, 3)]
    order = total_order(firsts)
    assert order[0] == firsts[3]
    assert [e.id for e in order[1:]] == sorted(e.id for e in firsts[:3])


def test_missing_dependency_does_not_hold_entries_back() -> None:
    a, b = Identity.generate(), Identity.generate()
    a1 = _entry(a, 1, None, ts=10, deps=(os.urandom(32),))  # names an entry nobody has
    b1 = _entry(b, 1, None, ts=20, deps=(a1.id,))
    assert total_order([b1, a1]) == [a1, b1]


def test_duplicates_are_removed() -> None:
    a = Identity.generate()
    a1 = _entry(a, 1, None, ts=1)
    assert total_order([a1, a1, a1]) == [a1]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 25))
def test_order_is_a_function_of_the_set(seed: int, n: int) -> None:
    """Random DAG of entries by 3 authors with random deps and clocks: every
    permutation gives the same order, and it respects every causal edge present."""
    rng = random.Random(seed)
    authors = [Identity.from_seed(rng.randbytes(32)) for _ in range(3)]
    heads: dict[bytes, Entry] = {}
    made: list[Entry] = []
    for _ in range(n):
        author = rng.choice(authors)
        prev = heads.get(author.public_key)
        seen = [e.id for e in made if e.author != author.public_key and rng.random() < 0.3]
        deps = tuple(sorted(set(seen)))[:16]
        entry = _entry(author, 1 if prev is None else prev.seq + 1, prev, rng.randint(0, 5), deps)
        heads[author.public_key] = entry
        made.append(entry)
    reference = total_order(made)
    for _ in range(5):
        shuffled = made[:]
        rng.shuffle(shuffled)
        assert total_order(shuffled) == reference
    position = {e.id: i for i, e in enumerate(reference)}
    for e in made:
        preds = list(e.header.deps) + ([e.header.backlink] if e.header.backlink else [])
        assert all(position[p] < position[e.id] for p in preds)
