"""The live feed behind ``GET /v1/events``: messenger changes -> numbered events.

Theory of operation
-------------------
:class:`LiveFeed` runs one ``Messenger.live(room)`` loop per room topic the node
replicates (and per room created through the API), and turns every new or changed
message into an :class:`Event` with a server-wide increasing ``id``. The last
``capacity`` events are kept in a ring so a client reconnecting with
``Last-Event-ID`` gets exactly what it missed; if that id fell out of the ring (or
belongs to an earlier server run) :func:`sse_stream` sends a ``reset`` event and
the client re-reads history. Event ids restart at 1 with each server run.

Readers never block the feed: publishing appends to the ring and wakes waiters.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import trio

from ..identity import short_id
from ..messaging import control_topic
from ..messenger import Messenger
from .views import message_view

__all__ = ["Event", "LiveFeed", "sse_stream"]

log = logging.getLogger("p2pmsg.api")


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    room: bytes
    data: str
    """JSON of the documented ``Event`` schema."""


class LiveFeed:
    """Numbered message events of every watched room (see the module docstring)."""

    def __init__(self, messenger: Messenger, capacity: int = 1024) -> None:
        self.messenger = messenger
        self._events: deque[Event] = deque(maxlen=capacity)
        self._last = 0
        self._wakeup = trio.Event()
        self._watched: set[bytes] = set()
        self._nursery: trio.Nursery | None = None

    @property
    def last_id(self) -> int:
        return self._last

    def publish(self, room: bytes, data: str) -> Event:
        self._last += 1
        event = Event(self._last, room, data)
        self._events.append(event)
        self._wakeup.set()
        self._wakeup = trio.Event()
        return event

    def after(self, last_id: int) -> list[Event] | None:
        """Events with ids above ``last_id``, or None if some were dropped from the
        ring or ``last_id`` is not one of this run's ids (resume impossible)."""
        if last_id > self._last:
            return None
        oldest = self._events[0].id if self._events else self._last + 1
        if last_id < oldest - 1:
            return None
        return [e for e in self._events if e.id > last_id]

    async def wait_after(self, last_id: int) -> None:
        """Return once an event with id above ``last_id`` exists."""
        while self._last <= last_id:
            await self._wakeup.wait()

    def watch(self, topic: bytes) -> None:
        """Also publish this room's messages (a room created through the API)."""
        if topic in self._watched or self._nursery is None:
            return
        self._watched.add(topic)
        self._nursery.start_soon(self._pump, topic)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Watch every room topic the node replicates and every room the messenger
        knows, until cancelled."""
        controls = {control_topic(o) for o in self.messenger.orgs}
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            # rooms the messenger starts replicating later (invitations accepted)
            self.messenger.add_topic_listener(
                lambda topic: None if topic in controls else self.watch(topic))
            for topic in self.messenger.node.topics:
                if topic not in controls:
                    self.watch(topic)
            for room in self.messenger.rooms():
                self.watch(room.topic)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def _pump(self, topic: bytes) -> None:
        async for msg in self.messenger.live(topic):
            self.publish(topic, json.dumps({"room": topic.hex(),
                                            "message": message_view(msg)},
                                           separators=(",", ":")))
        log.debug("live feed of room %s ended", short_id(topic))


def _frame(event: Event) -> bytes:
    return f"id: {event.id}\nevent: message\ndata: {event.data}\n\n".encode()


async def sse_stream(feed: LiveFeed, room: bytes | None, last_event_id: int | None,
                     keepalive: float) -> AsyncIterator[bytes]:
    """The ``text/event-stream`` body: a ``ready`` event, then message events (only
    ``room``'s if given), keep-alive comments every ``keepalive`` seconds, and a
    ``reset`` event when a resume was impossible."""
    cursor = feed.last_id
    pending: list[Event] = []
    reset = False
    if last_event_id is not None:
        missed = feed.after(last_event_id)
        if missed is None:
            reset = True
        else:
            pending = missed
    yield f"retry: 2000\nid: {cursor if reset or last_event_id is None else last_event_id}\n"\
          f"event: {'reset' if reset else 'ready'}\ndata: {{}}\n\n".encode()
    if not reset and last_event_id is not None:
        cursor = last_event_id
    while True:
        for event in pending:
            cursor = event.id
            if room is None or event.room == room:
                yield _frame(event)
        with trio.move_on_after(keepalive) as scope:
            await feed.wait_after(cursor)
        if scope.cancelled_caught:
            yield b": keepalive\n\n"
        missed = feed.after(cursor)
        if missed is None:  # this reader fell behind the ring
            cursor = feed.last_id
            yield f"id: {cursor}\nevent: reset\ndata: {{}}\n\n".encode()
            missed = []
        pending = missed
