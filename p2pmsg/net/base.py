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
Sources that need a background task (sockets, timers) do their work in
:meth:`Discovery.run`, which a node always starts with ``nursery.start``.

Plugins are found through two entry-point groups, so a third party adds one exactly
the way the bundled ones are added (docs/transports.md):

* ``p2pmsg.transports`` (:data:`TRANSPORT_GROUP`): name -> factory returning a
  :class:`Transport`; see :func:`available_transports` and :func:`load_transport`
  (which documents the keyword conventions every factory should follow).
* ``p2pmsg.discovery`` (:data:`DISCOVERY_GROUP`): name -> factory returning a
  :class:`Discovery`; see :func:`available_discovery` and :func:`load_discovery`.

Every transport should pass :func:`p2pmsg.testing.check_transport`, the conformance
suite the in-memory reference transport (:mod:`p2pmsg.net.memory`) passes.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import trio

from ..errors import TransportError

__all__ = [
    "DISCOVERY_GROUP",
    "ENTRY_POINT_GROUP",
    "TRANSPORT_GROUP",
    "Discovery",
    "PeerHint",
    "PeerStream",
    "StreamHandler",
    "StreamIntegrityError",
    "Transport",
    "available_discovery",
    "available_transports",
    "load_discovery",
    "load_transport",
]

TRANSPORT_GROUP = "p2pmsg.transports"
"""Entry-point group of transport plugins (name -> factory returning a Transport)."""
ENTRY_POINT_GROUP = TRANSPORT_GROUP
"""The original name of :data:`TRANSPORT_GROUP`, kept for existing imports."""
DISCOVERY_GROUP = "p2pmsg.discovery"
"""Entry-point group of discovery plugins (name -> factory returning a Discovery)."""


class StreamIntegrityError(TransportError, trio.BrokenResourceError):
    """A stream's bytes were tampered with, truncated or broke the transport's framing.

    Raised by transports that authenticate their records (``p2pmsg-tcp``, for
    example) when a record fails authentication or the connection ends without the
    authenticated end-of-stream marker. It subclasses both
    :class:`~p2pmsg.errors.TransportError` (so it is one of *our* errors, with the
    one hierarchy) and :class:`trio.BrokenResourceError` (so every caller that
    already handles "connection lost" handles it too). The stream is unusable
    afterwards: close it; the node drops the session and may redial.
    """


class PeerStream(trio.abc.HalfCloseableStream):
    """A byte stream to one authenticated peer.

    Behaves like any trio :class:`~trio.abc.HalfCloseableStream`; what each failure
    raises, for every transport (the conformance suite checks these):

    * ``receive_some(max_bytes=None)`` returns at least one byte, or ``b""`` once
      the peer sent EOF (``send_eof`` or a graceful ``aclose``); EOF is sticky.
    * ``send_all(data)`` returns once the transport took all of ``data``; waits
      when the peer does not read (backpressure).
    * ``send_eof()`` half-closes: we send no more, the peer reads ``b""``, and we
      can still receive. A second call does nothing.

    Raises (from ``send_all``, ``wait_send_all_might_not_block``, ``send_eof``,
    ``receive_some``):
        trio.BrokenResourceError: the connection was lost (reset, timed out,
            partitioned, the peer aborted). Sending after our own ``send_eof``
            is :class:`trio.ClosedResourceError` instead.
        StreamIntegrityError: (a ``BrokenResourceError``) the received bytes were
            tampered with or truncated; only from transports that can tell.
        trio.ClosedResourceError: *we* closed the stream (or sent EOF, for the
            sending methods).
        trio.BusyResourceError: another task is already sending (or receiving)
            on this stream.
        ValueError: ``max_bytes`` < 1.

    Closing:
        ``await stream.aclose()`` is graceful: data already passed to ``send_all``
        is delivered (within a transport-defined timeout) and the peer reads
        ``b""``; it always leaves the stream closed, also when cancelled.
        ``await trio.aclose_forcefully(stream)`` (cancelled close) may discard
        unsent data and may appear at the peer as
        :class:`trio.BrokenResourceError` instead of ``b""``. Use it on errors.
    """

    remote_id: bytes
    """The peer's Ed25519 node key, proven by the transport handshake."""


StreamHandler = Callable[[PeerStream], Awaitable[None]]
"""Called by :meth:`Transport.serve` once per accepted connection, in its own task."""


