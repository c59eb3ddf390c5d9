"""Subscriptions: an app's live feed of new verified entries of one topic.

Replication must never wait for an app. Each subscription therefore has a bounded
buffer; when it is full the node does not block — it ends the subscription:
buffered entries are still delivered, then iteration stops and
:attr:`Subscription.overflowed` is True. The app re-syncs with
:meth:`p2pmsg.node.Node.read` and subscribes again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

import trio

from ..entry import Entry

__all__ = ["Subscription"]


class Subscription:
    """Async iterator of new entries of ``topic``; use as ``async with``/``async for``."""

    def __init__(self, topic: bytes, buffer: int, on_close: object) -> None:
        self.topic = topic
        self.overflowed = False
        self._send, self._receive = trio.open_memory_channel[Entry](buffer)
        self._on_close = on_close

    def _deliver(self, entry: Entry) -> bool:
        """Queue ``entry`` without blocking. False when the subscription is over."""
        if self.overflowed:
            return False
        try:
            self._send.send_nowait(entry)
        except trio.WouldBlock:
            self.overflowed = True
            self._send.close()
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    def close(self) -> None:
        """Stop receiving; the iterator ends after buffered entries."""
        self._send.close()
        if callable(self._on_close):
            self._on_close(self)

    def __aiter__(self) -> AsyncIterator[Entry]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Entry]:
        try:
            async for entry in self._receive:
                yield entry
        except trio.ClosedResourceError:
            return

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self._receive.aclose()
