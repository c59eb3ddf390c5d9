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
in flight (``TransferConfig.window``). The machine runs with
``verify_chunks=False, hold_chunks=True``: received chunks are queued and stored
by the fetch tasks in batches of ~2 MiB — index checks, hash + temp files
(:meth:`BlobStore.write_chunks`, here in the trio thread), fsync + rename
(:meth:`BlobStore.sync_chunks`, in a worker thread when the store is durable),
one commit — and only then counted, reported as progress and released from the
window. So the window bounds requested + received-but-unstored bytes together
(the receiving side's memory per session: window + one frame per decoder + one
read). A chunk not matching its hash cuts the peer off and nothing of its batch is
stored.

Serving: an object is answered only if its blob is registered under a room the
peer may read (``policy.may_read(peer, room)``); otherwise it is reported MISSING,
exactly as if we did not hold it. Requested objects are read from disk lazily:
only while less than :attr:`BlobChannel.serve_budget` bytes (8 MiB) of blob stream
wait for the session writer, so a peer that asks for the protocol's maximum of
256 objects of 1 MiB at once — or never reads what it asked for — holds at most
that budget plus one object of our memory per session, not 256 MiB.

Fetching: :meth:`BlobChannel.fetch` runs one fetch on this session and reports how
it ended; :meth:`p2pmsg.node.Node.fetch_blob` chooses peers and resumes on another
session with only the missing chunks. A peer that breaks the blob protocol (e.g. a
chunk not matching its hash) has its whole session closed; the bad chunk is never
stored.

Relay forwarding: a node that stores a room's logs but is no member (a relay)
cannot read attachment descriptors, but SEALED v2 messages name their blob roots
in clear, signed refs. :class:`RelayBlobFetcher` scans the stored rooms for those
refs and fetches each blob (manifest by root, chunks verified by hash — no file
key needed) under the message's room, within the blob store's quotas; serving
then follows the ordinary rule above, so a member can download an attachment
from the relay while the sender is offline (docs/attachments.md, "Relays").
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio
import trio.testing

from ..blobs.errors import BlobUnavailableError, ChunkMismatchError
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
    TransferConfig,
)
from ..errors import DecodeError, P2PMsgError, RemoteProtocolError
from ..messaging.payloads import Sealed, decode_room_payload
from ..store.tail import TopicTail

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ..store.base import Store
    from .runtime import Node
    from .session import Session

