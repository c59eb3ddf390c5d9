"""The rooms of a store, kept up to date incrementally for the daemon's periodic work.

Why: the governance loop (:meth:`p2pmsg.daemon.governance.Governance.refresh_rooms`)
needs every stored room's resolved view every ``reload_interval`` — to feed the
policy, audit membership changes and apply redactions. Re-resolving the whole store
each time (:func:`p2pmsg.daemon.governance.room_views`) costs about 45 µs per
stored entry in the trio thread (0.23 s for 5,000 messages here), so a store of a
year of ward chat would block the node for many seconds every interval.

:class:`StoreRooms` keeps one :class:`~p2pmsg.messaging.room.RoomState` per room
and reads from the store only what is new: entries above the per-log heights it
has read, and payloads that have arrived for entries it read without one.
``RoomState.apply`` adds in-order entries incrementally and re-resolves otherwise,
so the views equal a full resolution (tests/test_daemon_rooms.py checks that
after every step). Everything is rebuilt when the store reports an erasure
(``store.erasures`` moved: retention, redaction, erasure — payloads became None),
when the store counts none, or when a device or person of the organisations
changed (certificate, revocation, a list change) — not when other control entries
such as invitations arrive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..messaging.org import OrgState, control_topic
from ..messaging.room import RoomState, RoomView
from ..store.base import Store
from ..store.tail import TopicTail

__all__ = ["StoreRooms"]


@dataclass
class _Room:
    state: RoomState
    tail: TopicTail = field(default_factory=TopicTail)


def _identity(orgs: Mapping[bytes, OrgState]) -> dict[bytes, tuple[object, object]]:
    """What of the org states room resolution depends on (devices, persons)."""
    return {root: (state.devices, state.persons) for root, state in orgs.items()}


class StoreRooms:
    """Incrementally maintained views of every room in ``store`` (one owner, the
    trio thread). Call :meth:`views` whenever fresh views are needed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._rooms: dict[bytes, _Room] = {}
        self._erasures: int | None = None
        self._orgs: dict[bytes, tuple[object, object]] = {}
        self.rebuilds = 0
        """How often everything was read again (a test and tuning figure)."""

    def views(self, orgs: Mapping[bytes, OrgState]) -> list[RoomView]:
        """The view of every stored topic that resolves to a room (control topics of
        ``orgs`` excluded), as :func:`~p2pmsg.daemon.governance.room_views` gives."""
        erasures = getattr(self.store, "erasures", None)
        ident = _identity(orgs)
        if (not isinstance(erasures, int) or erasures != self._erasures
                or ident != self._orgs):
            self._rooms.clear()  # as costly as re-resolving each room, and exact
            self._erasures = erasures if isinstance(erasures, int) else None
            self._orgs = ident
            self.rebuilds += 1
        controls = {control_topic(o) for o in orgs}
        for topic in self.store.topics():
            if topic in controls:
                continue
            room = self._rooms.get(topic)
            if room is None:
                room = self._rooms[topic] = _Room(RoomState(topic, orgs))
            items = room.tail.pull(self.store, topic)
            if items:
                room.state.apply(items)
        return [r.state.view for r in self._rooms.values() if r.state.view.exists]
