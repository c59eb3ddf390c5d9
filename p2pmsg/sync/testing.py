"""Test helpers for the sync machine: a reference node loop and a fake link.

:class:`SyncPeer` is what a node does with one session, minus I/O: it answers the
machine's events from a :class:`~p2pmsg.store.memory.MemoryStore` (the reference
loop the trio node mirrors). :class:`ConnectionPair` pushes bytes between two
peers' machines, one *flight* per direction per round, with ``now`` stepped by the
caller — used by tests/test_sync_*.py and benchmarks/bench_resync.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..entry import Entry
from ..errors import ForkError, RemoteProtocolError, StoreError
from ..forks import ForkProof
from ..policy import AllowAllPolicy, Policy
from ..store.base import PayloadState
from ..store.memory import MemoryStore
from . import commands as cmd
from . import events as ev
from .connection import SyncConfig, SyncConnection
from .frames import FrameDecoder, encode_frame
from .index import LogIndex
from .messages import PROTOCOL_VERSION, Grant, Hello, Message, decode_message

__all__ = ["ConnectionPair", "RawPeer", "SyncPeer"]


@dataclass
class SyncPeer:
    """One node's side of a session: store, index and the event-answering loop."""

    node_id: bytes
    store: MemoryStore = field(default_factory=MemoryStore)
    index: LogIndex = field(default_factory=LogIndex)
    policy: Policy = field(default_factory=AllowAllPolicy)
    auto_apply: bool = True
    """Answer EntriesReceived/PayloadsReceived with EntriesApplied at once."""
    fetch_payloads: bool = False
    """Ask for missing payloads after each received run that came without them."""
    conn: SyncConnection | None = None
    events: list[ev.Event] = field(default_factory=list)
    unapplied: list[int] = field(default_factory=list)
    forks: list[ForkProof] = field(default_factory=list)
    error: RemoteProtocolError | None = None
    outbox: bytearray = field(default_factory=bytearray)
    """Bytes returned by ``send()`` (it drains them), not yet given to the link."""

    def send(self, command: cmd.Command) -> None:
        """Give the machine a command, keeping the bytes it returns for the link."""
        self.outbox += self.c.send(command)

    def take_output(self) -> bytes:
        """Everything to write to the link now (send() results, then data_to_send())."""
        data = bytes(self.outbox) + self.c.data_to_send()
        self.outbox.clear()
        return data

    def add(self, entries: Sequence[Entry], payloads: dict[bytes, bytes] | None = None) -> None:
        """Append local entries (as the node does on a local write) and index them."""
        result = self.store.append(entries, payloads or {})
        self.index.update(result.added)

    def connect(self, peer_id: bytes, *, initiator: bool, config: SyncConfig | None = None,
                ) -> SyncConnection:
        self.conn = SyncConnection(local_id=self.node_id, peer_id=peer_id, index=self.index,
                                   policy=self.policy, initiator=initiator, config=config)
        return self.conn

    @property
    def c(self) -> SyncConnection:
        assert self.conn is not None
        return self.conn

    def of_type(self, kind: type) -> list[ev.Event]:
        return [e for e in self.events if isinstance(e, kind)]

    def apply(self, token: int) -> None:
        """Return credit for a batch held back (``auto_apply=False``)."""
        self.unapplied.remove(token)
        self.send(cmd.EntriesApplied(token))

    def process(self) -> None:
        """Drain and answer every event of the machine, as the node loop does."""
        conn = self.c
        while (event := conn.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, ev.EntriesNeeded):
                entries = self.store.get_range(event.author, event.topic, event.start, event.end)
                payloads = {}
                for e in entries:
                    p = self.store.get_payload(e.id)
                    if isinstance(p, bytes):
                        payloads[e.id] = p
                self.send(cmd.SendEntries(entries, payloads))
            elif isinstance(event, ev.EntriesReceived):
                self._store_run(event)
            elif isinstance(event, ev.PayloadsNeeded):
                answer: dict[bytes, bytes | None] = {}
                headers = []
                for pid in event.entry_ids:
                    entry = self.store.get_entry(pid)
                    p = self.store.get_payload(pid)
                    if entry is not None and entry.header.topic == event.topic and isinstance(
                            p, bytes):
                        answer[pid] = p
                        headers.append(entry)
                    else:
                        answer[pid] = None
                self.send(cmd.SendPayloads(answer, headers))
            elif isinstance(event, ev.PayloadsReceived):
                for pid, data in event.payloads.items():
                    self.store.put_payload(pid, data)
                self._applied(event.token)
            elif isinstance(event, ev.ForkProofReceived):
                self.store.record_fork(event.proof)
                self.forks.append(event.proof)

    def _store_run(self, event: ev.EntriesReceived) -> None:
        try:
            result = self.store.append(event.entries, event.payloads)
        except ForkError as exc:
            self.store.record_fork(exc.proof)
            self.forks.append(exc.proof)
            self.send(cmd.SendForkProof(exc.proof))
        except StoreError:
            pass
        else:
            self.index.update(result.added)
            if self.fetch_payloads:
                lacking = [e for e in result.added
                           if self.store.get_payload(e.id) is PayloadState.MISSING]
                if lacking:
                    self.send(cmd.RequestPayloads(lacking))
        self._applied(event.token)

    def _applied(self, token: int) -> None:
        if self.auto_apply:
            self.send(cmd.EntriesApplied(token))
        else:
            self.unapplied.append(token)

    def entry_ids(self, topics: Iterable[bytes]) -> set[bytes]:
        """Ids of every stored entry of ``topics`` (for convergence checks)."""
        out: set[bytes] = set()
        for topic in topics:
            for head in self.store.heads(topic):
                out.update(e.id for e in self.store.get_range(head.author, topic, 1, head.seq))
        return out


