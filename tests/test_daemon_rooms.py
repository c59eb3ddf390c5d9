"""StoreRooms (the daemon's incremental room views) equals a full resolution.

After every step of a growing store — messages, membership changes, rekeys, a
second room, a payload arriving after its header, a revocation (org change), an
erasure (retention) — the incremental views equal ``room_views`` over the whole
store, and in-order growth does not rebuild.
"""

from __future__ import annotations

from governance_helpers import Clinic

from p2pmsg.daemon.governance import org_states, room_views
from p2pmsg.daemon.rooms import StoreRooms
from p2pmsg.entry import Entry
from p2pmsg.messaging import MemberSpec, RoomKind, compose_room
from p2pmsg.messaging.compose import compose_remove, compose_text
from p2pmsg.messaging.room import RoomView
from p2pmsg.store.memory import MemoryStore


def _same(a: list[RoomView], b: list[RoomView]) -> None:
    by_topic = {v.topic: v for v in b}
    assert sorted(v.topic for v in a) == sorted(by_topic)
    for view in a:
        full = by_topic[view.topic]
        assert view.members == full.members
        assert view.order == full.order
        assert dict(view.rejected) == dict(full.rejected)
        assert view.epochs == full.epochs
        assert [a.payload for a in view.applied] == [a.payload for a in full.applied]


def test_incremental_views_equal_full_resolution_at_every_step() -> None:
    c = Clinic()
    w = c.world
    store = MemoryStore()
    rooms = StoreRooms(store)
    loaded: set[bytes] = set()

    def sync(*, hold: Entry | None = None) -> None:
        for items in w.topics.values():
            new = [(e, p) for e, p in items if e.id not in loaded]
            if new:
                store.append([e for e, _ in new],
                             {e.id: p for e, p in new if p is not None and e is not hold})
                loaded.update(e.id for e, _ in new)

    def check() -> None:
        orgs = org_states(store, list(w.orgs))
        _same(rooms.views(orgs), room_views(store, orgs))

    sync()
    check()
    for i in range(20):
        c.say(c.alice if i % 3 else c.bob, f"m{i}")
        sync()
        check()
    assert rooms.rebuilds == 1  # in-order growth: never rebuilt
    # a second room, created by bert
    topic2, create = compose_room(c.bert, c.b.id, RoomKind.GROUP,
                                  [MemberSpec(c.alice.public_key, c.a.id)], w.now_ms)
    w.append(c.bert, topic2, create)
    sync()
    check()
    # a header without its payload, the payload later (as replication may deliver)
    w.tick()
    late = w.append(c.alice, c.topic, compose_text(w.room(c.topic), c.alice, "late",
                                                   seq=w.next_seq(c.alice, c.topic),
                                                   now_ms=w.now_ms))
    sync(hold=late)
    check()
    store.put_payload(late.id, c.payload(late))
    check()
    # a membership change and a revocation (the orgs change: everything re-resolved)
    w.append(c.alice, c.topic, compose_remove(w.room(c.topic), c.alice, c.bert.public_key))
    sync()
    check()
    before = rooms.rebuilds
    w.revoke(c.a, c.bob)
    sync()
    check()
    assert rooms.rebuilds == before + 1
    # an erasure (retention): rebuilt, still equal
    store.erase_payload(late.id)
    check()
    assert rooms.rebuilds == before + 2
