"""Folding a timeline incrementally (``decrypt_timeline(previous=..., changed=...)``)
gives the full fold's result and leaves the earlier timeline untouched."""

from __future__ import annotations

import copy
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from test_messaging_timeline import Room

from p2pmsg.messaging import (
    Content,
    Edit,
    Reaction,
    ReadReceipt,
    Redaction,
    Reply,
    RoomState,
    Text,
    compose_rekey,
    decrypt_timeline,
)
from p2pmsg.messaging.timeline import Timeline, open_epoch_keys


def _content(rng: random.Random, ids: list[bytes], step: int) -> Content:
    target = rng.choice(ids) if ids else b"\x00" * 32
    match rng.choice(("text", "text", "reply", "edit", "redact", "react", "receipt")):
        case "reply":
            return Reply(target, f"re {step}")
        case "edit":
            return Edit(target, f"edit {step}")
        case "redact":
            return Redaction(target, "")
        case "react":
            return Reaction(target, rng.choice(("+1", "ok")))
        case "receipt":
            return ReadReceipt(target)
        case _:
            return Text(f"m{step}")


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 25))
def test_incremental_fold_equals_full_fold(seed: int, n: int) -> None:
    rng = random.Random(seed)
    r = Room()
    people = [r.alice, r.bob, r.carol]
    state = RoomState(r.topic, r.w.org_states())
    state.apply(r.w.topics[r.topic])
    contents: dict[bytes, Content] = {}
    keys = open_epoch_keys(state.view, r.bob)
    timeline = decrypt_timeline(state.view, r.bob, keys, contents)
    folded, last = len(state.view.applied), state.view.applied[-1]
    ids: list[bytes] = []
    for step in range(n):
        for _ in range(rng.randint(1, 3)):  # a batch of entries arrives
            who = rng.choice(people)
            if rng.random() < 0.08:
                r.w.append(who, r.topic, compose_rekey(r.w.room(r.topic), who, r.w.now_ms))
            else:
                ids.append(r.send(who, _content(rng, ids, step)))
        entries = r.w.topics[r.topic]
        state.apply(entries[-3:] if rng.random() < 0.9 else entries)
        view = state.view
        new_keys = open_epoch_keys(view, r.bob)
        before = copy.deepcopy(timeline)
        # RoomState kept the earlier Applied objects iff it only appended entries
        incremental = (new_keys == keys and len(view.applied) >= folded
                       and view.applied[folded - 1] is last)
        changed: set[bytes] = set()
        previous = (timeline, folded) if incremental else None
        result = decrypt_timeline(view, r.bob, new_keys, contents, previous=previous,
                                  changed=changed)
        assert result == decrypt_timeline(view, r.bob)  # the full fold, no cache
        assert timeline == before  # the earlier timeline is untouched
        if incremental:
            for m in result.messages:
                if m.id not in changed:
                    assert timeline.by_id[m.id] is m
        timeline, keys, folded, last = result, new_keys, len(view.applied), view.applied[-1]


def test_the_earlier_timeline_keeps_its_messages() -> None:
    r = Room()
    first = r.send(r.alice, Text("eins"))
    state = RoomState(r.topic, r.w.org_states())
    state.apply(r.w.topics[r.topic])
    keys = open_epoch_keys(state.view, r.bob)
    old = decrypt_timeline(state.view, r.bob, keys)
    n = len(state.view.applied)
    r.send(r.bob, Reaction(first, "+1"))
    r.send(r.alice, Edit(first, "zwei"))
    state.apply(r.w.topics[r.topic][-2:])
    changed: set[bytes] = set()
    new = decrypt_timeline(state.view, r.bob, keys, previous=(old, n), changed=changed)
    assert changed == {first}
    assert new.by_id[first].content == Text("zwei") and new.by_id[first].reactions
    assert old.by_id[first].content == Text("eins") and not old.by_id[first].reactions
    assert isinstance(old, Timeline) and old.messages[0] is old.by_id[first]
