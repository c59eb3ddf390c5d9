"""The in-memory reference transport, with knobs for latency, loss and partitions.

Theory of operation
-------------------
A :class:`MemoryNetwork` is a whole fake network living in one trio run. Each node
gets a :class:`MemoryTransport` from :meth:`MemoryNetwork.transport` under a unique
*name* (its address is ``memory://<name>``) together with its node key. The network
trusts that registration: dialing ``memory://b`` while expecting key K succeeds only
if ``b`` registered K, else :class:`~p2pmsg.errors.TransportError` is raised before
any byte flows — the in-process stand-in for a TLS/Noise handshake.

A connection is two one-way *pipes*. ``send_all`` cuts data into segments; each
segment gets a delivery time and waits in the receiver's queue until then:

    delivery = max(previous delivery,                      # in order, like TCP
                   link free + size / bandwidth            # serialisation delay
                   + latency ± uniform(jitter)             # propagation
                   + retransmit_timeout * (times lost))    # loss, see below

**Loss** is modelled the way a reliable stream transport experiences it: a lost
segment is retransmitted, so it arrives ``retransmit_timeout`` later (again with
probability ``loss``), and everything behind it waits (head-of-line blocking).
Connections are never dropped by loss; :meth:`MemoryNetwork.cut` drops them.

**Backpressure**: a pipe holds at most ``buffer_size`` bytes that are sent but not
yet received (in flight or queued); ``send_all`` waits beyond that.

**Partitions**: :meth:`MemoryNetwork.cut` breaks every open connection between two
names (both ends raise :class:`trio.BrokenResourceError`) and makes dials between
them fail until :meth:`MemoryNetwork.heal`.

All time is ``trio.current_time()`` and all randomness comes from one
``random.Random(seed)``, so under ``trio.testing.MockClock(autojump_threshold=0)``
a run is reproducible and costs no wall-clock time for its delays.
"""

from __future__ import annotations

import operator
import random
from collections import deque
from dataclasses import dataclass, field

import trio

from ..errors import TransportError
from ..identity import short_id
from .base import PeerStream, StreamHandler, Transport

__all__ = [
    "LinkConditions",
    "MemoryNetwork",
    "MemoryNetworkStatistics",
    "MemoryPeerStream",
    "MemoryTransport",
]

SCHEME = "memory"
_PREFIX = SCHEME + "://"
_MAX_RECEIVE = 1 << 16


@dataclass(frozen=True, slots=True)
class LinkConditions:
    """How one (directed) link behaves. The default is a perfect, instant link."""

    latency: float = 0.0
    """One-way propagation delay in seconds."""
    jitter: float = 0.0
    """Each segment's latency varies uniformly by up to ± this many seconds (≥ 0)."""
    loss: float = 0.0
    """Probability that a segment is lost once (and retransmitted); 0 <= loss < 1."""
    bandwidth: float | None = None
    """Bytes per second, or None for unlimited."""
    retransmit_timeout: float = 0.2
    """Extra delay each time a segment is lost (a TCP-like minimum RTO)."""
    segment_size: int = 16 * 1024
    """Bytes per segment; the unit of loss and of delivery."""

    def __post_init__(self) -> None:
        if self.latency < 0 or self.jitter < 0 or self.retransmit_timeout < 0:
            raise ValueError("latency, jitter and retransmit_timeout must be >= 0")
        if not 0 <= self.loss < 1:
            raise ValueError("loss must be in [0, 1)")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be positive or None")
        if self.segment_size < 1:
            raise ValueError("segment_size must be >= 1")


@dataclass(slots=True)
class MemoryNetworkStatistics:
    """Counters over the network's lifetime (see :meth:`MemoryNetwork.statistics`)."""

    connections: int = 0
    """Connections established."""
    dials_refused: int = 0
    """Dials that failed: nobody listening, partitioned, or wrong key."""
    bytes_sent: int = 0
    """Payload bytes handed to pipes by ``send_all``."""
    segments: int = 0
    """Segments sent (each may be 'lost' and retransmitted)."""
    retransmissions: int = 0
    """Segment losses, each costing one ``retransmit_timeout``."""
    connections_cut: int = 0
    """Connections broken by :meth:`MemoryNetwork.cut`."""


