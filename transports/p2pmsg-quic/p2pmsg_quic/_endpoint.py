"""One UDP socket shared by every QUIC connection of a node, routed by connection id.

Servers and clients share the socket (a node dials from the port it listens on,
which is what peers behind NATs need). Every datagram's destination connection id
is looked up in a routing table that the drivers keep current as they issue and
retire ids. An unknown id carried by a full-size Initial packet is a new client:
the endpoint asks its ``accept`` factory (set while ``serve`` runs) for a driver.
Anything else unroutable is dropped, as are datagrams that do not parse.

Hot path (why the socket is a plain non-blocking :mod:`socket`): aioquic costs
tens of microseconds per packet, so trio scheduling per datagram would dominate.
:meth:`Endpoint.receive_loop` wakes once per readable socket, drains up to
``_BATCH`` datagrams with non-blocking ``recvfrom_into``, feeds each to its driver,
and then lets every touched driver transmit once (:meth:`ConnectionDriver.transmit`
sends synchronously with :meth:`Endpoint.transmit`): one ACK covers the batch and
no task switch happens per datagram. Only when the kernel send buffer is full does
a driver queue datagrams and wait for :meth:`_writer_loop`.

Initial floods (there are no Retry tokens): new connections are rate-limited per
source host (:class:`NewConnectionLimiter`), capped at ``max_connections``, and a
server connection whose first Initial does not decrypt is discarded at once, so
forged Initials leave no state behind.
"""

from __future__ import annotations

import errno
import socket
from collections import OrderedDict
from collections.abc import Callable

import trio
from aioquic._buffer import Buffer
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE
from aioquic.quic.packet import (
    QuicHeader,
    QuicPacketType,
    encode_quic_version_negotiation,
    pull_quic_header,
)

from ._connection import Address, ConnectionDriver

__all__ = ["CONNECTION_ID_LENGTH", "Endpoint", "NewConnectionLimiter"]

CONNECTION_ID_LENGTH = 8
"""Length of every local connection id (short headers do not carry the length)."""

_MAX_UDP_PAYLOAD = 65535
_BATCH = 64
"""Datagrams drained per wake-up before the touched connections transmit."""
_LOSSY_ERRNOS = frozenset({
    errno.ENOBUFS, errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
    errno.EPERM, errno.EHOSTDOWN, errno.ENETDOWN,
})
"""sendto/recvfrom errors that mean "this datagram (or an earlier one) was lost"."""

AcceptFactory = Callable[[bytes, Address], ConnectionDriver | None]
"""(original destination cid, peer address) -> a new server driver, or None to drop."""


