"""Configured peers as a :class:`~p2pmsg.net.base.Discovery` source.

Site IT lists the peers of other organisations (node key + address) in the node
configuration; :class:`StaticDiscovery` hands them to the peer manager, which
dials and reconnects them for as long as the node runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import trio

from .base import Discovery, PeerHint

__all__ = ["StaticDiscovery"]


class StaticDiscovery(Discovery):
    """Yields a fixed list of hints once; later :meth:`add` calls are yielded too."""

    def __init__(self, hints: Iterable[PeerHint] = ()) -> None:
        self._send, self._receive = trio.open_memory_channel[PeerHint](float("inf"))
        for hint in hints:
            self.add(hint)

    def add(self, hint: PeerHint) -> None:
        """Announce one more configured peer (also after the node started)."""
        self._send.send_nowait(hint)

    async def hints(self) -> AsyncIterator[PeerHint]:
        async for hint in self._receive:
            yield hint