class Transport(abc.ABC):
    """Dials and accepts authenticated peer streams for one address scheme.

    Addresses are strings ``scheme://rest``; network transports use
    ``scheme://HOST:PORT`` (IPv6 as ``scheme://[::1]:PORT``). Build one by name
    with :func:`load_transport`.
    """

    scheme: str
    """The address prefix this transport handles: ``"memory"``, ``"quic"``, ``"tcp"``."""

    @abc.abstractmethod
    async def dial(self, address: str, expected_peer: bytes) -> PeerStream:
        """Connect to ``address`` and prove it is ``expected_peer``.

        Returns a stream whose ``remote_id == expected_peer``; no application byte
        was exchanged with anyone else.

        Raises:
            TransportError: malformed address, unreachable, refused, handshake
                failed or timed out, or the peer holds another key.
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
        when ``serve`` is, and each stream is closed when its handler returns.
        A connection whose handshake fails is dropped without calling ``handler``;
        a misbehaving client never ends ``serve``.

        Raises:
            TransportError: the listening socket could not be opened (before
                ``started``), e.g. the address is in use.
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
    """A source of :class:`PeerHint` s, consumed by the node's peer manager.

    Lifecycle: the node calls ``await nursery.start(source.run)`` and then iterates
    ``source.hints()`` in another task; cancelling the nursery stops both. Sources
    with nothing to run in the background (a static list) keep the default
    :meth:`run`.
    """

    @abc.abstractmethod
    def hints(self) -> AsyncIterator[PeerHint]:
        """Yield hints as they are found. May end (static lists) or run forever.

        Hints are claims, not facts: dial them with ``expected_peer=hint.node_id``
        and let the transport's handshake reject a wrong key.
        """

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Do the source's background work until cancelled.

        Call as ``await nursery.start(source.run)``; it reports ``started`` once
        the source is ready (sockets open, service registered). This default has no
        work to do: it reports started at once and sleeps until cancelled, so a
        node can start every source the same way. Override it when the source
        needs a task; it may then be called at most once per object.

        Raises:
            TransportError: (overrides) the source could not start.
        """
        task_status.started()
        await trio.sleep_forever()


def available_transports() -> dict[str, str]:
    """Installed transport plugins: entry-point name -> ``module:attr`` target."""
    return _available(TRANSPORT_GROUP)


def available_discovery() -> dict[str, str]:
    """Installed discovery plugins: entry-point name -> ``module:attr`` target."""
    return _available(DISCOVERY_GROUP)


def load_transport(plugin: str, /, **kwargs: Any) -> Transport:
    """Build the transport plugin registered as ``plugin`` with ``kwargs``.

    Keyword conventions: a factory accepts those of the following that apply to it,
    with these meanings, so an application (the daemon) can configure any plugin
    the same way; anything else is plugin-specific:

    * ``identity`` (:class:`p2pmsg.identity.Identity`): this node's key; its
      public key is what peers pin and what ``remote_id`` shows them.
    * ``host`` (str), ``port`` (int): where :meth:`Transport.serve` listens;
      ``port=0`` picks a free port (see :meth:`Transport.addresses`).
    * ``allow_peer`` (``Callable[[bytes], bool] | None``): asked with the
      *authenticated* key of each incoming peer during the handshake; False
      refuses the connection before any application byte flows.
    * ``advertise`` (``list[str] | None``): addresses :meth:`Transport.addresses`
      returns instead of the bound ones (wildcard listen address, NAT).

    Exceptions the factory raises for bad arguments (``TypeError`` for an unknown
    keyword, ``ValueError``) propagate unchanged.

    Raises:
        TransportError: no plugin of that name is installed (the message lists the
            installed ones); two installed distributions claim the name; the
            plugin failed to import (the message names it, ``__cause__`` is the
            original error); or it built something that is not a Transport.
    """
    built, ep = _build(TRANSPORT_GROUP, "transport", plugin, kwargs)
    if not isinstance(built, Transport):
        raise _wrong_type("transport", plugin, ep, built, "Transport")
    return built


def load_discovery(plugin: str, /, **kwargs: Any) -> Discovery:
    """Build the discovery plugin registered as ``plugin`` with ``kwargs``.

    There are no shared keyword conventions beyond the transports' (mDNS, for
    example, takes ``node_id``, ``org_id`` and ``ports``); see each plugin's README.
    Start the result with ``await nursery.start(source.run)``.

    Raises:
        TransportError: as for :func:`load_transport`, for the discovery group.
    """
    built, ep = _build(DISCOVERY_GROUP, "discovery", plugin, kwargs)
    if not isinstance(built, Discovery):
        raise _wrong_type("discovery", plugin, ep, built, "Discovery")
    return built


def _available(group: str) -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=group)}


def _build(
    group: str, kind: str, plugin: str, kwargs: dict[str, Any]
) -> tuple[object, EntryPoint]:
    """Find, import and call the factory registered as ``plugin`` in ``group``."""
    matches: list[EntryPoint] = [ep for ep in entry_points(group=group) if ep.name == plugin]
    if not matches:
        installed = ", ".join(sorted(_available(group))) or "none"
        raise TransportError(
            f"no {kind} plugin named {plugin!r} is installed "
            f"(installed {kind} plugins: {installed})"
        )
    if len({ep.value for ep in matches}) > 1:
        # Two distributions claim one name: refuse rather than let install order
        # decide which code handles the node's connections.
        claims = "; ".join(f"{_dist_name(ep)} -> {ep.value}" for ep in matches)
        raise TransportError(f"{kind} plugin name {plugin!r} is ambiguous: {claims}")
    ep = matches[0]
    try:
        factory = ep.load()
    except Exception as exc:
        raise TransportError(
            f"{kind} plugin {plugin!r} ({ep.value}, from {_dist_name(ep)}) failed to "
            f"import: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(factory):
        raise TransportError(f"{kind} plugin {plugin!r} ({ep.value}) is not callable")
    return factory(**kwargs), ep


def _wrong_type(kind: str, plugin: str, ep: EntryPoint, built: object, want: str) -> TransportError:
    return TransportError(
        f"{kind} plugin {plugin!r} ({ep.value}) built a {type(built).__name__}, not a {want}"
    )


def _dist_name(ep: EntryPoint) -> str:
    dist = ep.dist
    return dist.name if dist is not None else "an unknown distribution"