class NewConnectionLimiter:
    """Token bucket per source host for new server connections (Initial-flood bound).

    ``rate`` connections per second, ``burst`` at once; at most ``max_sources``
    hosts are remembered (least recently seen forgotten first), so the table itself
    stays bounded under a spoofed-address flood.
    """

    def __init__(self, rate: float, burst: int, max_sources: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, host: str, now: float) -> bool:
        """Take one token for ``host``; False when it has none left."""
        tokens, last = self._buckets.pop(host, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[host] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return allowed


class Endpoint:
    """Owns the socket, the routing table and the driver tasks (in ``nursery``)."""

    def __init__(
        self,
        sock: socket.socket,
        nursery: trio.Nursery,
        supported_versions: list[int],
        max_connections: int,
        limiter: NewConnectionLimiter | None = None,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.nursery = nursery
        self.accept: AcceptFactory | None = None
        self.limiter = limiter
        self._supported_versions = supported_versions
        self._max_connections = max_connections
        self._routes: dict[bytes, ConnectionDriver] = {}
        self._drivers: dict[ConnectionDriver, set[bytes]] = {}
        self._blocked: dict[ConnectionDriver, None] = {}
        self._blocked_event = trio.Event()
        self.dropped_initials = 0
        """Initial packets refused (rate limit, connection cap, undecryptable)."""

    @property
    def local_address(self) -> Address:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def connection_count(self) -> int:
        return len(self._drivers)

    # -- routing (called by drivers) ------------------------------------------------

    def start(self, driver: ConnectionDriver, *cids: bytes) -> None:
        """Route ``cids`` to a new ``driver`` and start its pump task."""
        self._drivers[driver] = set()
        for cid in cids:
            self.add_route(cid, driver)
        self.nursery.start_soon(driver.run)

    def add_route(self, cid: bytes, driver: ConnectionDriver) -> None:
        if driver in self._drivers:
            self._routes[cid] = driver
            self._drivers[driver].add(cid)

    def remove_route(self, cid: bytes) -> None:
        driver = self._routes.pop(cid, None)
        if driver is not None:
            self._drivers[driver].discard(cid)

    def forget(self, driver: ConnectionDriver) -> None:
        for cid in self._drivers.pop(driver, ()):
            if self._routes.get(cid) is driver:
                del self._routes[cid]

    # -- I/O ------------------------------------------------------------------------

    def transmit(self, data: bytes, addr: Address) -> bool:
        """Send one datagram now; False if the kernel buffer is full (keep it, and
        call :meth:`wait_writable`). Errors that only mean loss count as sent."""
        try:
            self.sock.sendto(data, addr)
        except BlockingIOError:
            return False
        except OSError as exc:
            # UDP is lossy anyway: a full buffer or an ICMP error on a previous
            # datagram is a lost packet, which QUIC recovers from or times out on.
            if exc.errno not in _LOSSY_ERRNOS:
                raise
        return True

    def wait_writable(self, driver: ConnectionDriver) -> None:
        """``driver`` has queued datagrams: call its ``transmit`` once writable."""
        self._blocked[driver] = None
        self._blocked_event.set()

    async def _writer_loop(self) -> None:
        """Retries blocked drivers when the socket drains (one waiter per socket)."""
        while True:
            await self._blocked_event.wait()
            self._blocked_event = trio.Event()
            while self._blocked:
                await trio.lowlevel.wait_writable(self.sock)
                blocked, self._blocked = self._blocked, {}
                for driver in blocked:
                    driver.transmit()

    async def receive_loop(self) -> None:
        """Receive and route datagrams until cancelled (also runs the writer)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer_loop)
            await self._receive_batches()

    async def _receive_batches(self) -> None:
        sock = self.sock
        buffer = bytearray(_MAX_UDP_PAYLOAD)
        view = memoryview(buffer)
        touched: dict[ConnectionDriver, None] = {}
        while True:
            await trio.lowlevel.wait_readable(sock)
            now = trio.current_time()
            for _ in range(_BATCH):
                try:
                    size, addr = sock.recvfrom_into(buffer)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in _LOSSY_ERRNOS:
                        continue  # ICMP error for something we sent earlier
                    raise
                driver = self._route(bytes(view[:size]), (addr[0], addr[1]), now)
                if driver is not None:
                    touched[driver] = None
            for driver in touched:
                driver.transmit()
            touched.clear()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """Handle one datagram at once (the receive loop batches instead)."""
        driver = self._route(data, addr, trio.current_time())
        if driver is not None:
            driver.transmit()

    def _route(self, data: bytes, addr: Address, now: float) -> ConnectionDriver | None:
        """Feed ``data`` to its driver (a new one for a valid Initial); that driver."""
        if len(data) > 5 and data[0] & 0x80 == 0:
            # Short header: the destination cid is at a fixed offset; skip parsing.
            driver = self._routes.get(data[1 : 1 + CONNECTION_ID_LENGTH])
            if driver is not None:
                driver.datagram_received(data, addr, now)
            return driver
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=CONNECTION_ID_LENGTH)
        except ValueError:
            return None
        driver = self._routes.get(header.destination_cid)
        if driver is None:
            return self._new_connection(data, addr, header, now)
        driver.datagram_received(data, addr, now)
        return driver

    def _new_connection(
        self,
        data: bytes,
        addr: Address,
        header: QuicHeader,
        now: float,
    ) -> ConnectionDriver | None:
        packet_type, version = header.packet_type, header.version
        destination_cid, source_cid = header.destination_cid, header.source_cid
        if self.accept is None or packet_type != QuicPacketType.INITIAL:
            return None
        # Clients pad Initials to 1200 bytes; answering anything smaller (even with
        # version negotiation) would let a spoofed source amplify through us.
        if len(data) < SMALLEST_MAX_DATAGRAM_SIZE:
            self.dropped_initials += 1
            return None
        if version is not None and version not in self._supported_versions:
            datagram = encode_quic_version_negotiation(
                source_cid=destination_cid,
                destination_cid=source_cid,
                supported_versions=self._supported_versions,
            )
            self.transmit(datagram, addr)  # best effort; never queued
            return None
        # The table is bounded, and each source host gets a limited rate of new
        # connections (there are no Retry tokens to validate addresses).
        if (
            len(self._drivers) >= self._max_connections
            or (self.limiter is not None and not self.limiter.allow(addr[0], now))
        ):
            self.dropped_initials += 1
            return None
        driver = self.accept(destination_cid, addr)
        if driver is None:
            return None
        driver.datagram_received(data, addr, now)
        if not driver.accepted_any_packet():
            self.dropped_initials += 1  # forged or corrupt: keep no state for it
            return None
        self.start(driver, destination_cid, driver.quic.host_cid)
        return driver
