"""Test helpers for blob transfer: a node-side loop over a store and a fake link.

:class:`TransferPeer` is what a node does with one transfer session, minus the
network: it answers the machine's events from a :class:`~.store.BlobStore`
(serve requested objects, register received manifests, store verified chunks,
continue a manifest fetch with the missing chunks). :class:`TransferPair` moves
bytes between two peers, at most ``max_flight`` bytes per direction per step, and
can be cut at any point. Used by tests/test_blobs_*.py and benchmarks/bench_blobs.py.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from ..errors import P2PMsgError, RemoteProtocolError
from .store import BlobStore
from .transfer import (
    BlobTransfer,
    ChunkReceived,
    ConnectionClosed,
    Event,
    Fetch,
    FetchComplete,
    FetchFailed,
    ManifestReceived,
    ObjectsRequested,
    Progress,
    SendObjects,
    TransferConfig,
)

__all__ = ["TransferPair", "TransferPeer"]


@dataclass
class TransferPeer:
    """One node's side of a transfer session, answering events from ``store``."""

    store: BlobStore
    org: bytes = b"org"
    room: bytes = b"room"
    config: TransferConfig | None = None
    conn: BlobTransfer = field(init=False)
    events: list[Event] = field(default_factory=list)
    progress: list[Progress] = field(default_factory=list)
    complete: list[bytes] = field(default_factory=list)
    failed: list[FetchFailed] = field(default_factory=list)
    store_errors: list[P2PMsgError] = field(default_factory=list)
    error: RemoteProtocolError | None = None
    outbox: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.conn = BlobTransfer(self.config)

    def fetch(self, root: bytes) -> None:
        """Fetch a blob: resume from the stored manifest if there is one."""
        manifest = self.store.get_manifest(root)
        if manifest is None:
            self.outbox += self.conn.send(Fetch(root))
        else:
            self.outbox += self.conn.send(Fetch(root, manifest, self.store.missing(root)))

    def take_output(self) -> bytes:
        data = bytes(self.outbox) + self.conn.data_to_send()
        self.outbox.clear()
        return data

    def process(self) -> None:
        """Drain and answer every event, as the node loop does."""
        while (event := self.conn.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, ObjectsRequested):
                self.outbox += self.conn.send(SendObjects(self.store.get_many(event.hashes)))
            elif isinstance(event, ManifestReceived):
                try:
                    self.store.add_manifest(event.manifest, org=self.org, room=self.room)
                except P2PMsgError as exc:  # quota, size: do not fetch the chunks
                    self.store_errors.append(exc)
                    continue
                self.outbox += self.conn.send(
                    Fetch(event.root, event.manifest, self.store.missing(event.root)))
            elif isinstance(event, ChunkReceived):
                self.store.put_chunk(event.hash, event.data)
            elif isinstance(event, Progress):
                self.progress.append(event)
            elif isinstance(event, FetchComplete):
                self.complete.append(event.root)
            elif isinstance(event, FetchFailed):
                self.failed.append(event)
            elif isinstance(event, ConnectionClosed) and event.error is not None:
                self.error = event.error


@dataclass
class TransferPair:
    """Two peers joined by a fake, ordered link that moves at most ``max_flight``
    bytes per direction per :meth:`step` (so transfers take many steps and can be
    cut in the middle)."""

    a: TransferPeer
    b: TransferPeer
    max_flight: int = 1 << 20
    steps: int = 0
    bytes_moved: int = 0
    _pending_ab: bytearray = field(default_factory=bytearray)
    _pending_ba: bytearray = field(default_factory=bytearray)

    def _deliver(self, src: TransferPeer, dst: TransferPeer, pending: bytearray) -> int:
        pending += src.take_output()
        if not pending or dst.conn.closed:
            pending.clear()
            return 0
        data = bytes(pending[:self.max_flight])
        del pending[:self.max_flight]
        try:
            dst.conn.receive_data(data)
        except RemoteProtocolError as exc:
            dst.error = exc
        dst.process()
        return len(data)

    def step(self) -> bool:
        """Move one flight each way. True if any byte moved."""
        self.a.process()
        self.b.process()
        moved = self._deliver(self.a, self.b, self._pending_ab)
        moved += self._deliver(self.b, self.a, self._pending_ba)
        self.steps += 1
        self.bytes_moved += moved
        return moved > 0

    def run(self, max_steps: int = 100_000) -> int:
        """Step until the link is quiet; returns steps taken."""
        for i in range(max_steps):
            if not self.step():
                return i
        raise AssertionError(f"link still busy after {max_steps} steps")

    def cut(self) -> None:
        """Break the link: bytes in flight are lost, both machines see end of stream."""
        self._pending_ab.clear()
        self._pending_ba.clear()
        for p in (self.a, self.b):
            p.take_output()
            with contextlib.suppress(RemoteProtocolError):  # a frame cut in half
                p.conn.receive_data(b"")
            p.process()
