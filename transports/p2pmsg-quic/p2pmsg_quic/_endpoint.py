"""One UDP socket shared by every QUIC connection of a node, routed by connection id.

Servers and clients share the socket (a node dials from the port it listens on,
which is what peers behind NATs need). Every datagram's destination connection id
is looked up in a routing table that the drivers keep current as they issue and
retire ids. An unknown id carried by a full-size Initial packet is a new client:
the endpoint asks its ``accept`` factory (set while ``serve`` runs) for a driver.
Anything else unroutable is dropped, as are datagrams that do not parse.
"""

from __future__ import annotations

import errno
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

__all__ = ["CONNECTION_ID_LENGTH", "Endpoint"]

CONNECTION_ID_LENGTH = 8
"""Length of every local connection id (short headers do not carry the length)."""

_MAX_UDP_PAYLOAD = 65535

AcceptFactory = Callable[[bytes, Address], ConnectionDriver | None]
"""(original destination cid, peer address) -> a new server driver, or None to drop."""


class Endpoint:
    """Owns the socket, the routing table and the driver tasks (in ``nursery``)."""

    def __init__(
        self,
        sock: trio.socket.SocketType,
        nursery: trio.Nursery,
        supported_versions: list[int],
        max_connections: int,
    ) -> None:
        self.sock = sock
        self.nursery = nursery
        self.accept: AcceptFactory | None = None
        self._supported_versions = supported_versions
        self._max_connections = max_connections
        self._routes: dict[bytes, ConnectionDriver] = {}
        self._drivers: dict[ConnectionDriver, set[bytes]] = {}

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

    async def send(self, data: bytes, addr: Address) -> None:
        try:
            await self.sock.sendto(data, addr)
        except OSError as exc:
            # UDP is lossy anyway: a full buffer or an ICMP error on a previous
            # datagram is a lost packet, which QUIC recovers from or times out on.
            if exc.errno not in (errno.ENOBUFS, errno.EAGAIN, errno.ECONNREFUSED,
                                 errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EPERM):
                raise

    async def receive_loop(self) -> None:
        """Receive and route datagrams until cancelled."""
        while True:
            try:
                data, addr = await self.sock.recvfrom(_MAX_UDP_PAYLOAD)
            except ConnectionRefusedError:
                continue  # ICMP port unreachable for something we sent earlier
            self.datagram_received(data, (str(addr[0]), int(addr[1])))

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=CONNECTION_ID_LENGTH)
        except ValueError:
            return
        driver = self._routes.get(header.destination_cid)
        if driver is None:
            driver = self._new_connection(data, addr, header)
            if driver is None:
                return
        driver.datagram_received(data, addr, trio.current_time())

    def _new_connection(
        self,
        data: bytes,
        addr: Address,
        header: QuicHeader,
    ) -> ConnectionDriver | None:
        packet_type, version = header.packet_type, header.version
        destination_cid, source_cid = header.destination_cid, header.source_cid
        if self.accept is None or packet_type != QuicPacketType.INITIAL:
            return None
        if version is not None and version not in self._supported_versions:
            datagram = encode_quic_version_negotiation(
                source_cid=destination_cid,
                destination_cid=source_cid,
                supported_versions=self._supported_versions,
            )
            self.nursery.start_soon(self.send, datagram, addr)
            return None
        # Clients pad Initials to 1200 bytes (anti-amplification); the table is bounded.
        if len(data) < SMALLEST_MAX_DATAGRAM_SIZE or len(self._drivers) >= self._max_connections:
            return None
        driver = self.accept(destination_cid, addr)
        if driver is not None:
            self.start(driver, destination_cid, driver.quic.host_cid)
        return driver
