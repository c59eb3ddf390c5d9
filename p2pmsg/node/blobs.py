"""Attachments between nodes: one :class:`~p2pmsg.blobs.BlobTransfer` per session.

Theory of operation
-------------------
Blob transfer is multiplexed into the sync session (docs/attachments.md §6): the
sync machine carries the blob machine's byte stream in BLOB frames
(:meth:`p2pmsg.sync.SyncConnection.encode_blob`, event
:class:`p2pmsg.sync.events.BlobData`). Each :class:`Session` owns one
:class:`BlobChannel`, created on first use; the session writer sends sync bytes
first and then at most 256 KiB of BLOB frames per turn, so attachment bytes cannot
starve log replication, and the blob machine's own request credit bounds the bytes
in flight (``TransferConfig.window``). Received chunks (already verified by the
machine) are written in batches of ~2 MiB (:meth:`BlobStore.put_chunks`: one
commit, one fsync per directory) and counted only once stored.

Serving: an object is answered only if its blob is registered under a room the
peer may read (``policy.may_read(peer, room)``); otherwise it is reported MISSING,
exactly as if we did not hold it. Fetching: :meth:`BlobChannel.fetch` runs one
fetch on this session and reports how it ended; :meth:`p2pmsg.node.Node.fetch_blob`
chooses peers and resumes on another session with only the missing chunks. A peer
that breaks the blob protocol (e.g. a chunk not matching its hash) has its whole
session closed; the bad chunk is never stored.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..blobs.store import BlobStore
from ..blobs.transfer import (
    BlobTransfer,
    ChunkReceived,
    ConnectionClosed,
    Fetch,
    FetchComplete,
    FetchFailed,
    ManifestReceived,
    ObjectsRequested,
    Progress,
    SendObjects,
)
from ..errors import P2PMsgError, RemoteProtocolError

if TYPE_CHECKING:
    from .session import Session

__all__ = ["BlobChannel", "FetchOutcome", "ProgressCallback"]

log = logging.getLogger("p2pmsg.node")
_STORE_BATCH_BYTES = 2 << 20
"""Verified chunk bytes held before they are written as one batch (one commit,
one fsync per directory): bounds the memory above the transfer window."""

ProgressCallback = Callable[[int, int], None]
"""``progress(done, total)`` in plaintext bytes of the file."""


@dataclass
class FetchOutcome:
    """How one fetch on one session ended.

    ``status``: ``complete``, ``unavailable`` (the peer lacks or refuses it),
    ``disconnected`` (session ended; resume elsewhere), ``cut_off`` (the peer broke
    the protocol), ``bad_manifest``/``too_large`` (the blob itself is bad) or
    ``refused`` (our store refused it: quota or size; ``error`` is set).
    """

    status: str = ""
    chunks: int = 0
    """Chunks received and stored in this fetch."""
    error: P2PMsgError | None = None
    done: trio.Event = field(default_factory=trio.Event)

    def finish(self, status: str, error: P2PMsgError | None = None) -> None:
        if not self.done.is_set():
            self.status, self.error = status, error
            self.done.set()


@dataclass
class _Running:
    org: bytes
    room: bytes
    progress: ProgressCallback | None
    outcome: FetchOutcome


class BlobChannel:
    """The blob side of one session (all calls in the trio thread)."""

    def __init__(self, session: Session, store: BlobStore | None) -> None:
        self.session = session
        self.store = store
        self.transfer = BlobTransfer(session.node.config.blob_transfer)
        self.out = bytearray(self.transfer.data_to_send())
        self._fetches: dict[bytes, _Running] = {}
        self._unstored: list[tuple[bytes, bytes, bytes]] = []
        """Verified chunks (root, hash, data) not yet written: stored as one batch."""
        self._unstored_bytes = 0
        self._progress: dict[bytes, Progress] = {}
        """Latest progress per root, reported once its chunks are stored."""

    def take(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the blob stream to wrap in one BLOB frame."""
        self.out += self.transfer.data_to_send()
        if len(self.out) <= limit:
            piece = bytes(self.out)
            self.out.clear()
            return piece
        with memoryview(self.out) as view:
            piece = bytes(view[:limit])
        del self.out[:limit]
        return piece

    def receive(self, data: bytes) -> None:
        """Bytes of a BLOB frame from the peer."""
        with contextlib.suppress(RemoteProtocolError):  # reported as ConnectionClosed
            self.transfer.receive_data(data)
        self._drain()
        self.session._wake()

    def session_closed(self) -> None:
        self._flush()  # verified chunks already received are worth keeping
        for running in self._fetches.values():
            running.outcome.finish("disconnected")
        self._fetches.clear()

    async def fetch(self, root: bytes, *, org: bytes, room: bytes,
                    progress: ProgressCallback | None) -> FetchOutcome:
        """Fetch ``root`` from this peer (manifest first if we lack it) and wait."""
        running = self._fetches.get(root)
        if running is not None:  # a concurrent fetch of the same blob: share it
            await running.outcome.done.wait()
            return running.outcome
        outcome = FetchOutcome()
        if self.transfer.closed or self.session.closed.is_set():
            outcome.finish("disconnected")
            return outcome
        assert self.store is not None
        self._fetches[root] = _Running(org, room, progress, outcome)
        manifest = self.store.get_manifest(root)
        if manifest is None:
            self.out += self.transfer.send(Fetch(root))
        else:
            self.out += self.transfer.send(Fetch(root, manifest, self.store.missing(root)))
        self._drain()
        self.session._wake()
        await outcome.done.wait()
        return outcome

    def _finish(self, root: bytes, status: str, error: P2PMsgError | None = None) -> None:
        running = self._fetches.pop(root, None)
        if running is not None:
            running.outcome.finish(status, error)

    def _drain(self) -> None:
        while (event := self.transfer.next_event()) is not None:
            if isinstance(event, ObjectsRequested):
                self.out += self.transfer.send(SendObjects(self._serve(event.hashes)))
            elif isinstance(event, ManifestReceived):
                running = self._fetches.get(event.root)
                if running is None or self.store is None:
                    continue
                try:
                    self.store.add_manifest(event.manifest, org=running.org, room=running.room)
                except P2PMsgError as exc:  # quota, size: fetch no chunk
                    self._finish(event.root, "refused", exc)
                    continue
                self.out += self.transfer.send(
                    Fetch(event.root, event.manifest, self.store.missing(event.root)))
            elif isinstance(event, ChunkReceived):
                if self.store is None:
                    continue
                self._unstored.append((event.root, event.hash, event.data))
                self._unstored_bytes += len(event.data)
            elif isinstance(event, Progress):  # follows its chunk's ChunkReceived
                self._progress[event.root] = event
                if self._unstored_bytes >= _STORE_BATCH_BYTES:
                    self._flush()
            elif isinstance(event, FetchComplete):
                self._flush()
                self._finish(event.root, "complete")
            elif isinstance(event, FetchFailed):
                self._flush()
                self._finish(event.root, event.reason)
            elif isinstance(event, ConnectionClosed):
                self._flush()
                status = "disconnected"
                if event.error is not None:
                    status = "cut_off"
                    self.session.node._protocol_error(self.session, event.error)
                    self.session.close(f"blob protocol error: {event.error.reason}")
                for root in list(self._fetches):
                    self._finish(root, status)

    def _flush(self) -> None:
        """Store the verified chunks received so far as one batch, then report
        progress. Chunks are counted (and progress reported) only once stored; a
        crash before that loses only chunks never reported, which ``missing()``
        (read from the store) asks for again on resume."""
        chunks, self._unstored, self._unstored_bytes = self._unstored, [], 0
        if chunks and self.store is not None:
            try:
                # The transfer machine checked each chunk's length and hash
                # against the requested address: no second hash here.
                stored = set(self.store.put_chunks([(h, d) for _, h, d in chunks],
                                                   verified=True))
            except P2PMsgError as exc:  # e.g. the blob was deleted meanwhile
                for root in list(self._fetches):
                    self._finish(root, "refused", exc)
                self._progress.clear()
                return
            self.session.node._stats.blob_chunks_received += len(stored)
            for root, h, _ in chunks:
                running = self._fetches.get(root)
                if running is not None and h in stored:
                    running.outcome.chunks += 1
        progress, self._progress = self._progress, {}
        for event in progress.values():
            running = self._fetches.get(event.root)
            if running is not None and running.progress is not None:
                running.progress(event.done, event.total)

    def _serve(self, hashes: tuple[bytes, ...]) -> dict[bytes, bytes | None]:
        """Objects the peer may have: held, and of a blob of a room it may read."""
        answer: dict[bytes, bytes | None] = {}
        peer, policy, store = self.session.peer_id, self.session.node.policy, self.store
        allowed: dict[bytes, bool] = {}
        for h in hashes:
            room = store.room_of(h) if store is not None else None
            if room is not None and room not in allowed:
                allowed[room] = policy.may_read(peer, room)
            if store is not None and room is not None and allowed[room]:
                answer[h] = store.get(h)
                if answer[h] is not None:
                    self.session.node._stats.blob_objects_served += 1
            else:
                answer[h] = None
        return answer