@dataclass
class ConnectionPair:
    """Two peers' machines joined by a fake, lossless, ordered link.

    ``run()`` alternates: deliver everything A has to B, let B answer its events,
    deliver everything B has to A, let A answer — each non-empty delivery is one
    *flight*; ``round_trips`` counts rounds in which any byte moved.
    """

    a: SyncPeer
    b: SyncPeer
    now: float = 0.0
    flights: int = 0
    round_trips: int = 0
    bytes_a_to_b: int = 0
    bytes_b_to_a: int = 0

    @classmethod
    def connect(cls, a: SyncPeer, b: SyncPeer, topics_a: Iterable[bytes],
                topics_b: Iterable[bytes], config: SyncConfig | None = None) -> ConnectionPair:
        a.connect(b.node_id, initiator=True, config=config)
        b.connect(a.node_id, initiator=False, config=config)
        pair = cls(a, b)
        a.c.start(topics_a, now=pair.now)
        b.c.start(topics_b, now=pair.now)
        return pair

    def _deliver(self, src: SyncPeer, dst: SyncPeer) -> int:
        data = src.take_output()
        if not data:
            return 0
        self.flights += 1
        try:
            dst.c.receive_data(data, now=self.now)
        except RemoteProtocolError as exc:
            dst.error = exc
        dst.process()
        return len(data)

    def step(self) -> bool:
        """One round (A->B, then B->A). True if any byte moved."""
        self.a.process()
        self.b.process()
        ab = self._deliver(self.a, self.b)
        ba = self._deliver(self.b, self.a)
        self.bytes_a_to_b += ab
        self.bytes_b_to_a += ba
        if ab or ba:
            self.round_trips += 1
            return True
        return False

    def run(self, max_rounds: int = 10_000) -> int:
        """Step until the link is quiet; returns rounds taken. Raises if it never is."""
        for i in range(max_rounds):
            if not self.step():
                return i
        raise AssertionError(f"link still busy after {max_rounds} rounds")

    @property
    def total_bytes(self) -> int:
        return self.bytes_a_to_b + self.bytes_b_to_a


class RawPeer:
    """A hand-driven (possibly malicious) peer facing one honest :class:`SyncPeer`.

    It speaks raw messages (messages.py) so tests can send what an honest machine
    never would. :meth:`establish` runs the handshake for ``topics``.
    """

    def __init__(self, victim: SyncPeer, node_id: bytes | None = None,
                 config: SyncConfig | None = None) -> None:
        self.victim = victim
        self.node_id = node_id if node_id is not None else bytes(range(32))
        self.config = config or SyncConfig()
        self.inbox: list[Message] = []
        self._decoder = FrameDecoder()

    def establish(self, topics: Sequence[bytes], *, victim_topics: Sequence[bytes] | None = None,
                  grant: Sequence[bytes] | None = None, hello_id: bytes | None = None) -> None:
        """Handshake: the victim asks for ``victim_topics`` (default ``topics``); we ask
        for ``topics`` and grant ``grant`` (default: all the victim asked for)."""
        self.victim.connect(self.node_id, initiator=False, config=self.config)
        self.victim.c.start(victim_topics if victim_topics is not None else topics, now=0.0)
        self.send(Hello(PROTOCOL_VERSION, hello_id or self.node_id, tuple(sorted(topics)),
                        self.config.max_in_flight))
        hello = next(m for m in self.read() if isinstance(m, Hello))
        self.send(Grant(tuple(sorted(hello.topics if grant is None else grant))))

    def send_bytes(self, data: bytes) -> None:
        """Feed raw bytes to the victim (errors propagate), then let it answer events."""
        try:
            self.victim.c.receive_data(data, now=0.0)
        finally:
            self.victim.process()

    def send(self, msg: Message) -> None:
        self.send_bytes(encode_frame(msg.encode()))

    def read(self) -> list[Message]:
        """Messages the victim sent since the last call (also kept in ``inbox``)."""
        self._decoder.feed(self.victim.take_output())
        out = []
        while (body := self._decoder.next_frame()) is not None:
            out.append(decode_message(body))
        self.inbox.extend(out)
        return out
