"""One session: a trio task pair driving a sans-IO ``SyncConnection`` over a stream.

Theory of operation
-------------------
The node runs one :class:`Session` per connection. :meth:`Session.run` starts three
loops that share the machine (all in the trio thread, so the machine is never
touched concurrently — every machine call is synchronous):

* **reader** — ``receive_some`` -> ``conn.receive_data`` -> handle events;
* **writer** — drains ``conn.data_to_send()`` plus bytes returned by
  ``conn.send(command)`` into ``send_all`` (one writer, so writes never interleave);
* **timer** — sleeps until ``conn.get_timer()`` and calls ``handle_timer(now)``
  with ``trio.current_time()`` (a mock clock therefore drives protocol timers too).

Events are handled by the node (:meth:`p2pmsg.node.Node._handle_event`), which
answers with commands through :meth:`Session.command`. Store calls are made
directly in the trio thread: they are short (SQLite WAL appends of one run), and a
thread hop per run would cost more than it saves; see docs/node.md.

A peer that sends garbage makes ``receive_data`` raise ``RemoteProtocolError``:
the session logs the reason (no content), flushes the machine's error frame if any,
and ends. Nothing the peer sends reaches the store without the machine's
verification and the store's own linkage check.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from ..errors import LocalProtocolError, RemoteProtocolError
from ..identity import short_id
from ..net.base import PeerStream
from ..policy import Policy
from ..sync import AddInterest, State, SyncConnection
from ..sync.messages import MAX_BLOB_PIECE
from .blobs import BlobChannel

if TYPE_CHECKING:
    from .runtime import Node

__all__ = ["Session"]

log = logging.getLogger("p2pmsg.node")
_RECEIVE_SIZE = 1 << 18
"""Most bytes taken from the stream per reader turn (whatever is buffered, up to
this). Each turn costs a machine call, event handling and a writer wake-up; during
bulk attachment transfers 256 KiB turns measured 12-26 % less CPU than 64 KiB."""
_BLOB_BYTES_PER_TURN = 4 * MAX_BLOB_PIECE
"""Blob-stream bytes the writer sends per turn, after all pending sync bytes."""


class Session:
    """A live connection to one peer. Created and owned by the node's peer manager."""

    def __init__(self, node: Node, stream: PeerStream, *, initiator: bool) -> None:
        self.node = node
        self.stream = stream
        self.peer_id = stream.remote_id
        self.initiator = initiator
        self.initiator_id = node.id if initiator else stream.remote_id
        """Whose dial made this connection; the lower id wins a duplicate."""
        self._policy = _DenialRecorder(node.policy)
        self.conn = SyncConnection(
            local_id=node.id,
            peer_id=self.peer_id,
            index=node.index,
            policy=self._policy,
            initiator=initiator,
            config=node.sync_config,
        )
        self.hello_received = False
        self.granted_topics: frozenset[bytes] = frozenset()
        self.synced_topics: set[bytes] = set()
        self.closed = trio.Event()
        self.close_reason = ""
        self.bytes_sent = 0
        self.bytes_received = 0
        self._out = bytearray()
        self._kick = trio.lowlevel.ParkingLot()
        self._cancel = trio.CancelScope()
        self._finishing = False
        self._writer_done = trio.Event()
        self._denials_audited = 0
        self.blobs: BlobChannel | None = None
        """Attachment transfer with this peer, created on first use."""

    def __repr__(self) -> str:
        return f"Session({short_id(self.peer_id)}, initiator={self.initiator})"

    @property
    def short_peer(self) -> str:
        return short_id(self.peer_id)

    @property
    def denied_topics(self) -> list[bytes]:
        """Topics the peer asked for in its HELLO that the policy denied (for the audit)."""
        return list(self._policy.denied)

    def take_new_denials(self) -> list[bytes]:
        """Topics the policy denied to the peer since the last call (HELLO, then each
        INTEREST), for one audit record per negotiation."""
        new = self._policy.denied[self._denials_audited:]
        self._denials_audited = len(self._policy.denied)
        return list(new)

    # -- called by the node (synchronously) ---------------------------------------

    def command(self, command: Any) -> None:
        """Feed a sync command to the machine and schedule its bytes for sending."""
        if self.closed.is_set() or self._cancel.cancel_called:
            return  # closing: nothing more may be queued for this peer
        try:
            self._out += self.conn.send(command)
        except LocalProtocolError as exc:
            # The session is closing or the command does not apply any more; a
            # live offer racing a close is expected, so this is not an error.
            log.debug("session %s: command %s refused: %s", self.short_peer,
                      type(command).__name__, exc)
        self._wake()

    def add_interest(self, topics: Sequence[bytes]) -> None:
        """Ask the peer for more topics (``AddInterest``; held back until the
        handshake completes). Our own policy filter is not a denial *to* the peer,
        so the audit recorder is paused meanwhile."""
        recording, self._policy.recording = self._policy.recording, False
        try:
            self.command(AddInterest(topics))
        finally:
            self._policy.recording = recording

    def close(self, reason: str) -> None:
        """End the session (cancels its tasks; the stream is closed by :meth:`run`)."""
        if not self.close_reason:
            self.close_reason = reason
        self._cancel.cancel()

    def blob_channel(self) -> BlobChannel:
        """This session's blob transfer (docs/attachments.md §6), created on first use."""
        if self.blobs is None:
            self.blobs = BlobChannel(self, self.node.blob_store)
        return self.blobs

    def _wake(self) -> None:
        self._kick.unpark_all()

    # -- the session task ---------------------------------------------------------

    async def run(self) -> None:
        """Drive the session until the peer closes, an error occurs, or cancellation."""
        try:
            with self._cancel:
                self.conn.start(self.node.topics, now=trio.current_time())
                self._policy.recording = True  # from now on: the peer's HELLO asks
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer)
                    nursery.start_soon(self._timer)
                    await self._reader()
                    # Let the writer flush a final frame (close/error), briefly.
                    self._finishing = True
                    self._wake()
                    with trio.move_on_after(1.0):
                        await self._writer_done.wait()
                    nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.close_reason = self.close_reason or f"connection lost ({type(exc).__name__})"
        finally:
            self.closed.set()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)
            self.node._session_ended(self)

    async def _reader(self) -> None:
        while True:
            try:
                data = bytes(await self.stream.receive_some(_RECEIVE_SIZE))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.close_reason = self.close_reason or "connection lost"
                data = b""
            self.bytes_received += len(data)
            self.node._stats.bytes_received += len(data)
            try:
                self.conn.receive_data(data, now=trio.current_time())
            except RemoteProtocolError as exc:
                self.close_reason = f"protocol error: {exc.reason}"
                self.node._protocol_error(self, exc)
                self._drain_events()
                self._wake()
                return
            if self._drain_events() or not data:
                return
            self._wake()

    def _drain_events(self) -> bool:
        """Hand every pending machine event to the node. True once the conn closed."""
        finished = False
        while (event := self.conn.next_event()) is not None:
            if self.node._handle_event(self, event):
                finished = True
        self.node._changed.unpark_all()  # wait_converged re-checks quiescence
        return finished

    def _pending(self) -> bytes:
        """Sync bytes first, then up to :data:`_BLOB_BYTES_PER_TURN` of BLOB frames.

        Sync bytes queued by then always go ahead of attachment bytes, and a sync
        frame queued meanwhile waits for at most one turn's blob budget (256 KiB,
        a few ms even on a slow link). One small BLOB frame per turn made the
        writer's per-turn cost (a ``send_all``, a trio checkpoint) dominate bulk
        downloads; several frames per turn amortise it."""
        parts = [bytes(self._out), self.conn.data_to_send()]
        self._out.clear()
        if self.blobs is not None and self.conn.state is State.ESTABLISHED:
            piece = self.blobs.take(_BLOB_BYTES_PER_TURN)
            if piece:  # encode_blob cuts it into MAX_BLOB_PIECE frames
                parts.append(self.conn.encode_blob(piece))
        return b"".join(parts)

    async def _write(self, data: bytes) -> bool:
        """Send ``data``; False (and the session is being closed) if the link is gone."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.close(self.close_reason or "connection lost")
            return False
        self.bytes_sent += len(data)
        self.node._stats.bytes_sent += len(data)
        return True

    async def _writer(self) -> None:
        try:
            while True:
                data = self._pending()
                if data:
                    if not await self._write(data):
                        return
                elif self._finishing:
                    return
                else:
                    await self._kick.park()
        finally:
            self._writer_done.set()

    async def _timer(self) -> None:
        while True:
            deadline = self.conn.get_timer()
            if deadline is None:
                await self._kick.park()
                continue
            if trio.current_time() < deadline:
                with trio.move_on_at(deadline):
                    await self._kick.park()
                continue
            now = trio.current_time()
            self.conn.handle_timer(now)
            if self._drain_events():
                self.close(self.close_reason or "closed by timer")
            self._wake()
            again = self.conn.get_timer()
            if again is not None and again <= now:
                # A machine that does not move its timer forward must not spin.
                await trio.sleep(0.001)


class _DenialRecorder:
    """The node's policy as the machine sees it, noting the topics denied to the peer.

    Before :meth:`SyncConnection.start` returns the machine asks about the topics
    *we* want (not recorded: a topic we do not ask a peer for is no event); after
    it, every denial answers the peer's HELLO and is kept for the audit log."""

    __slots__ = ("denied", "policy", "recording")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.recording = False
        self.denied: list[bytes] = []

    def allow_peer(self, peer_id: bytes) -> bool:
        return self.policy.allow_peer(peer_id)

    def may_read(self, peer_id: bytes, topic: bytes) -> bool:
        allowed = self.policy.may_read(peer_id, topic)
        if not allowed and self.recording:
            self.denied.append(topic)
        return allowed