class _Pipe:
    """One direction of a connection: a queue of (delivery time, segment | None=EOF)."""

    __slots__ = (
        "broken",
        "buffered",
        "dst",
        "eof",
        "last_delivery",
        "link_free_at",
        "lot",
        "queue",
        "reader_closed",
        "src",
    )

    def __init__(self, src: str, dst: str) -> None:
        self.src = src
        self.dst = dst
        self.queue: deque[tuple[float, bytes | None]] = deque()
        self.buffered = 0
        self.broken = False
        self.reader_closed = False
        self.eof = False
        self.lot = trio.lowlevel.ParkingLot()
        self.link_free_at = 0.0
        self.last_delivery = 0.0

    def wake(self) -> None:
        self.lot.unpark_all()


class _Connection:
    __slots__ = ("a_to_b", "b_to_a", "names")

    def __init__(self, a: str, b: str) -> None:
        self.names = frozenset((a, b))
        self.a_to_b = _Pipe(a, b)
        self.b_to_a = _Pipe(b, a)

    def abort(self) -> None:
        for pipe in (self.a_to_b, self.b_to_a):
            pipe.broken = True
            pipe.queue.clear()
            pipe.buffered = 0
            pipe.wake()


class MemoryNetwork:
    """A simulated network of named nodes. Create transports with :meth:`transport`.

    ``conditions`` apply to every link unless :meth:`set_link` overrides a pair;
    ``seed`` fixes every random choice (jitter, loss).
    """

    def __init__(
        self,
        conditions: LinkConditions | None = None,
        *,
        seed: int = 0,
        buffer_size: int = 256 * 1024,
    ) -> None:
        if buffer_size < 1:
            raise ValueError("buffer_size must be >= 1")
        self.conditions = conditions or LinkConditions()
        self.buffer_size = buffer_size
        self._rng = random.Random(seed)
        self._links: dict[tuple[str, str], LinkConditions] = {}
        self._cuts: set[frozenset[str]] = set()
        self._listeners: dict[str, _Listener] = {}
        self._node_ids: dict[str, bytes] = {}
        self._connections: dict[frozenset[str], set[_Connection]] = {}
        self._stats = MemoryNetworkStatistics()

    # -- configuration -----------------------------------------------------------

    def transport(self, name: str, node_id: bytes) -> MemoryTransport:
        """The transport of node ``name`` (address ``memory://name``) holding ``node_id``."""
        return MemoryTransport(network=self, name=name, node_id=node_id)

    def set_link(self, a: str, b: str, conditions: LinkConditions) -> None:
        """Override the conditions of the link between ``a`` and ``b`` (both ways)."""
        self._links[(a, b)] = conditions
        self._links[(b, a)] = conditions

    def link(self, src: str, dst: str) -> LinkConditions:
        """The conditions data from ``src`` to ``dst`` experiences."""
        return self._links.get((src, dst), self.conditions)

    # -- partitions --------------------------------------------------------------

    def cut(self, a: str, b: str) -> None:
        """Partition ``a`` from ``b``: break their connections, refuse new dials."""
        key = frozenset((a, b))
        self._cuts.add(key)
        for conn in self._connections.pop(key, set()):
            self._stats.connections_cut += 1
            conn.abort()

    def heal(self, a: str, b: str) -> None:
        """Undo :meth:`cut`: ``a`` and ``b`` can dial each other again."""
        self._cuts.discard(frozenset((a, b)))

    def partition(self, group_a: list[str], group_b: list[str]) -> None:
        """:meth:`cut` every pair across the two groups."""
        for a in group_a:
            for b in group_b:
                self.cut(a, b)

    def heal_all(self) -> None:
        """Remove every partition."""
        self._cuts.clear()

    def is_cut(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self._cuts

    def statistics(self) -> MemoryNetworkStatistics:
        """A copy of the network's counters."""
        s = self._stats
        return MemoryNetworkStatistics(
            s.connections,
            s.dials_refused,
            s.bytes_sent,
            s.segments,
            s.retransmissions,
            s.connections_cut,
        )

    # -- internals used by streams and transports --------------------------------

    def _push(self, pipe: _Pipe, segment: bytes | None) -> None:
        """Queue a segment (or EOF) on ``pipe`` with its computed delivery time."""
        now = trio.current_time()
        c = self.link(pipe.src, pipe.dst)
        size = 0 if segment is None else len(segment)
        start = max(now, pipe.link_free_at)
        done = start + (size / c.bandwidth if c.bandwidth else 0.0)
        pipe.link_free_at = done
        delay = c.latency
        if c.jitter:
            delay = max(0.0, delay + self._rng.uniform(-c.jitter, c.jitter))
        if segment is not None:
            self._stats.segments += 1
            self._stats.bytes_sent += size
            while c.loss and self._rng.random() < c.loss:
                self._stats.retransmissions += 1
                delay += c.retransmit_timeout
        at = max(done + delay, pipe.last_delivery)
        pipe.last_delivery = at
        pipe.queue.append((at, segment))
        pipe.buffered += size
        pipe.wake()

    def _connect(self, dialer: MemoryTransport, listener: _Listener) -> MemoryPeerStream:
        conn = _Connection(dialer.name, listener.name)
        self._connections.setdefault(conn.names, set()).add(conn)
        self._stats.connections += 1
        local = MemoryPeerStream(self, conn, conn.a_to_b, conn.b_to_a, listener.node_id)
        remote = MemoryPeerStream(self, conn, conn.b_to_a, conn.a_to_b, dialer.node_id)
        try:
            listener.incoming.send_nowait(remote)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            conn.abort()
            self._forget(conn)
            raise TransportError("the listener stopped accepting") from None
        return local

    def _forget(self, conn: _Connection) -> None:
        live = self._connections.get(conn.names)
        if live is not None:
            live.discard(conn)
            if not live:
                del self._connections[conn.names]


class MemoryPeerStream(PeerStream):
    """One end of a memory connection. See the module docstring for its timing."""

    def __init__(
        self,
        network: MemoryNetwork,
        conn: _Connection,
        outgoing: _Pipe,
        incoming: _Pipe,
        remote_id: bytes,
    ) -> None:
        self._network = network
        self._conn = conn
        self._out = outgoing
        self._in = incoming
        self.remote_id = remote_id
        self._closed = False
        self._sending = False
        self._receiving = False

    @property
    def local_name(self) -> str:
        return self._out.src

    @property
    def remote_name(self) -> str:
        return self._out.dst

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            payload = bytes(data)
            pipe = self._out
            seg_size = self._network.link(pipe.src, pipe.dst).segment_size
            offset = 0
            while True:
                if self._closed or pipe.eof:
                    raise trio.ClosedResourceError("stream is closed for sending")
                if pipe.broken or pipe.reader_closed:
                    raise trio.BrokenResourceError("connection lost")
                if offset >= len(payload):
                    return
                if pipe.buffered >= self._network.buffer_size:
                    await pipe.lot.park()
                    continue
                segment = payload[offset : offset + seg_size]
                offset += len(segment)
                self._network._push(pipe, segment)
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            pipe = self._out
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("stream is closed")
                if pipe.broken or pipe.reader_closed or pipe.eof:
                    return
                if pipe.buffered < self._network.buffer_size:
                    return
                await pipe.lot.park()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            if self._closed:
                raise trio.ClosedResourceError("stream is closed")
            pipe = self._out
            if pipe.eof:
                return
            pipe.eof = True
            if not pipe.broken and not pipe.reader_closed:
                self._network._push(pipe, None)
        finally:
            self._sending = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint()
            limit = max_bytes if max_bytes is not None else _MAX_RECEIVE
            pipe = self._in
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("stream is closed")
                if pipe.broken:
                    raise trio.BrokenResourceError("connection lost")
                if not pipe.queue:
                    await pipe.lot.park()
                    continue
                at = pipe.queue[0][0]
                if at > trio.current_time():
                    with trio.move_on_at(at):
                        await pipe.lot.park()
                    continue
                return self._take(limit)
        finally:
            self._receiving = False

    def _take(self, limit: int) -> bytes:
        """Pop up to ``limit`` bytes of delivered segments (b"" at EOF)."""
        pipe = self._in
        now = trio.current_time()
        parts: list[bytes] = []
        taken = 0
        while pipe.queue and taken < limit:
            at, segment = pipe.queue[0]
            if at > now or segment is None:
                break
            room = limit - taken
            if len(segment) <= room:
                pipe.queue.popleft()
                parts.append(segment)
                taken += len(segment)
            else:
                parts.append(segment[:room])
                pipe.queue[0] = (at, segment[room:])
                taken += room
        pipe.buffered -= taken
        pipe.wake()
        return b"".join(parts)

    def abort(self) -> None:
        """Break the connection at once (both ends see BrokenResourceError)."""
        self._conn.abort()
        self._network._forget(self._conn)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            out, inc = self._out, self._in
            if not out.eof and not out.broken and not out.reader_closed:
                out.eof = True
                self._network._push(out, None)
            inc.reader_closed = True
            inc.queue.clear()
            inc.buffered = 0
            out.wake()
            inc.wake()
            if out.reader_closed or out.broken:
                self._network._forget(self._conn)
        await trio.lowlevel.checkpoint()


@dataclass(slots=True)
class _Listener:
    name: str
    node_id: bytes
    incoming: trio.MemorySendChannel[MemoryPeerStream] = field(repr=False)


class MemoryTransport(Transport):
    """The transport of one node on a :class:`MemoryNetwork`.

    Registered as the ``memory`` plugin of the ``p2pmsg.transports`` entry-point
    group; build it with :meth:`MemoryNetwork.transport` (or ``load_transport(
    "memory", network=..., name=..., node_id=...)``).
    """

    scheme = SCHEME

    def __init__(self, *, network: MemoryNetwork, name: str, node_id: bytes) -> None:
        if not name or "/" in name:
            raise ValueError("a memory node name is non-empty and has no '/'")
        self.network = network
        self.name = name
        self.node_id = node_id

    def __repr__(self) -> str:
        return f"MemoryTransport({self.name!r}, {short_id(self.node_id)})"

    def addresses(self) -> list[str]:
        return [_PREFIX + self.name]

    async def dial(self, address: str, expected_peer: bytes) -> MemoryPeerStream:
        name = address.removeprefix(_PREFIX)
        net = self.network
        link = net.link(self.name, name)
        if link.latency:
            await trio.sleep(2 * link.latency)  # the handshake's round trip
        else:
            await trio.lowlevel.checkpoint()
        listener = net._listeners.get(name)
        if listener is None:
            net._stats.dials_refused += 1
            raise TransportError(f"nothing listens at {address}")
        if net.is_cut(self.name, name):
            net._stats.dials_refused += 1
            raise TransportError(f"{address} is unreachable (partitioned)")
        if listener.node_id != expected_peer:
            net._stats.dials_refused += 1
            raise TransportError(
                f"{address} proved key {short_id(listener.node_id)}, "
                f"expected {short_id(expected_peer)}"
            )
        return net._connect(self, listener)

    async def serve(
        self,
        handler: StreamHandler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        net = self.network
        if self.name in net._listeners:
            raise TransportError(f"memory://{self.name} is already being served")
        send, receive = trio.open_memory_channel[MemoryPeerStream](float("inf"))
        net._listeners[self.name] = _Listener(self.name, self.node_id, send)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                async with receive:
                    async for stream in receive:
                        nursery.start_soon(_run_handler, handler, stream)
        finally:
            del net._listeners[self.name]
            send.close()


async def _run_handler(handler: StreamHandler, stream: MemoryPeerStream) -> None:
    try:
        await handler(stream)
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()
