"""mDNS (DNS-SD) discovery of p2pmsg nodes on the local link, bridged into trio.

Theory of operation
-------------------
python-zeroconf runs its own asyncio loop in a background thread (its sync API);
trio never shares that loop. :meth:`MdnsDiscovery.run`:

1. opens a :class:`zeroconf.Zeroconf` on the configured interfaces (in a worker
   thread: it binds sockets and joins groups);
2. starts a :class:`zeroconf.ServiceBrowser` for :data:`~p2pmsg_mdns.txt.SERVICE_TYPE`
   that asks multicast (QM) questions, so a responder on the same host answers
   to the group at once instead of waiting for unicast handling;
3. registers our own service (probing takes ~1.5 s), then reports ``started``.

Browser callbacks run on zeroconf's threads. They do nothing but hand
``(name, state)`` to trio with :meth:`trio.lowlevel.TrioToken.run_sync_soon`, into a
bounded channel; neither side can raise into the other (a full queue drops the
event and counts it, a finished trio run is ignored). In trio, a processor task
coalesces events per service name and resolves each name in a worker thread
(``ServiceInfo.request`` blocks, so it never runs on zeroconf's loop), then parses
the TXT record strictly (:func:`~p2pmsg_mdns.txt.parse_txt`). Anything malformed is
dropped with a debug log line. Valid advertisements of other nodes become
:class:`~p2pmsg.net.base.PeerHint` s, one per (transport, address), published to
every :meth:`~MdnsDiscovery.hints` iterator. A removed service is forgotten (no
more hints; :meth:`~MdnsDiscovery.peers` drops it).

Hints are only hints: TXT records are unauthenticated. The node dials a hint with
``expected_peer = hint.node_id`` and the transport handshake rejects any other key,
so a spoofed record can at worst cause a failed dial, never a session with a key
the node did not expect.

Shutdown (cancellation, or leaving :meth:`~MdnsDiscovery.running`) is shielded and
bounded: the browser is cancelled, our service unregistered (goodbye packets) and
zeroconf closed; open ``hints()`` iterators end.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import ifaddr
import trio
from zeroconf import (
    DNSQuestionType,
    InterfaceChoice,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)

from p2pmsg.errors import DecodeError, TransportError
from p2pmsg.identity import PUBLIC_KEY_SIZE, short_id
from p2pmsg.net.base import Discovery, PeerHint

from .txt import (
    MAX_TXT_BYTES,
    SERVICE_TYPE,
    Advertisement,
    encode_txt,
    format_address,
    parse_txt,
    usable_addresses,
)

__all__ = [
    "HINT_SOURCE",
    "DiscoveredPeer",
    "MdnsDiscovery",
    "MdnsStatistics",
    "ports_from_addresses",
]

log = logging.getLogger("p2pmsg.mdns")

HINT_SOURCE = "mdns"
"""``PeerHint.source`` of every hint this module emits."""

CLOSE_TIMEOUT = 5.0
"""Seconds shutdown may spend unregistering and closing zeroconf before giving up."""

_MAX_PENDING_EVENTS = 1024
_MAX_RESOLVING = 64
_RESOLVE_THREADS = 4

Interfaces = Sequence[str] | Literal["all", "default"]


@dataclass(frozen=True, slots=True)
class DiscoveredPeer:
    """A valid advertisement of another node, as currently seen on the link."""

    name: str
    """The mDNS service instance name (e.g. ``p2pmsg-1a2b...._p2pmsg._udp.local.``)."""
    advertisement: Advertisement
    """What the node claims about itself (unauthenticated)."""
    addresses: tuple[str, ...]
    """The usable IP addresses the service resolved to."""

    def hints(self) -> list[PeerHint]:
        """One hint per (transport, address), transports in advertised order."""
        ad = self.advertisement
        return [
            PeerHint(ad.node_id, format_address(scheme, ip, port), HINT_SOURCE)
            for scheme, port in ad.ports
            for ip in self.addresses
        ]


@dataclass(frozen=True, slots=True)
class MdnsStatistics:
    """Counters for logs and metrics (:meth:`MdnsDiscovery.statistics`)."""

    peers: int
    """Services currently known (valid advertisements of other nodes)."""
    accepted: int
    """Valid advertisements accepted (adds and changes)."""
    rejected: int
    """Advertisements ignored: malformed TXT, no usable address, filtered out, table full."""
    removed: int
    """Services forgotten after their goodbye or expiry."""
    dropped: int
    """Events or hints dropped because a bounded queue was full."""
    subscribers: int
    """Open :meth:`MdnsDiscovery.hints` iterators."""


@dataclass(frozen=True, slots=True)
class _Resolved:
    text_size: int
    properties: dict[bytes, bytes | None]
    addresses: list[str]


def ports_from_addresses(addresses: Sequence[str]) -> dict[str, int]:
    """``{"quic": 4433, ...}`` from transport addresses like ``quic://0.0.0.0:4433``.

    Feed it ``transport.addresses()`` of each serving transport; the first port per
    scheme wins. Raises :class:`ValueError` for an address without ``scheme://`` or
    a numeric port.
    """
    ports: dict[str, int] = {}
    for address in addresses:
        scheme, sep, rest = address.partition("://")
        _, colon, port = rest.rpartition(":")
        if not sep or not colon or not port.isdecimal():
            raise ValueError(f"not a scheme://host:port address: {address!r}")
        ports.setdefault(scheme, int(port))
    return ports


def _show(name: str) -> str:
    """A log-safe rendering of an attacker-chosen service name."""
    return repr(name[:80])


def _bridge(
    token: trio.lowlevel.TrioToken,
    deliver: Callable[[str, ServiceStateChange], None],
    *,
    zeroconf: Zeroconf,
    service_type: str,
    name: str,
    state_change: ServiceStateChange,
) -> None:
    """ServiceBrowser handler (zeroconf's thread): hand the event to trio, never raise."""
    del zeroconf, service_type
    try:
        token.run_sync_soon(deliver, name, state_change)
    except trio.RunFinishedError:
        pass
    except Exception:
        log.debug("could not hand an mDNS event to trio", exc_info=True)


def _lookup_sync(
    zc: Zeroconf, name: str, timeout_ms: float, version: IPVersion
) -> _Resolved | None:
    """Resolve one service instance (worker thread). ``None`` if it cannot be resolved."""
    try:
        info = ServiceInfo(SERVICE_TYPE, name)
        if not info.load_from_cache(zc) and not info.request(
            zc, timeout_ms, question_type=DNSQuestionType.QM
        ):
            return None
        text = info.text or b""
        return _Resolved(len(text), dict(info.properties), info.parsed_scoped_addresses(version))
    except Exception:  # names from the wire, zeroconf shutting down, ...
        log.debug("resolving mDNS service %s failed", _show(name), exc_info=True)
        return None


def _local_addresses(ip_version: IPVersion) -> list[str]:
    """Non-loopback addresses of this host (all of them if there are no others)."""
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if ip.is_IPv4:
                found.append(str(ip.ip))
            elif ip_version is IPVersion.All and isinstance(ip.ip, tuple):
                found.append(
                    f"{ip.ip[0]}%{adapter.name}" if ip.ip[0].startswith("fe80") else ip.ip[0]
                )
    usable = usable_addresses(found)
    outward = [a for a in usable if not a.startswith(("127.", "::1"))]
    return outward or usable


class MdnsDiscovery(Discovery):
    """Advertise this node and browse for others with mDNS / DNS-SD.

    Use it as ``async with MdnsDiscovery(...).running() as mdns:`` or
    ``await nursery.start(mdns.run)``; then consume ``mdns.hints()``.

    Args:
        node_id: our 32-byte node key (advertised; our own record is ignored).
        org_id: our 32-byte organisation root key (advertised).
        ports: transport scheme -> port we serve, in order of preference, e.g.
            ``{"quic": 4433, "tcp": 4433}`` (see :func:`ports_from_addresses`).
            Empty: browse only, advertise nothing.
        protocol_version: the p2pmsg protocol version we speak (advertised).
        interfaces: ``"all"`` (every IPv4 interface, zeroconf's default),
            ``"default"`` (the kernel's choice), or a list of interface IP
            addresses, e.g. ``["127.0.0.1"]`` or ``["10.1.2.3"]``.
        ip_version: ``"v4"`` (default) or ``"all"`` (IPv4 and IPv6).
        advertise_addresses: IPs to put in our A/AAAA records. Default: the IPs
            in ``interfaces`` if given as a list, else this host's non-loopback IPs.
        accept_orgs: if given, only advertisements claiming one of these org ids
            are hinted (a filter, not a security boundary).
        accept_versions: protocol versions worth hinting; default ``{protocol_version}``.
        resolve_timeout: seconds to wait for a service's SRV/TXT/A records.
        max_peers: bound on the table of known services (a flood is dropped).
        subscriber_buffer: hints buffered per ``hints()`` iterator before dropping.

    Raises:
        ValueError: invalid ids, ports or options.
    """

    def __init__(
        self,
        *,
        node_id: bytes,
        org_id: bytes,
        ports: Mapping[str, int] | None = None,
        protocol_version: int = 1,
        interfaces: Interfaces = "all",
        ip_version: Literal["v4", "all"] = "v4",
        advertise_addresses: Sequence[str] | None = None,
        accept_orgs: Collection[bytes] | None = None,
        accept_versions: Collection[int] | None = None,
        resolve_timeout: float = 3.0,
        max_peers: int = 256,
        subscriber_buffer: int = 1024,
    ) -> None:
        if len(node_id) != PUBLIC_KEY_SIZE or len(org_id) != PUBLIC_KEY_SIZE:
            raise ValueError(f"node_id and org_id are {PUBLIC_KEY_SIZE}-byte public keys")
        if resolve_timeout <= 0 or max_peers < 1 or subscriber_buffer < 1:
            raise ValueError("resolve_timeout, max_peers and subscriber_buffer must be positive")
        self._node_id = bytes(node_id)
        self._ad: Advertisement | None = None
        if ports:
            self._ad = Advertisement(
                self._node_id, bytes(org_id), protocol_version, tuple(ports.items())
            )
        elif not 1 <= protocol_version <= 0xFFFF:
            raise ValueError("protocol_version must be in 1..65535")
        if isinstance(interfaces, str):
            if interfaces not in ("all", "default"):
                raise ValueError("interfaces is 'all', 'default' or a list of IP addresses")
            self._interfaces: InterfaceChoice | list[str] = (
                InterfaceChoice.All if interfaces == "all" else InterfaceChoice.Default
            )
        else:
            self._interfaces = list(interfaces)
            if not self._interfaces or usable_addresses(self._interfaces) != self._interfaces:
                raise ValueError("interfaces must be distinct unicast IP addresses")
        self._ip_version = IPVersion.V4Only if ip_version == "v4" else IPVersion.All
        self._advertise = None if advertise_addresses is None else list(advertise_addresses)
        if self._advertise is not None and not usable_addresses(self._advertise):
            raise ValueError("advertise_addresses holds no usable IP address")
        self._accept_orgs = None if accept_orgs is None else frozenset(accept_orgs)
        self._accept_versions = frozenset(
            {protocol_version} if accept_versions is None else accept_versions
        )
        self._resolve_timeout_ms = resolve_timeout * 1000.0
        self._max_peers = max_peers
        self._subscriber_buffer = subscriber_buffer

        self._state: Literal["new", "running", "closed"] = "new"
        self._peers: dict[str, DiscoveredPeer] = {}
        self._subscribers: set[trio.MemorySendChannel[PeerHint]] = set()
        self._changed = trio.Event()
        self._events_send, self._events_receive = trio.open_memory_channel[
            tuple[str, ServiceStateChange]
        ](_MAX_PENDING_EVENTS)
        self._resolving: set[str] = set()
        self._dirty: set[str] = set()
        self._stale: set[str] = set()
        self._limiter = trio.CapacityLimiter(_RESOLVE_THREADS)
        self._accepted = self._rejected = self._removed = self._dropped = 0
        self._instance_name: str | None = None
        self._rejections: deque[tuple[str, str]] = deque(maxlen=32)

    # -- public API -------------------------------------------------------------------

    @property
    def instance_name(self) -> str | None:
        """Our registered service name (may differ after a name conflict), once running."""
        return self._instance_name

    def peers(self) -> list[DiscoveredPeer]:
        """A snapshot of the other nodes currently advertised on the link."""
        return list(self._peers.values())

    def statistics(self) -> MdnsStatistics:
        """Counters since start (see :class:`MdnsStatistics`)."""
        return MdnsStatistics(
            peers=len(self._peers),
            accepted=self._accepted,
            rejected=self._rejected,
            removed=self._removed,
            dropped=self._dropped,
            subscribers=len(self._subscribers),
        )

    def rejections(self) -> list[tuple[str, str]]:
        """The last 32 ignored services as ``(instance name, reason)``, oldest first.

        For troubleshooting ("why is node X not found?"); names are attacker-chosen text.
        """
        return list(self._rejections)

    async def wait_peers_changed(self) -> None:
        """Return after the next change of :meth:`peers` (add, update or removal)."""
        await self._changed.wait()

    async def hints(self) -> AsyncIterator[PeerHint]:
        """Hints for every node already known, then for each new or changed one.

        Each call is an independent subscriber. The iterator ends when discovery
        stops. A consumer that falls more than ``subscriber_buffer`` hints behind
        loses hints (counted in ``statistics().dropped``); an update of the peer
        hints it again.
        """
        send, receive = trio.open_memory_channel[PeerHint](self._subscriber_buffer)
        with send, receive:
            if self._state == "closed":
                return
            for peer in list(self._peers.values()):
                self._offer(send, peer.hints())
            self._subscribers.add(send)
            try:
                async for hint in receive:
                    yield hint
            finally:
                self._subscribers.discard(send)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[MdnsDiscovery]:
        """Run discovery for the duration of an ``async with`` block.

        Raises:
            TransportError: as :meth:`run`, unwrapped, if discovery cannot start.
        """
        started = False
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.run)
                started = True
                try:
                    yield self
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            errors = group.exceptions
            if not started and len(errors) == 1 and isinstance(errors[0], TransportError):
                raise errors[0] from group
            raise

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Browse and advertise until cancelled. Reports ``started`` once registered.

        Raises:
            TransportError: zeroconf could not open its sockets (no such interface,
                multicast unavailable) or could not register our service.
            RuntimeError: ``run`` was already called on this object.
        """
        if self._state != "new":
            raise RuntimeError("MdnsDiscovery.run() may only be called once")
        self._state = "running"
        token = trio.lowlevel.current_trio_token()
        zc: Zeroconf | None = None
        browser: ServiceBrowser | None = None
        info: ServiceInfo | None = None
        try:
            try:
                zc = await trio.to_thread.run_sync(
                    partial(Zeroconf, interfaces=self._interfaces, ip_version=self._ip_version)
                )
            except OSError as exc:
                raise TransportError(f"mDNS could not open its sockets: {exc}") from exc
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._process_events, zc, nursery)
                handler = partial(_bridge, token, self._deliver)
                browser = await trio.to_thread.run_sync(
                    partial(
                        ServiceBrowser,
                        zc,
                        SERVICE_TYPE,
                        handlers=[handler],
                        question_type=DNSQuestionType.QM,
                    )
                )
                failure: TransportError | None = None
                if self._ad is not None:
                    info = await trio.to_thread.run_sync(self._service_info)
                    try:
                        # Abandoned on cancel: closing zeroconf below ends the probing.
                        await trio.to_thread.run_sync(
                            partial(zc.register_service, info, allow_name_change=True),
                            abandon_on_cancel=True,
                        )
                    except Exception as exc:
                        info = None
                        # Raised after the nursery, so callers see a TransportError,
                        # not an exception group.
                        failure = TransportError(f"mDNS registration failed: {exc!r}")
                        failure.__cause__ = exc
                        nursery.cancel_scope.cancel()
                    else:
                        self._instance_name = info.name
                        log.info(
                            "mDNS: advertising node %s as %s",
                            short_id(self._node_id),
                            _show(info.name),
                        )
                if failure is None:
                    task_status.started()
                    await trio.sleep_forever()
            if failure is not None:
                raise failure
        finally:
            self._state = "closed"
            self._events_send.close()  # late zeroconf events are ignored from now on
            for send in list(self._subscribers):
                send.close()
            self._subscribers.clear()
            if zc is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT) as scope:
                    await trio.to_thread.run_sync(
                        partial(_close_sync, zc, browser, info), abandon_on_cancel=True
                    )
                if scope.cancelled_caught:
                    log.warning("mDNS: zeroconf did not close within %ss", CLOSE_TIMEOUT)

    # -- internals (all on the trio thread unless noted) ---------------------------------

    def _service_info(self) -> ServiceInfo:
        """Our ServiceInfo (worker thread: may enumerate interfaces)."""
        assert self._ad is not None
        if self._advertise is not None:
            addresses = usable_addresses(self._advertise)
        elif isinstance(self._interfaces, list):
            addresses = usable_addresses(self._interfaces)
        else:
            addresses = _local_addresses(self._ip_version)
        label = f"p2pmsg-{self._node_id.hex()[:24]}"
        return ServiceInfo(
            SERVICE_TYPE,
            f"{label}.{SERVICE_TYPE}",
            port=self._ad.ports[0][1],
            properties=encode_txt(self._ad),
            server=f"{label}.local.",
            parsed_addresses=[a.partition("%")[0] for a in addresses],
        )

    def _deliver(self, name: str, state: ServiceStateChange) -> None:
        """Called via ``run_sync_soon``: must never raise (it would crash the run)."""
        try:
            self._events_send.send_nowait((name, state))
        except trio.WouldBlock:
            self._dropped += 1
            log.debug("mDNS: event queue full, dropped %s for %s", state, _show(name))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        except Exception:
            log.debug("mDNS: could not queue an event", exc_info=True)

    async def _process_events(self, zc: Zeroconf, nursery: trio.Nursery) -> None:
        async for name, state in self._events_receive:
            if state is ServiceStateChange.Removed:
                self._forget(name)
                if name in self._resolving:
                    self._dirty.discard(name)
                    self._stale.add(name)
            elif name in self._resolving:
                self._dirty.add(name)
                self._stale.discard(name)
            elif len(self._resolving) >= _MAX_RESOLVING:
                self._dropped += 1
                log.debug("mDNS: too many services resolving, dropped %s", _show(name))
            else:
                self._resolving.add(name)
                nursery.start_soon(self._resolve, zc, name)

    async def _resolve(self, zc: Zeroconf, name: str) -> None:
        """Resolve ``name`` until no newer event for it arrived meanwhile."""
        try:
            while True:
                self._dirty.discard(name)
                resolved = await trio.to_thread.run_sync(
                    partial(_lookup_sync, zc, name, self._resolve_timeout_ms, self._ip_version),
                    abandon_on_cancel=True,
                    limiter=self._limiter,
                )
                if name in self._stale:
                    return
                if resolved is None:
                    self._reject(name, "could not resolve")
                else:
                    self._on_resolved(name, resolved)
                if name not in self._dirty:
                    return
        finally:
            self._resolving.discard(name)
            self._dirty.discard(name)
            self._stale.discard(name)

    def _on_resolved(self, name: str, resolved: _Resolved) -> None:
        """Validate a resolved service; remember and hint it if it is another node."""
        if resolved.text_size > MAX_TXT_BYTES:
            self._reject(name, "TXT record too large")
            return
        try:
            ad = parse_txt(resolved.properties)
        except DecodeError as exc:
            self._reject(name, str(exc))
            return
        if ad.node_id == self._node_id:
            return  # our own advertisement (or someone claiming our key: dialing it fails)
        if self._accept_orgs is not None and ad.org_id not in self._accept_orgs:
            self._reject(name, "organisation not accepted")
            return
        if ad.protocol_version not in self._accept_versions:
            self._reject(name, f"protocol version {ad.protocol_version} not accepted")
            return
        addresses = tuple(usable_addresses(resolved.addresses))
        if not addresses:
            self._reject(name, "no usable address")
            return
        peer = DiscoveredPeer(name, ad, addresses)
        old = self._peers.get(name)
        if old == peer:
            return
        if old is None and len(self._peers) >= self._max_peers:
            self._reject(name, "peer table full")
            return
        self._peers[name] = peer
        self._accepted += 1
        log.debug(
            "mDNS: node %s at %s (%s)",
            short_id(ad.node_id),
            ",".join(addresses),
            ",".join(s for s, _ in ad.ports),
        )
        hints = peer.hints()
        for send in list(self._subscribers):
            self._offer(send, hints)
        self._notify()

    def _reject(self, name: str, why: str) -> None:
        self._rejected += 1
        self._rejections.append((name, why))
        log.debug("mDNS: ignoring service %s: %s", _show(name), why)

    def _forget(self, name: str) -> None:
        peer = self._peers.pop(name, None)
        if peer is not None:
            self._removed += 1
            log.debug("mDNS: node %s left", short_id(peer.advertisement.node_id))
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _offer(self, send: trio.MemorySendChannel[PeerHint], hints: list[PeerHint]) -> None:
        for hint in hints:
            try:
                send.send_nowait(hint)
            except trio.WouldBlock:
                self._dropped += 1
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._subscribers.discard(send)
                return


def _close_sync(zc: Zeroconf, browser: ServiceBrowser | None, info: ServiceInfo | None) -> None:
    """Cancel browsing, send our goodbye, close zeroconf (worker thread; never raises)."""
    steps: list[tuple[str, Callable[[], Any]]] = []
    if browser is not None:
        steps.append(("cancel browser", browser.cancel))
    if info is not None:
        steps.append(("unregister", partial(zc.unregister_service, info)))
    steps.append(("close", zc.close))
    for what, step in steps:
        try:
            step()
        except Exception:
            log.debug("mDNS shutdown: %s failed", what, exc_info=True)
