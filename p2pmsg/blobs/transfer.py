"""BlobTransfer: chunk request/response between two peers, as a sans-IO machine.

Theory of operation
-------------------
One :class:`BlobTransfer` per sync session, carried in its BLOB frames
(:mod:`p2pmsg.node.blobs`, docs/attachments.md §6). Like
:class:`p2pmsg.sync.SyncConnection` it has no I/O: bytes from the peer go into
:meth:`~BlobTransfer.receive_data`, commands into
:meth:`~BlobTransfer.send`; events come out of :meth:`~BlobTransfer.next_event` and
bytes out of :meth:`~BlobTransfer.data_to_send`. The node answers events from the
blob store (store.py) — this module never touches disk.

Both sides may fetch and serve at once. Frames are p2pmsg.sync.frames frames;
messages are in wire.py.

*Fetching* (``send(Fetch(root))``): with no manifest the machine asks for the root
object, then its pages, checks each against its hash, and reports
:class:`ManifestReceived`; the fetch ends there. The node stores the manifest
(reserving quota) and sends ``Fetch(root, manifest, missing)`` with the chunk
indices it lacks (``store.missing``): the machine requests exactly those, reports
each verified chunk as :class:`ChunkReceived` and :class:`Progress`, and ends the
fetch with :class:`FetchComplete` or :class:`FetchFailed` (the peer lacks some).
A resumed fetch after a broken connection is the same call on a fresh pair.

*Flow control* is credit by request: a requester never has more than
``TransferConfig.window`` bytes (exact chunk/page sizes from the manifest; roots
count :data:`~.format.MAX_ROOT_SIZE`) nor :data:`~.wire.MAX_REQUEST_HASHES` objects
requested and unanswered. With ``TransferConfig.hold_chunks`` a received chunk keeps
its credit until the caller stores it and calls :meth:`~BlobTransfer.release`, so
the window bounds requested + unstored bytes (the node does this); with
``verify_chunks=False`` the caller hashes chunks (e.g. while writing them) and
calls :meth:`~BlobTransfer.reject_chunk` on a mismatch, which cuts the peer off as
below. A server answers only what was requested: an object never
requested, with the wrong length, or not hashing to its claimed address is a
:class:`RemoteProtocolError` (``unsolicited`` / ``hash_mismatch``) — the session is
cut off and the object is never reported, so it is never stored. A requester
exceeding the outstanding bound is cut off with ``too_many_requests``.

*Serving*: :class:`ObjectsRequested` asks the node for objects by hash; answer
with ``SendObjects({hash: bytes or None})`` (None = not held). Any peer holding the
objects can serve them: nothing in the protocol ties a blob to its author.

Errors: like the sync machine, a remote error raised from ``receive_data`` also
queues a CLOSE frame and a :class:`ConnectionClosed`; afterwards the machine is
closed and input is ignored.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from ..errors import DecodeError, LocalProtocolError, RemoteProtocolError, ValidationError
from ..sync.frames import FrameDecoder, encode_frame
from .format import (
    DEFAULT_MAX_FILE_SIZE,
    HASH_SIZE,
    MAX_OBJECT_SIZE,
    MAX_ROOT_SIZE,
    Manifest,
    RootInfo,
    decode_root,
    hash_object,
)
from .wire import (
    MAX_CLOSE_TEXT,
    MAX_REQUEST_HASHES,
    TRANSFER_VERSION,
    Close,
    Data,
    Hello,
    Message,
    Missing,
    Request,
    decode_message,
)

__all__ = [
    "ChunkReceived",
    "CloseSession",
    "Command",
    "ConnectionClosed",
    "Event",
    "Fetch",
    "FetchComplete",
    "FetchFailed",
    "ManifestReceived",
    "ObjectsRequested",
    "Progress",
    "SendObjects",
    "BlobTransfer",
    "TransferConfig",
    "TransferStatistics",
]

_MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class TransferConfig:
    """Tunables of one transfer session."""

    window: int = 8 * _MIB
    """Bytes of objects we may have requested and not yet received (our memory bound).
    8 MiB = 7 chunks of 1 MiB: with ``hold_chunks`` a node holds ~2 MiB while it
    stores a batch, and 4 MiB left a single chunk in flight then (a stall per
    round trip; docs/benchmarks.md, attachment download)."""
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    """Manifests describing larger files are refused (``FetchFailed("too_large")``)."""
    verify_chunks: bool = True
    """Hash each chunk here before reporting it. False: chunks are checked for being
    requested and their exact length only and reported with
    ``ChunkReceived.verified=False``; the caller must hash each one before storing
    it (``BlobStore.write_chunks`` does, e.g. in a worker thread) and call
    :meth:`BlobTransfer.reject_chunk` on a mismatch, which cuts the peer off exactly
    as a mismatch found here would. Roots and pages are always hashed here."""
    hold_chunks: bool = False
    """Chunk bytes stay counted against ``window`` after :class:`ChunkReceived` until
    the caller calls :meth:`BlobTransfer.release` (once stored): the window then
    bounds requested + received-but-unstored bytes together, so a slow disk slows
    the requests instead of growing memory."""

    def __post_init__(self) -> None:
        if self.window < MAX_OBJECT_SIZE:
            raise ValueError("window must hold at least one maximal object")


# --- commands ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Fetch:
    """Fetch a blob: its manifest (``manifest=None``), or the chunks ``missing``.

    ``missing`` are chunk indices (None = all). Pass the manifest from the store
    and ``store.missing(root)`` to resume.
    """

    root: bytes
    manifest: Manifest | None = None
    missing: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class SendObjects:
    """Answer to :class:`ObjectsRequested`: bytes per hash, or None if not held."""

    objects: Mapping[bytes, bytes | None] = field(repr=False)


@dataclass(frozen=True, slots=True)
class CloseSession:
    """End the session (queues a CLOSE frame with ``reason``)."""

    reason: str = ""


Command: TypeAlias = Fetch | SendObjects | CloseSession


# --- events -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ObjectsRequested:
    """The peer asks for these objects: answer with :class:`SendObjects`."""

    hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ManifestReceived:
    """A verified manifest: store it (``store.add_manifest``), then fetch its chunks.

    ``objects`` holds the root and page objects keyed by hash. This ends the
    manifest fetch.
    """

    root: bytes
    manifest: Manifest
    objects: Mapping[bytes, bytes] = field(repr=False)


@dataclass(frozen=True, slots=True)
class ChunkReceived:
    """A chunk that matches its hash and length: store it (``store.put_chunk``)."""

    root: bytes
    index: int
    hash: bytes
    data: bytes = field(repr=False)
    verified: bool = True
    """False with ``TransferConfig.verify_chunks=False``: hash it before storing."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Plaintext bytes of the blob held after this chunk (``done``) out of ``total``."""

    root: bytes
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class FetchComplete:
    """Every requested chunk of ``root`` arrived."""

    root: bytes