__all__ = ["BlobChannel", "BlobRef", "FetchOutcome", "ProgressCallback", "RelayBlobFetcher",
           "RelayFetchReport", "clear_blob_refs"]

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

    serve_budget: int = 8 * 1024 * 1024
    """Read requested objects only while less than this many blob-stream bytes wait
    for the writer (the serving side's memory bound per session)."""

    def __init__(self, session: Session, store: BlobStore | None) -> None:
        self.session = session
        self.store = store
        config = session.node.config.blob_transfer or TransferConfig()
        # Chunks are hashed while the store writes them, and their bytes count
        # against the window until stored (module docstring).
        config = dataclasses.replace(config, verify_chunks=False, hold_chunks=True)
        self.transfer = BlobTransfer(config)
        self._batch_bytes = min(_STORE_BATCH_BYTES, config.window // 2)
        self._out: deque[bytes | memoryview] = deque()
        """Blob-stream bytes for the session writer: the machine's frames as they
        are, never joined here (each copy of a chunk costs; a growing bytearray
        costs more)."""
        self._out_size = 0
        self.max_out_size = 0
        """Largest blob-stream backlog seen (a test and tuning figure)."""
        self._to_serve: deque[bytes] = deque()
        """Requested objects not read yet (served as the writer drains)."""
        self._pull()
        self._fetches: dict[bytes, _Running] = {}
        self._unstored: list[tuple[bytes, bytes, bytes]] = []
        """Received chunks (root, hash, data) not yet written: stored as one batch."""
        self._unstored_bytes = 0
        self._progress: dict[bytes, Progress] = {}
        """Latest progress per root, reported once its chunks are stored."""
        self._endings: list[tuple[bytes | None, str]] = []
        """Fetch ends (root, or None = every fetch; status) to apply once the chunks
        received before them are stored."""
        self._work = trio.lowlevel.ParkingLot()
        """Fetch tasks park here until a batch or an ending is ready."""
        self._write_lock = trio.Lock()

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.append(data)
            self._out_size += len(data)
            self.max_out_size = max(self.max_out_size, self._out_size)

    def _serve_some(self) -> None:
        """Answer queued requests while the backlog is under the budget."""
        if self.transfer.closed:
            self._to_serve.clear()
            return
        while self._to_serve and self._out_size < self.serve_budget:
            h = self._to_serve.popleft()
            self.transfer.apply(SendObjects(self._serve((h,))))
            self._pull()

    def _pull(self) -> None:
        """Move the machine's pending frames to our queue (not joined)."""
        for frame in self.transfer.frames_to_send():
            self._emit(frame)

    def take(self, limit: int) -> list[bytes | memoryview]:
        """Up to ``limit`` bytes of the blob stream, as buffers in order, for
        :meth:`~p2pmsg.sync.SyncConnection.encode_blob` (no copy: a frame cut at
        the limit is split into views)."""
        self._pull()
        self._serve_some()
        out = self._out
        if self._out_size <= limit:
            pieces = list(out)
            out.clear()
            self._out_size = 0
            if self._to_serve:
                self.session._wake()  # more to read and send next turn
            return pieces
        pieces, need = [], limit
        while need:
            part = out[0]
            if len(part) <= need:
                pieces.append(out.popleft())
                need -= len(part)
            else:
                view = memoryview(part)
                pieces.append(view[:need])
                out[0] = view[need:]
                need = 0
        self._out_size -= limit
        return pieces

    def receive(self, data: bytes) -> None:
        """Bytes of a BLOB frame from the peer."""
        with contextlib.suppress(RemoteProtocolError):  # reported as ConnectionClosed
            self.transfer.receive_data(data)
        self._drain()
        self.session._wake()

    def session_closed(self) -> None:
        # Chunks already received are still worth keeping: the fetch tasks store
        # them (hashed first, as always), then report "disconnected".
        self._endings.append((None, "disconnected"))
        self._work.unpark_all()

    async def fetch(self, root: bytes, *, org: bytes, room: bytes,
                    progress: ProgressCallback | None) -> FetchOutcome:
        """Fetch ``root`` from this peer (manifest first if we lack it) and wait."""
        running = self._fetches.get(root)
        if running is not None:  # a concurrent fetch of the same blob: share it
            # and help store its chunks (its first caller may have been cancelled)
            await self._run_writer(running.outcome)
            return running.outcome
        outcome = FetchOutcome()
        if self.transfer.closed or self.session.closed.is_set():
            outcome.finish("disconnected")
            return outcome
        assert self.store is not None
        self._fetches[root] = _Running(org, room, progress, outcome)
        manifest = self.store.get_manifest(root)
        if manifest is None:
            self.transfer.apply(Fetch(root))
            self._pull()
        else:
            self.transfer.apply(Fetch(root, manifest, self.store.missing(root)))
            self._pull()
        self._drain()
        self.session._wake()
        await self._run_writer(outcome)
        return outcome

    async def _run_writer(self, outcome: FetchOutcome) -> None:
        """Store received chunks batch by batch until ``outcome`` is decided.

        Every task waiting for a fetch on this channel runs this loop; the lock lets
        one batch be stored at a time. A step is shielded from cancellation (it is
        one bounded batch): once it has taken chunks and fetch ends off the queues,
        they are stored and applied even if its task is being cancelled."""
        while not outcome.done.is_set():
            if not self._work_ready():
                await self._work.park()
                continue
            async with self._write_lock:
                if self._work_ready():
                    with trio.CancelScope(shield=True):
                        await self._store_step()
            self._work.unpark_all()  # other fetch tasks: their outcome may be decided

    def _work_ready(self) -> bool:
        if self._endings or self._unstored_bytes >= self._batch_bytes:
            return True
        # Nothing requested is on its way: the machine waits for held credit.
        return bool(self._unstored) and self.transfer.stats.in_flight == 0

    def _finish(self, root: bytes, status: str, error: P2PMsgError | None = None) -> None:
        running = self._fetches.pop(root, None)
        if running is not None:
            running.outcome.finish(status, error)
            self._work.unpark_all()  # its fetch task may be parked in _run_writer

    def _drain(self) -> None:
        while (event := self.transfer.next_event()) is not None:
            if isinstance(event, ObjectsRequested):
                self._to_serve.extend(event.hashes)
                self._serve_some()
            elif isinstance(event, ManifestReceived):
                running = self._fetches.get(event.root)
                if running is None or self.store is None:
                    continue
                try:
                    self.store.add_manifest(event.manifest, org=running.org, room=running.room)
                except P2PMsgError as exc:  # quota, size: fetch no chunk
                    self._finish(event.root, "refused", exc)
                    continue
                self.transfer.apply(
                    Fetch(event.root, event.manifest, self.store.missing(event.root)))
                self._pull()
            elif isinstance(event, ChunkReceived):
                if self.store is None:  # pragma: no cover - fetch() requires a store
                    self._emit(self.transfer.release(len(event.data)))
                    continue
                self._unstored.append((event.root, event.hash, event.data))
                self._unstored_bytes += len(event.data)
            elif isinstance(event, Progress):  # follows its chunk's ChunkReceived
                self._progress[event.root] = event
            elif isinstance(event, FetchComplete):
                self._endings.append((event.root, "complete"))
            elif isinstance(event, FetchFailed):
                self._endings.append((event.root, event.reason))
            elif isinstance(event, ConnectionClosed):
                status = "disconnected"
                if event.error is not None:
                    status = "cut_off"
                    self.session.node._protocol_error(self.session, event.error)
                    self.session.close(f"blob protocol error: {event.error.reason}")
                self._endings.append((None, status))
        if self._work_ready():
            self._work.unpark_all()

    async def _store_step(self) -> None:
        """Store the chunks received so far as one batch, then report progress and
        apply the fetch ends that followed them.

        Steps (:meth:`_store`): index checks, hash every chunk against its address
        and write the temp files (a mismatch cuts the peer off and nothing of the
        batch is stored), fsync + rename (a worker thread when durable), one
        commit; then the held credit is released. Chunks are counted (and progress reported) only
        once committed; a crash before that loses only chunks never reported,
        which ``missing()`` (read from the store) asks for again on resume."""
        chunks, self._unstored, self._unstored_bytes = self._unstored, [], 0
        progress, self._progress = self._progress, {}
        endings, self._endings = self._endings, []
        if chunks:
            stored = await self._store(chunks)
            if stored is None:
                progress.clear()
            else:
                self.session.node._stats.blob_chunks_received += len(stored)
                for root, h, _ in chunks:
                    running = self._fetches.get(root)
                    if running is not None and h in stored:
                        running.outcome.chunks += 1
        for event in progress.values():
            running = self._fetches.get(event.root)
            if running is not None and running.progress is not None:
                running.progress(event.done, event.total)
        for ended, status in endings:
            for root in [ended] if ended is not None else list(self._fetches):
                self._finish(root, status)

    async def _store(self, chunks: list[tuple[bytes, bytes, bytes]]) -> set[bytes] | None:
        """Hash, write and commit one batch; the hashes stored, or None if it failed
        (the fetches are then finished as ``cut_off`` or ``refused``)."""
        store = self.store
        assert store is not None
        size = sum(len(d) for _, _, d in chunks)
        batch = None
        try:
            batch = store.prepare_chunks([(h, d) for _, h, d in chunks])
            # Hashing and writing the temp files is CPU work: here, in the trio
            # thread. In a worker thread (libsodium hashing without the GIL) it
            # cost ~15 % more receiver CPU and was no faster with both nodes on
            # this 2-core machine (docs/benchmarks.md).
            store.write_chunks(batch)
            if not store.durable or isinstance(trio.lowlevel.current_clock(),
                                               trio.testing.MockClock):
                # Nothing to wait for; or virtual time (tests), where a thread's
                # real duration is invisible and autojump would skip timers ahead.
                store.sync_chunks(batch)
            else:  # fsync waits for the disk: never block the event loop on it
                await trio.to_thread.run_sync(store.sync_chunks, batch)
            return set(store.commit_chunks(batch))
        except ChunkMismatchError:
            # Not the chunk we asked for: cut the peer off, store nothing of it.
            self._emit(self.transfer.reject_chunk())
            self._drain()  # ConnectionClosed(error): the session is closed
            # Decided now: an earlier FetchComplete (the machine counts arrivals,
            # it did not hash) must not report this fetch complete.
            for root in list(self._fetches):
                self._finish(root, "cut_off")
            return None
        except P2PMsgError as exc:  # e.g. the blob was deleted meanwhile
            for root in list(self._fetches):
                self._finish(root, "refused", exc)
            return None
        finally:
            if batch is not None:
                store.discard_chunks(batch)  # e.g. cancelled before the sync: no-op once synced
            self._emit(self.transfer.release(size))
            self.session._wake()

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


# -- relay forwarding (clear refs of SEALED v2) ----------------------------------------


@dataclass(frozen=True, slots=True)
class BlobRef:
    """A blob root a stored message names in its clear refs."""

    root: bytes
    room: bytes
    entry: bytes
    """Id of the message naming it."""
    author: bytes


def clear_blob_refs(store: Store, entry_ids: Iterable[bytes]) -> list[BlobRef]:
    """The clear blob refs of the given entries whose payloads are present here.

    Only SEALED v2 payloads carry them; anything else (or garbage) names nothing.
    """
    out: list[BlobRef] = []
    for eid in entry_ids:
        entry = store.get_entry(eid)
        payload = store.get_payload(eid)
        if entry is None or not isinstance(payload, bytes):
            continue
        try:
            sealed = decode_room_payload(payload)
        except DecodeError:
            continue
        if isinstance(sealed, Sealed):
            out += [BlobRef(root, entry.header.topic, eid, entry.header.author)
                    for root in sealed.refs.blobs]
    return out


@dataclass
class RelayFetchReport:
    """What one :meth:`RelayBlobFetcher.run_once` did (roots)."""

    fetched: list[bytes] = field(default_factory=list)
    """Fetched completely in this run."""
    unavailable: list[bytes] = field(default_factory=list)
    """No connected peer served them (yet): retried on the next run."""
    refused: list[bytes] = field(default_factory=list)
    """Refused for good: quota, size, a bad blob, or held under another room."""


class RelayBlobFetcher:
    """Fetch the attachment blobs named by the clear refs of the rooms a node stores.

    For relays (no epoch keys): each run scans only entries new since the last run
    (plus those whose payload was still missing then), then fetches every named blob not
    yet complete here, registered under the message's room and charged to the
    author's organisation (``authors``: device -> org, e.g.
    :func:`p2pmsg.governance.retention.device_orgs`; unknown devices are charged
    to ``b""``). A blob whose message payload is gone (redacted, purged) before
    or while it is fetched is not kept. Call :meth:`run_once` after new entries
    arrive, or :meth:`run` as a background task. All calls in the trio thread.
    """

    def __init__(self, node: Node, topics: Iterable[bytes] | None = None, *,
                 authors: Mapping[bytes, bytes] | None = None,
                 fetch_timeout: float = 60.0) -> None:
        self.node = node
        self.topics = None if topics is None else frozenset(topics)
        self.authors: Mapping[bytes, bytes] = authors if authors is not None else {}
        self.fetch_timeout = fetch_timeout
        self._tails: dict[bytes, TopicTail] = {}
        """How far each topic was scanned (entries whose payload was still missing
        come again when it arrives)."""
        self._wanted: dict[bytes, BlobRef] = {}
        """root -> the first ref naming it, until fetched or refused."""
        self._refused: set[bytes] = set()
        self._retry: dict[bytes, tuple[int, float]] = {}
        """root -> (failed attempts, trio time of the next try): a blob nobody
        serves (a member can name roots that do not exist) is retried with
        exponential backoff, capped at :attr:`max_backoff`, never in a tight loop."""
        self.base_backoff = 5.0
        self.max_backoff = 3600.0

    def _new_entry_ids(self) -> list[bytes]:
        store = self.node.store
        topics = store.topics() if self.topics is None else sorted(self.topics)
        ids: list[bytes] = []
        for topic in topics:
            tail = self._tails.setdefault(topic, TopicTail())
            ids += [e.id for e, payload in tail.pull(store, topic) if payload is not None]
        return ids

    def scan(self) -> list[BlobRef]:
        """Refs of newly stored entries whose blobs are not complete here; queued."""
        blobs = self.node._require_blob_store()
        found: list[BlobRef] = []
        for ref in clear_blob_refs(self.node.store, self._new_entry_ids()):
            if ref.root in self._wanted or ref.root in self._refused:
                continue
            held = blobs.room_of(ref.root)
            if held is not None and (held != ref.room or not blobs.missing(ref.root)):
                continue  # complete here, or another room's blob: never re-registered
            self._wanted[ref.root] = ref
            found.append(ref)
        return found

    def _still_named(self, ref: BlobRef) -> bool:
        return isinstance(self.node.store.get_payload(ref.entry), bytes)

    async def run_once(self) -> RelayFetchReport:
        """Scan, then fetch every queued blob from connected peers (one at a time)."""
        self.scan()
        report = RelayFetchReport()
        blobs = self.node._require_blob_store()
        for root, ref in sorted(self._wanted.items()):
            if not self._still_named(ref):
                del self._wanted[root]
                self._retry.pop(root, None)
                continue
            attempts, next_try = self._retry.get(root, (0, 0.0))
            if not self.node.connected_peers() or trio.current_time() < next_try:
                report.unavailable.append(root)
                continue
            org = self.authors.get(ref.author, b"")
            try:
                with trio.move_on_after(self.fetch_timeout) as scope:
                    await self.node.fetch_blob(root, ref.room, org=org)
            except BlobUnavailableError:
                self._back_off(root, attempts)
                report.unavailable.append(root)
                continue
            except P2PMsgError as exc:  # quota, size, a bad blob: not retried
                log.info("relay: blob %s of room %s refused: %s", root.hex()[:8],
                         ref.room.hex()[:8], exc)
                del self._wanted[root]
                self._refused.add(root)
                report.refused.append(root)
                continue
            if scope.cancelled_caught:
                self._back_off(root, attempts)
                report.unavailable.append(root)
                continue
            del self._wanted[root]
            self._retry.pop(root, None)
            if blobs.room_of(root) != ref.room:
                self._refused.add(root)
                report.refused.append(root)
            elif not self._still_named(ref):  # redacted or purged meanwhile
                blobs.delete_blob(root)
            else:
                report.fetched.append(root)
        return report

    def _back_off(self, root: bytes, attempts: int) -> None:
        delay = min(self.max_backoff, self.base_backoff * 2 ** min(attempts, 20))
        self._retry[root] = (attempts + 1, trio.current_time() + delay)

    async def run(self, interval: float = 5.0) -> None:
        """:meth:`run_once` every ``interval`` seconds, until cancelled."""
        while True:
            await self.run_once()
            await trio.sleep(interval)
