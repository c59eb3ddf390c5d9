"""The transport and discovery interfaces every network plugin implements.

A :class:`Transport` turns an address plus the node key we *expect* there into an
authenticated :class:`PeerStream` (``dial``), and accepts connections from others
(``serve``). Authentication is the transport's job: when ``dial`` returns, the
stream's ``remote_id`` is the peer's proven node key and equals ``expected_peer``;
a mismatch raises :class:`~p2pmsg.errors.TransportError` before any application
byte flows. Whether the peer may *talk* to us is the node's question
(:meth:`p2pmsg.policy.Policy.allow_peer`), asked right after.

A :class:`Discovery` source yields :class:`PeerHint` s — unauthenticated claims
"node X may be reachable at address A" — that the node's peer manager dials.

Plugins register a factory under the entry-point group ``p2pmsg.transports``
(name -> callable returning a :class:`Transport`); :func:`load_transport` finds
them. Every transport should pass :mod:`p2pmsg.testing` 's conformance suite.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import trio

from ..errors import TransportError

__all__ = [
    "ENTRY_POINT_GROUP",
    "Discovery",
    "PeerHint",
    "PeerStream",
    "StreamHandler",
    "Transport",
    "available_transports",
    "load_transport",
]

ENTRY_POINT_GROUP = "p2pmsg.transports"


class PeerStream(trio.abc.HalfCloseableStream):
    """A byte stream to one authenticated peer.

    Behaves like any trio :class:`~trio.abc.HalfCloseableStream`: ``send_all`` /
    ``receive_some`` (``b""`` = the peer sent EOF), ``send_eof``, ``aclose``;
    a lost connection raises :class:`trio.BrokenResourceError`.
    """

    remote_id: bytes
    """The peer's Ed25519 node key, proven by the transport handshake."""


StreamHandler = Callable[[PeerStream], Awaitable[None]]
"""Called by :meth:`Transport.serve` once per accepted connection, in its own task."""


class Transport(abc.ABC):
    """Dials and accepts authenticated peer streams for one address scheme."""

    scheme: str
    """The address prefix this transport handles: ``"memory"``, ``"quic"``, ``"tcp"``."""

    @abc.abstractmethod
    async def dial(self, address: str, expected_peer: bytes) -> PeerStream:
        """Connect to ``address`` and prove it is ``expected_peer``.

        Raises:
            TransportError: unreachable, refused, or the peer holds another key.
        """

    @abc.abstractmethod
    async def serve(
        self,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections until cancelled, running ``handler`` on each.

        Call as ``await nursery.start(transport.serve, handler)``: it reports
        readiness once :meth:`addresses` are reachable. Handler tasks are cancelled
        when ``serve`` is.
        """

    @abc.abstractmethod
    def addresses(self) -> list[str]:
        """Addresses other nodes can dial to reach this one (valid while serving)."""


@dataclass(frozen=True, slots=True)
class PeerHint:
    """An unauthenticated claim that ``node_id`` may be reached at ``address``."""

    node_id: bytes
    """The node key we expect; the transport proves it on dial."""
    address: str
    """A transport address, ``scheme://...``."""
    source: str = "static"
    """Where the hint came from (``"static"``, ``"mdns"``, ...), for logs."""


class Discovery(abc.ABC):
    """A source of :class:`PeerHint` s, consumed by the node's peer manager."""

    @abc.abstractmethod
    def hints(self) -> AsyncIterator[PeerHint]:
        """Yield hints as they are found. May end (static lists) or run forever."""


def available_transports() -> dict[str, str]:
    """Installed transport plugins: entry-point name -> ``module:attr`` target."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_transport(plugin: str, /, **kwargs: Any) -> Transport:
    """Build the transport plugin registered as ``plugin`` with ``kwargs``.

    Raises:
        TransportError: no plugin of that name is installed, or it is not a Transport.
    """
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == plugin:
            factory = ep.load()
            transport = factory(**kwargs)
            if not isinstance(transport, Transport):
                raise TransportError(f"plugin {plugin!r} did not build a Transport")
            return transport
    raise TransportError(f"no transport plugin named {plugin!r} is installed")