@dataclass(frozen=True, slots=True)
class FetchFailed:
    """A fetch ended without everything it asked for.

    ``reason``: ``unavailable`` (the peer lacks objects: try another peer for
    ``missing``), ``bad_manifest`` (the root/pages are not a valid manifest — the
    descriptor's author made a bad blob) or ``too_large``.
    """

    root: bytes
    reason: str
    missing: tuple[int, ...] = ()
    """Chunk indices still missing (empty when the manifest itself failed)."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The session is over. ``unfinished`` fetches can be resumed on another session."""

    reason: str
    error: RemoteProtocolError | None = None
    unfinished: tuple[bytes, ...] = ()


Event: TypeAlias = (ObjectsRequested | ManifestReceived | ChunkReceived | Progress
                    | FetchComplete | FetchFailed | ConnectionClosed)


@dataclass
class TransferStatistics:
    """Counters of one session (tests, benchmarks, metrics)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    objects_received: int = 0
    objects_sent: int = 0
    in_flight: int = 0
    """Bytes requested and not yet received (``in_flight + held <= window``)."""
    held: int = 0
    """Chunk bytes received and not yet released (``TransferConfig.hold_chunks``)."""
    max_in_flight: int = 0
    requested: int = 0
    """Objects requested in this session."""


class _Kind(enum.Enum):
    ROOT = 0
    PAGE = 1
    CHUNK = 2


@dataclass(slots=True)
class _Want:
    root: bytes
    kind: _Kind
    index: int
    size: int
    """Exact size (pages, chunks) or upper bound (root)."""


@dataclass
class _Fetch:
    root: bytes
    manifest: Manifest | None
    queue: deque[tuple[bytes, _Want]] = field(default_factory=deque)
    outstanding: int = 0
    info: RootInfo | None = None
    root_bytes: bytes = b""
    pages: dict[int, bytes] = field(default_factory=dict)
    done: int = 0
    unavailable: list[int] = field(default_factory=list)


def _remote(reason: str, message: str) -> RemoteProtocolError:
    return RemoteProtocolError(reason, message)


class BlobTransfer:
    """The blob transfer protocol of one session. See the module docstring.

    Create one per connection (it queues its HELLO at once), then loop: feed bytes,
    drain events and answer them, write :meth:`data_to_send`.
    """

    def __init__(self, config: TransferConfig | None = None) -> None:
        self.config = config or TransferConfig()
        self.stats = TransferStatistics()
        self._decoder = FrameDecoder()
        self._events: deque[Event] = deque()
        self._out: list[bytes] = []
        """Frames to send, joined once by :meth:`data_to_send` (no growing bytearray:
        its resizes cost more than the framing itself)."""
        self._closed = False
        self._hello_received = False
        self._fetches: dict[bytes, _Fetch] = {}
        self._outstanding: dict[bytes, _Want] = {}
        self._serving: set[bytes] = set()
        self._queue_message(Hello(TRANSFER_VERSION))

    # --- output ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def _queue_message(self, msg: Message) -> None:
        if isinstance(msg, Data):  # head and data as two buffers: no copy of a chunk
            head, data = msg.frame_parts()
            self._out += (head, data) if data else (head,)
            self.stats.bytes_sent += len(head) + len(data)
            return
        frame = encode_frame(msg.encode())
        self._out.append(frame)
        self.stats.bytes_sent += len(frame)

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (drains the buffer)."""
        out, self._out = self._out, []
        return out[0] if len(out) == 1 else b"".join(out)

    def frames_to_send(self) -> list[bytes]:
        """:meth:`data_to_send` as a list of buffers in stream order, not joined
        (drains the buffer): whole frames, except that a DATA frame comes as two
        buffers, its head and the object itself — a caller that copies them on
        anyway saves every copy of a chunk here."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        """The next event, or None when there is none until more input."""
        return self._events.popleft() if self._events else None

    # --- commands -------------------------------------------------------------------

    def send(self, command: Command) -> bytes:
        """Apply a command; returns (and drains) the bytes to write.

        Raises :class:`LocalProtocolError` for misuse (a fetch already running for
        that root, answering a hash that was not requested, bad arguments).
        """
        self.apply(command)
        return self.data_to_send()

    def apply(self, command: Command) -> None:
        """:meth:`send` without draining: take the output with :meth:`data_to_send`
        or :meth:`frames_to_send`."""
        if self._closed:
            return
        if isinstance(command, Fetch):
            self._start_fetch(command)
        elif isinstance(command, SendObjects):
            self._serve(command.objects)
        elif isinstance(command, CloseSession):
            self._close_local(command.reason)
        else:  # pragma: no cover - typing makes this unreachable
            raise LocalProtocolError(f"unknown command {command!r}")

    def _start_fetch(self, cmd: Fetch) -> None:
        root = cmd.root
        if type(root) is not bytes or len(root) != HASH_SIZE:
            raise LocalProtocolError("root must be a 32-byte hash")
        if root in self._fetches:
            raise LocalProtocolError("a fetch of this blob is already running")
        fetch = _Fetch(root, cmd.manifest)
        if cmd.manifest is None:
            if cmd.missing is not None:
                raise LocalProtocolError("missing chunks need the manifest")
            fetch.queue.append((root, _Want(root, _Kind.ROOT, 0, MAX_ROOT_SIZE)))
            self._fetches[root] = fetch
            self._pump()
            return
        m = cmd.manifest
        if m.root_hash != root:
            raise LocalProtocolError("manifest does not belong to this root")
        missing = range(m.chunk_count) if cmd.missing is None else cmd.missing
        seen: set[int] = set()
        for i in missing:
            if not 0 <= i < m.chunk_count or i in seen:
                raise LocalProtocolError("missing: chunk indices must be unique and in range")
            seen.add(i)
            h = m.chunk_hashes[i]
            fetch.queue.append((h, _Want(root, _Kind.CHUNK, i, m.cipher_size(i))))
        fetch.done = m.size - sum(m.plain_size(i) for i in seen)
        self._fetches[root] = fetch
        self._events.append(Progress(root, fetch.done, m.size))
        if not fetch.queue:
            del self._fetches[root]
            self._events.append(FetchComplete(root))
            return
        self._pump()

    def _pump(self) -> None:
        """Request queued objects while credit (bytes and count) allows."""
        batch: list[bytes] = []
        window = self.config.window
        stats = self.stats
        for fetch in list(self._fetches.values()):
            while fetch.queue:
                h, want = fetch.queue[0]
                if len(self._outstanding) >= MAX_REQUEST_HASHES:
                    break
                if (stats.in_flight + stats.held + want.size > window
                        and (self._outstanding or stats.held)):
                    break
                if h in self._outstanding:
                    # Requested by an earlier, failed fetch of this blob: adopt it.
                    fetch.queue.popleft()
                    old = self._outstanding[h]
                    if not old.root:
                        old.root, old.kind, old.index = want.root, want.kind, want.index
                        fetch.outstanding += 1
                    continue
                fetch.queue.popleft()
                self._outstanding[h] = want
                fetch.outstanding += 1
                self.stats.in_flight += want.size
                batch.append(h)
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        self.stats.requested += len(batch)
        if batch:
            self._queue_message(Request(tuple(sorted(batch))))

    def _serve(self, objects: Mapping[bytes, bytes | None]) -> None:
        missing: list[bytes] = []
        for h in objects:
            if h not in self._serving:
                raise LocalProtocolError("answering an object the peer did not request")
        for h, data in objects.items():
            self._serving.discard(h)
            if data is None:
                missing.append(h)
                continue
            if len(data) > MAX_OBJECT_SIZE:
                raise LocalProtocolError("object larger than MAX_OBJECT_SIZE")
            self._queue_message(Data(h, bytes(data)))
            self.stats.objects_sent += 1
        if missing:
            self._queue_message(Missing(tuple(sorted(missing))))

    def release(self, size: int) -> bytes:
        """``size`` bytes of held chunks were stored (``hold_chunks``): their credit
        returns and more may be requested. Returns (and drains) the bytes to write."""
        if size < 0:
            raise LocalProtocolError("release: size must be >= 0")
        if self._closed:
            return b""
        self.stats.held = max(0, self.stats.held - size)
        self._pump()
        return self.data_to_send()

    def reject_chunk(self) -> bytes:
        """The caller found that a chunk reported with ``verified=False`` does not
        hash to its address: cut the peer off (CLOSE ``hash_mismatch``, then a
        :class:`ConnectionClosed` with the error). Returns the bytes to write."""
        if not self._closed:
            exc = _remote("hash_mismatch", "object does not match its hash")
            self._queue_message(Close(exc.reason))
            self._finish(exc.reason, exc)
        return self.data_to_send()

    def _close_local(self, reason: str) -> None:
        self._queue_message(Close(reason[:MAX_CLOSE_TEXT]))
        self._closed = True

    # --- input ----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer (``b""`` = end of stream).

        Raises :class:`RemoteProtocolError` if the peer broke the protocol; the
        machine is then closed and a CLOSE frame is queued.
        """
        if self._closed:
            return
        self.stats.bytes_received += len(data)
        try:
            if not data:
                self._decoder.eof()
                self._finish("eof", None)
                return
            self._decoder.feed(data)
            while not self._closed and (body := self._decoder.next_frame()) is not None:
                self._handle(decode_message(body))
        except RemoteProtocolError as exc:
            self._queue_message(Close(exc.reason[:MAX_CLOSE_TEXT]))
            self._finish(exc.reason, exc)
            raise

    def _finish(self, reason: str, error: RemoteProtocolError | None) -> None:
        self._closed = True
        self._events.append(ConnectionClosed(reason, error, tuple(self._fetches)))
        self._fetches.clear()
        self._outstanding.clear()
        self.stats.in_flight = 0
        self.stats.held = 0

    def _handle(self, msg: Message) -> None:
        if not self._hello_received:
            if not isinstance(msg, Hello):
                raise _remote("expected_hello", "the first frame must be HELLO")
            if msg.version != TRANSFER_VERSION:
                raise _remote("unsupported_version", f"transfer version {msg.version}")
            self._hello_received = True
            return
        if isinstance(msg, Hello):
            raise _remote("unexpected_hello", "HELLO sent twice")
        if isinstance(msg, Request):
            self._on_request(msg.hashes)
        elif isinstance(msg, Data):
            self._on_data(msg.hash, msg.data)
        elif isinstance(msg, Missing):
            self._on_missing(msg.hashes)
        else:
            self._finish(msg.reason or "closed_by_peer", None)

    def _on_request(self, hashes: tuple[bytes, ...]) -> None:
        if any(h in self._serving for h in hashes):
            raise _remote("duplicate_request", "object requested twice")
        if len(self._serving) + len(hashes) > MAX_REQUEST_HASHES:
            raise _remote("too_many_requests",
                          f"more than {MAX_REQUEST_HASHES} objects outstanding")
        self._serving.update(hashes)
        self._events.append(ObjectsRequested(hashes))

    def _take(self, h: bytes) -> _Want:
        want = self._outstanding.pop(h, None)
        if want is None:
            raise _remote("unsolicited", "object was not requested")
        self.stats.in_flight -= want.size
        fetch = self._fetches.get(want.root)
        if fetch is not None:
            fetch.outstanding -= 1
        return want

    def _on_data(self, h: bytes, data: bytes) -> None:
        want = self._outstanding.get(h)
        if want is None:
            raise _remote("unsolicited", "object was not requested")
        exact = want.kind is not _Kind.ROOT
        if (len(data) != want.size) if exact else (len(data) > want.size):
            raise _remote("hash_mismatch", "object has the wrong length")
        if ((want.kind is not _Kind.CHUNK or self.config.verify_chunks)
                and hash_object(data) != h):
            raise _remote("hash_mismatch", "object does not match its hash")
        self._take(h)
        self.stats.objects_received += 1
        fetch = self._fetches.get(want.root)
        if fetch is not None:
            if want.kind is _Kind.ROOT:
                self._on_root(fetch, data)
            elif want.kind is _Kind.PAGE:
                self._on_page(fetch, want.index, data)
            else:
                self._on_chunk(fetch, want, h, data)
        self._pump()

    def _fail_fetch(self, fetch: _Fetch, reason: str) -> None:
        self._fetches.pop(fetch.root, None)
        missing: tuple[int, ...] = ()
        if fetch.manifest is not None:
            left = [w.index for _, w in fetch.queue]
            left += [w.index for w in self._outstanding.values() if w.root == fetch.root]
            missing = tuple(sorted(set(left) | set(fetch.unavailable)))
        # forget queued/outstanding wants of this fetch: late answers are dropped
        for w in self._outstanding.values():
            if w.root == fetch.root:
                w.root = b""
        self._events.append(FetchFailed(fetch.root, reason, missing))

    def _on_root(self, fetch: _Fetch, data: bytes) -> None:
        try:
            info = decode_root(data)
        except DecodeError:
            self._fail_fetch(fetch, "bad_manifest")
            return
        if info.size > self.config.max_file_size:
            self._fail_fetch(fetch, "too_large")
            return
        fetch.info = info
        fetch.root_bytes = data
        for i, ph in enumerate(info.page_hashes):
            fetch.queue.append((ph, _Want(fetch.root, _Kind.PAGE, i, info.page_length(i))))

    def _on_page(self, fetch: _Fetch, index: int, data: bytes) -> None:
        assert fetch.info is not None
        fetch.pages[index] = data
        if len(fetch.pages) < len(fetch.info.page_hashes):
            return
        try:
            manifest = Manifest.from_objects(
                fetch.root_bytes, [fetch.pages[i] for i in range(len(fetch.pages))])
        except (ValidationError, ValueError):
            self._fail_fetch(fetch, "bad_manifest")
            return
        objects = {fetch.root: fetch.root_bytes}
        objects.update((ph, fetch.pages[i]) for i, ph in enumerate(fetch.info.page_hashes))
        del self._fetches[fetch.root]
        self._events.append(ManifestReceived(fetch.root, manifest, objects))

    def _on_chunk(self, fetch: _Fetch, want: _Want, h: bytes, data: bytes) -> None:
        m = fetch.manifest
        assert m is not None
        verified = self.config.verify_chunks
        self._events.append(ChunkReceived(fetch.root, want.index, h, data, verified))
        if self.config.hold_chunks:
            self.stats.held += len(data)
        fetch.done += m.plain_size(want.index)
        self._events.append(Progress(fetch.root, fetch.done, m.size))
        self._maybe_done(fetch)

    def _maybe_done(self, fetch: _Fetch) -> None:
        if fetch.queue or fetch.outstanding:
            return
        del self._fetches[fetch.root]
        if fetch.unavailable:
            self._events.append(FetchFailed(fetch.root, "unavailable",
                                            tuple(sorted(fetch.unavailable))))
        else:
            self._events.append(FetchComplete(fetch.root))

    def _on_missing(self, hashes: Iterable[bytes]) -> None:
        for h in hashes:
            want = self._outstanding.get(h)
            if want is None:
                raise _remote("unsolicited", "MISSING for an object not requested")
        for h in hashes:
            want = self._take(h)
            fetch = self._fetches.get(want.root)
            if fetch is None:
                continue
            if want.kind is _Kind.CHUNK:
                fetch.unavailable.append(want.index)
                self._maybe_done(fetch)
            else:
                self._fail_fetch(fetch, "unavailable")
        self._pump()

