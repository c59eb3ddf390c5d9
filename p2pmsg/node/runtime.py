"""The trio node runtime: :func:`open_node`, :func:`serve_node` and :class:`Node`.

Theory of operation
-------------------
A node owns a store, a :class:`~p2pmsg.sync.LogIndex` loaded from the store's log
heads, a hybrid logical clock, and a **peer manager**:

* every transport serves inbound connections (``nursery.start(t.serve, ...)``);
* every peer hint (configured peers, discovery sources) gets one *dial loop* that
  keeps a session to that peer alive: dial, run the session, and after it ends or a
  dial fails wait a jittered exponential backoff (``reconnect_initial`` doubling up
  to ``reconnect_max``, x0.5..1.5) and dial again;
* **exactly one session per peer pair**: when a second connection to the same
  peer appears (both sides dialed at once), both nodes keep the connection that was
  dialed by the *lower* node id and close the other. Both apply the same rule to
  the same two connections, so they agree without talking. A new connection
  dialed by the same side as the existing one replaces it (the old one is
  presumably half-dead).

Each session (:mod:`p2pmsg.node.session`) drives a sans-IO ``SyncConnection``; its
events come back here (:meth:`Node._handle_event`): ranges are read from the store,
received runs are appended (the store checks linkage; the machine already
chain-verified them), pushed live to the other sessions and to subscribers, and
their deferred signatures are checked by a background task (see
:meth:`Node._signature_checker`). Everything runs in the trio thread.

Logging uses the ``p2pmsg.node`` logger and never includes keys or payloads —
only short ids (12 hex digits of a hash) and counts.
"""

from __future__ import annotations

import io
import logging
import os
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import trio

from ..blobs.errors import BlobUnavailableError
from ..blobs.format import Manifest
from ..blobs.store import BlobStore
from ..entry import MAX_DEPS, TOPIC_SIZE, Entry, create_entry
from ..errors import (
    ForkError,
    LocalProtocolError,
    Reason,
    RemoteProtocolError,
    StoreError,
    TransportError,
    ValidationError,
)
from ..forks import ForkProof
from ..governance.audit import AuditKind
from ..hlc import HybridClock
from ..identity import short_id
from ..net.base import PeerHint, PeerStream, Transport
from ..store.base import Misbehaviour, Store
from ..sync import LogIndex, State, SyncConfig, events
from ..sync import commands as cmd
from ..sync import events as ev
from ..validate import find_bad_signatures
from .audit import NodeAudit
from .blobs import ProgressCallback
from .config import NodeConfig
from .session import Session
from .subscription import Subscription

__all__ = [
    "BadSignatureEvidence",
    "Node",
    "NodeStatistics",
    "ObservablePolicy",
    "open_node",
    "serve_node",
]

log = logging.getLogger("p2pmsg.node")
_LAZY_CHUNK = 128
_LAZY_IDLE = 0.05
"""Deferred signature checks wait until no run was applied for this many seconds..."""
_LAZY_MAX_BACKLOG = 200_000
"""...unless this many entries are waiting: then they are checked regardless."""
_BAD_SIGNATURE = "bad_signature"
"""``Misbehaviour.kind`` of an entry whose deferred signature check failed."""


@dataclass(slots=True)
class NodeStatistics:
    """Counters over the node's lifetime (:meth:`Node.statistics` returns a copy)."""

    sessions: int = 0
    """Sessions currently open."""
    sessions_opened: int = 0
    sessions_closed: int = 0
    duplicate_connections_closed: int = 0
    """Connections dropped by the one-session-per-peer rule."""
    peers_refused: int = 0
    """Inbound connections refused by ``policy.allow_peer``."""
    dial_attempts: int = 0
    dial_failures: int = 0
    protocol_errors: int = 0
    """Sessions ended because the peer broke the protocol."""
    bytes_sent: int = 0
    bytes_received: int = 0
    entries_appended: int = 0
    """Entries this node authored."""
    entries_received: int = 0
    """Entries newly stored from peers."""
    duplicate_entries: int = 0
    """Received entries that were already stored (redundant deliveries)."""
    entries_sent: int = 0
    """Entries handed to sessions in answers to ranges (live offers not counted)."""
    forks: int = 0
    diverged_logs: int = 0
    """Conflicting entries below our head reported by sessions (``LogDiverged``)."""
    bad_signature_logs: int = 0
    lazy_verified: int = 0
    """Deferred signatures checked by the background task."""
    lazy_pending: int = 0
    subscriber_overflows: int = 0
    sent_by_type: dict[str, int] = field(default_factory=dict)
    """Sync bytes written per message type, summed over all sessions (ended and
    open); keys as in :attr:`p2pmsg.sync.SyncStatistics.sent_by_type`."""
    live_duplicates: int = 0
    """Entries pushed to us live that we already held (wasted live pushes)."""
    live_dropped: int = 0
    """Live offers dropped by full send queues (healed by resync rounds)."""
    resync_rounds: int = 0
    """Anti-entropy rounds opened by our sessions after the first one."""
    sessions_revoked: int = 0
    """Sessions closed by :meth:`Node.revalidate_sessions` (the policy changed)."""
    interest_changes: int = 0
    """Calls of :meth:`Node.add_topics` / :meth:`Node.remove_topics` that changed topics."""
    sessions_reopened: int = 0
    """Sessions closed by :meth:`Node.remove_topics` (to be redialed with fewer topics)."""
    blob_chunks_received: int = 0
    """Attachment chunks fetched from peers and stored (verified)."""
    blob_objects_served: int = 0
    """Attachment objects (roots, pages, chunks) sent to peers."""


@runtime_checkable
class ObservablePolicy(Protocol):
    """A policy that announces changes (e.g. :class:`~p2pmsg.governance.GovernancePolicy`).

    :func:`open_node` registers :meth:`Node.revalidate_sessions` with it for the
    node's lifetime."""

    def add_change_listener(self, callback: Callable[[], None]) -> None: ...

    def remove_change_listener(self, callback: Callable[[], None]) -> None: ...


@dataclass(frozen=True, slots=True)
class BadSignatureEvidence:
    """An entry accepted by chain verification whose own signature is invalid."""

    entry: Entry
    """The offending entry (its log is frozen on this node from then on)."""
    peer_id: bytes
    """The peer that delivered it."""


class Node:
    """A running node. Obtain one from :func:`open_node`; do not construct directly."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.identity = config.identity
        self.id: bytes = config.identity.public_key
        self.name = config.name or short_id(self.id)
        self.store: Store = config.store
        self.policy = config.policy
        self.topics: tuple[bytes, ...] = tuple(config.topics)
        self.sync_config: SyncConfig = config.sync if config.sync is not None else SyncConfig()
        self.index = LogIndex()
        self.hlc = HybridClock()
        self._rng = random.Random(config.seed)
        self._stats = NodeStatistics()
        self._sessions: dict[bytes, Session] = {}
        self._dialing: dict[bytes, list[str]] = {}
        self._changed = trio.lowlevel.ParkingLot()
        self._subscribers: dict[bytes, list[Subscription]] = {}
        self._lazy: deque[tuple[bytes, tuple[Entry, ...]]] = deque()
        self._lazy_wake = trio.lowlevel.ParkingLot()
        self._lazy_backlog = 0
        self._last_applied_at = float("-inf")
        self._bad_logs: dict[tuple[bytes, bytes], BadSignatureEvidence] = {}
        self._nursery: trio.Nursery | None = None
        self.audit = NodeAudit(config.audit, config.wall_clock, self.name)
        self.blob_store: BlobStore | None = config.blob_store
        self._load_from_store()

    def __repr__(self) -> str:
        return f"Node({self.name})"

    def _load_from_store(self) -> None:
        last = 0
        for topic in self.store.topics():
            heads: list[Entry] = []
            for h in self.store.heads(topic):
                entry = self.store.head(h.author, topic)
                if entry is not None:
                    heads.append(entry)
                    if h.author == self.id:
                        last = max(last, entry.header.timestamp)
            self.index.load_heads(topic, heads)
        self.hlc = HybridClock(last=last)
        for record in self.store.misbehaviours():
            if record.kind == _BAD_SIGNATURE:
                self._bad_logs.setdefault(record.entry.log_id,
                                          BadSignatureEvidence(record.entry, record.peer_id))

    # -- application API ----------------------------------------------------------

    async def append(
        self, topic: bytes, payload: bytes, deps: Iterable[bytes] | None = None
    ) -> Entry:
        """Write a new entry to this node's log in ``topic``; store it, then push it live.

        ``deps`` defaults to the head ids of the other authors' logs in the topic
        (at most :data:`~p2pmsg.entry.MAX_DEPS`, the most recent by HLC time).
        Durable when this returns (as durable as the store's ``append``).
        """
        await trio.lowlevel.checkpoint()
        head = self.store.head(self.id, topic)
        if deps is None:
            deps = self._default_deps(topic)
        entry = create_entry(
            self.identity,
            topic,
            seq=1 if head is None else head.header.seq + 1,
            backlink=None if head is None else head.id,
            timestamp=self.hlc.tick(self.config.wall_clock()),
            payload=payload,
            deps=deps,
        )
        # create_entry hashed the payload into the header: no second hash in the store.
        self.store.append([entry], {entry.id: payload}, payloads_verified=True)
        self.index.update([entry])
        self._stats.entries_appended += 1
        self._after_new_entries((entry,), {entry.id: payload}, origin=None)
        return entry

    def _default_deps(self, topic: bytes) -> list[bytes]:
        others = [
            e
            for h in self.store.heads(topic)
            if h.author != self.id and (e := self.store.head(h.author, topic)) is not None
        ]
        others.sort(key=lambda e: (e.header.timestamp, e.id), reverse=True)
        return [e.id for e in others[:MAX_DEPS]]

    def read(self, topic: bytes) -> list[Entry]:
        """Every stored entry of ``topic`` in display order: HLC timestamp, then id.

        Entries of a log frozen for a bad signature are shown only up to the entry
        before the bad one.
        """
        result: list[Entry] = []
        for h in self.store.heads(topic):
            end = h.seq
            bad = self._bad_logs.get((h.author, topic))
            if bad is not None:
                end = min(end, bad.entry.header.seq - 1)
            result.extend(self.store.get_range(h.author, topic, 1, end))
        result.sort(key=lambda e: (e.header.timestamp, e.id))
        return result

    def payload(self, entry: Entry) -> bytes | None:
        """The payload bytes of a stored entry, or None (missing or erased)."""
        value = self.store.get_payload(entry.id)
        return value if isinstance(value, bytes) else None

    def subscribe(self, topic: bytes) -> Subscription:
        """A live feed of new verified entries of ``topic`` (own and received).

        Use ``async with node.subscribe(t) as sub: async for entry in sub: ...``.
        The buffer holds ``config.subscriber_buffer`` entries; a subscriber that
        falls further behind is ended (``sub.overflowed``), never waited for.
        """
        sub = Subscription(topic, self.config.subscriber_buffer, self._unsubscribe)
        self._subscribers.setdefault(topic, []).append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.topic, [])
        if sub in subs:
            subs.remove(sub)

    def connected_peers(self) -> list[bytes]:
        """Node ids with an open session that completed its hello."""
        return sorted(p for p, s in self._sessions.items() if s.hello_received)

    async def wait_for_peer(self, peer_id: bytes) -> None:
        """Return once a session with ``peer_id`` has exchanged hellos."""
        while True:
            session = self._sessions.get(peer_id)
            if session is not None and session.hello_received:
                await trio.lowlevel.checkpoint()
                return
            await self._changed.park()

    async def wait_synced(self, topic: bytes, peer_id: bytes) -> None:
        """Return once the current session with ``peer_id`` finished the initial
        reconciliation of ``topic`` (both directions asked; ``TopicSynced``)."""
        while True:
            session = self._sessions.get(peer_id)
            if session is not None and topic in session.synced_topics:
                await trio.lowlevel.checkpoint()
                return
            await self._changed.park()

    async def wait_converged(self, peers: Iterable[bytes], topics: Iterable[bytes]) -> None:
        """Return once, with every peer in ``peers``, each topic of ``topics`` that the
        session replicates (either way) has finished its first reconciliation and
        the session is *quiescent* on our side (``SyncConnection.quiescent``: no
        round, request, queued run or unapplied batch in progress).

        At that moment we hold every entry the peer announced and it was offered
        everything we hold (live or in the last round). Entries appended after the
        last round are reconciled by live push, and whatever a push lost by the
        periodic resync round (``SyncConfig.resync_interval``). For a whole
        federation use the simulator's oracle: one node cannot see other pairs.
        """
        want_peers, want_topics = tuple(peers), frozenset(topics)
        while True:
            if all(self._converged_with(p, want_topics) for p in want_peers):
                await trio.lowlevel.checkpoint()
                return
            await self._changed.park()

    def _converged_with(self, peer_id: bytes, topics: frozenset[bytes]) -> bool:
        session = self._sessions.get(peer_id)
        if session is None or not session.hello_received:
            return False
        shared = topics & (session.conn.granted | session.conn.peer_granted)
        return shared <= session.synced_topics and session.conn.quiescent

    async def wait_for_entries(self, topic: bytes, count: int) -> None:
        """Return once at least ``count`` entries of ``topic`` are stored here."""
        while sum(h.seq for h in self.store.heads(topic)) < count:
            await self._changed.park()
        await trio.lowlevel.checkpoint()

    def bad_signatures(self) -> list[BadSignatureEvidence]:
        """Evidence of authors caught signing invalid entries.

        Recorded in the store (``store.record_misbehaviour``) when found and
        reloaded at start-up, so the logs stay frozen across restarts."""
        return list(self._bad_logs.values())

    def revalidate_sessions(self) -> int:
        """Ask the policy again about every open session; close those it no longer allows.

        A session is closed when ``policy.allow_peer`` now refuses the peer, or when
        ``policy.may_read`` now denies a topic the session replicates (in either
        direction). The sync machine cannot drop a granted topic, so the session is
        closed instead (ACCESS_REVOKED audit record, ``sessions_revoked``); the dial
        loop (ours or the peer's) reconnects and the new HELLO is granted only what
        the policy allows now. Called automatically when the policy announces a
        change (``add_change_listener``, as :class:`~p2pmsg.governance.GovernancePolicy`
        does); call it yourself after changing another policy (e.g.
        ``TopicPolicy.revoke``). Returns the number of sessions closed.

        Access *gained* is handled too: every session kept open asks its peer
        (INTEREST) for the topics we replicate that it was never asked for because
        our policy did not let the peer hold them then, and now does. The peer's
        policy decides the grant (see also :meth:`_reask_served`).
        """
        closed = 0
        for session in list(self._sessions.values()):
            if session.closed.is_set() or session.close_reason:
                continue
            peer = session.peer_id
            held = session.conn.granted | session.conn.peer_granted
            if not self.policy.allow_peer(peer):
                reason, lost = "peer_not_allowed", sorted(held)
            else:
                lost = sorted(t for t in held if not self.policy.may_read(peer, t))
                if not lost:
                    self._ask_gained(session)
                    continue
                reason = "topic_access_revoked"
            self.audit.record(AuditKind.ACCESS_REVOKED, peer=short_id(peer), reason=reason,
                              topics=[short_id(t) for t in lost])
            log.info("%s: closing session with %s: %s (%d topics)", self.name,
                     session.short_peer, reason, len(lost))
            self._stats.sessions_revoked += 1
            session.close(f"policy: {reason}")
            closed += 1
        return closed

    def _ask_gained(self, session: Session) -> None:
        """Ask ``session``'s peer for our topics it may hold now and was not asked."""
        conn = session.conn
        new = [t for t in self.topics if t not in conn.asked and t not in conn.peer_granted
               and self.policy.may_read(session.peer_id, t)]
        if new:
            log.info("%s: asking %s for %d topics access was gained to", self.name,
                     session.short_peer, len(new))
            session.add_interest(new)

    def _reask_served(self, session: Session, served: frozenset[bytes]) -> None:
        """The peer just asked us for ``served`` (and we granted it): by the sync rule
        its policy lets us hold those topics, so ask again for those we replicate and
        it denied us earlier (its policy learnt the room after our ask)."""
        back = [t for t in self.topics if t in served and t not in session.conn.peer_granted]
        if back:
            session.add_interest(back)

    # -- attachments (docs/attachments.md §6) -----------------------------------

    def _require_blob_store(self) -> BlobStore:
        if self.blob_store is None:
            raise LocalProtocolError("this node has no blob store (NodeConfig.blob_store)")
        return self.blob_store

    async def put_blob(self, data: bytes | str | os.PathLike[str], room: bytes, *,
                       org: bytes = b"") -> tuple[Manifest, bytes]:
        """Encrypt a file (bytes or a path) into the blob store for ``room``.

        Returns ``(manifest, file_key)``; build the message with
        :func:`p2pmsg.blobs.describe`. Peers may then fetch it if the policy lets
        them read ``room``. Quota: ``QuotaExceededError``/``FileTooLargeError``,
        nothing stored. Runs in the trio thread (reads one chunk at a time).
        """
        store = self._require_blob_store()
        await trio.lowlevel.checkpoint()
        if isinstance(data, bytes):
            return store.import_file(io.BytesIO(data), len(data), org=org, room=room)
        path = os.fspath(data)
        with open(path, "rb") as f:
            return store.import_file(f, os.fstat(f.fileno()).st_size, org=org, room=room)

    async def fetch_blob(self, root: bytes, room: bytes, *, org: bytes = b"",
                         progress: ProgressCallback | None = None) -> None:
        """Fetch blob ``root`` for ``room`` into the blob store from connected peers.

        Asks one peer at a time; what a peer does not have (or may not give us) is
        asked of the next; after a broken session the fetch resumes, on whatever
        session comes up next, with only the chunks still missing. Waits for peers
        while none is connected (bound it with ``trio.fail_after``). Raises
        :class:`~p2pmsg.blobs.BlobUnavailableError` once every connected peer was
        asked and none served it, ``ValidationError``/``QuotaExceededError`` for a
        bad or refused blob. ``progress(done, total)`` gets plaintext bytes.
        """
        store = self._require_blob_store()
        manifest = store.get_manifest(root)
        if manifest is not None and not store.missing(root):
            if progress is not None:
                progress(manifest.size, manifest.size)
            await trio.lowlevel.checkpoint()
            return
        refused: set[bytes] = set()
        while True:
            ready = [s for p, s in sorted(self._sessions.items())
                     if s.hello_received and not s.closed.is_set()
                     and s.conn.state is State.ESTABLISHED]
            candidates = [s for s in ready if s.peer_id not in refused]
            if not candidates:
                if ready:
                    held = store.get_manifest(root)
                    raise BlobUnavailableError(
                        root, len(store.missing(root)) if held is not None else -1)
                await self._changed.park()
                continue
            session = candidates[0]
            outcome = await session.blob_channel().fetch(root, org=org, room=room,
                                                         progress=progress)
            if outcome.status == "complete" and not store.missing(root):
                return
            if outcome.status == "refused" and outcome.error is not None:
                raise outcome.error
            if outcome.status in ("bad_manifest", "too_large"):
                raise ValidationError(Reason.PAYLOAD_MISMATCH,
                                      f"blob cannot be fetched: {outcome.status}")
            if outcome.status in ("unavailable", "cut_off", "complete"):
                refused.add(session.peer_id)
            # disconnected: the next session (this peer redialed or another) resumes

    def add_topics(self, topics: Iterable[bytes]) -> list[bytes]:
        """Replicate more topics from now on, without reconnecting.

        Every open session asks its peer for the new topics in-protocol (INTEREST,
        docs/protocol-sync.md "Interest changes"): each side asks its policy again
        (``may_read``) — we ask a peer only for topics it may hold, it grants only
        what its policy allows — and the granted topics are reconciled and then
        pushed live like those of the HELLO. Sessions opened later ask for them in
        their HELLO. Returns the topics that were new (sorted); ``wait_synced`` /
        ``wait_converged`` tell when a peer's copy has arrived.
        Raises ValueError for an id that is not 32 bytes.
        """
        wanted = set(topics)
        if not all(type(t) is bytes and len(t) == TOPIC_SIZE for t in wanted):
            raise ValueError(f"topics are ids of {TOPIC_SIZE} bytes")
        new = sorted(wanted - set(self.topics))
        if not new:
            return []
        self.topics = (*self.topics, *new)
        self._stats.interest_changes += 1
        log.info("%s: interest grew by %d topics", self.name, len(new))
        for session in list(self._sessions.values()):
            session.add_interest(new)
        self._changed.unpark_all()
        return new

    def remove_topics(self, topics: Iterable[bytes]) -> list[bytes]:
        """Stop asking peers for ``topics``. Entries already stored stay stored.

        The sync protocol cannot drop a topic from a live session (see
        docs/protocol-sync.md, "Interest changes"), so every open session that asked
        its peer for a removed topic is closed (reason ``interest_changed``); the dial
        loop (ours or the peer's) reconnects and the new HELLO asks only the
        remaining topics. Sessions where we never asked for them are untouched.
        Returns the topics that were removed (sorted).
        """
        gone = set(topics) & set(self.topics)
        if not gone:
            return []
        self.topics = tuple(t for t in self.topics if t not in gone)
        self._stats.interest_changes += 1
        for session in list(self._sessions.values()):
            if session.closed.is_set() or session.close_reason:
                continue
            if gone & session.conn.asked:
                self._stats.sessions_reopened += 1
                log.info("%s: closing session with %s: interest changed", self.name,
                         session.short_peer)
                session.close("interest_changed")
        self._changed.unpark_all()
        return sorted(gone)

    def _policy_changed(self) -> None:
        if self._nursery is not None:
            self.revalidate_sessions()

    def statistics(self) -> NodeStatistics:
        """A copy of the node's counters."""
        stats = NodeStatistics(
            **{f.name: getattr(self._stats, f.name) for f in fields(self._stats)}
        )
        stats.sessions = len(self._sessions)
        stats.lazy_pending = self._lazy_backlog
        stats.sent_by_type = dict(self._stats.sent_by_type)
        for session in self._sessions.values():
            self._fold_session_stats(stats, session)
        return stats

    @staticmethod
    def _fold_session_stats(into: NodeStatistics, session: Session) -> None:
        s = session.conn.stats
        for name, size in s.sent_by_type.items():
            into.sent_by_type[name] = into.sent_by_type.get(name, 0) + size
        into.live_duplicates += s.live_duplicates
        into.live_dropped += s.live_dropped
        into.resync_rounds += s.resync_rounds

    # -- peer manager -------------------------------------------------------------

    def add_peer(self, hint: PeerHint) -> None:
        """Dial ``hint`` and keep a session to it for the node's lifetime."""
        if hint.node_id == self.id:
            return
        addresses = self._dialing.get(hint.node_id)
        if addresses is not None:
            if hint.address not in addresses:
                addresses.append(hint.address)
            return
        if not self.policy.allow_peer(hint.node_id):
            log.info("%s: not dialing %s: policy refuses the peer", self.name,
                     short_id(hint.node_id))
            self.audit.record(AuditKind.CONNECTION_REFUSED, peer=short_id(hint.node_id),
                              direction="outbound")
            return
        self._dialing[hint.node_id] = [hint.address]
        assert self._nursery is not None, "add_peer needs a running node"
        self._nursery.start_soon(self._dial_loop, hint.node_id)

    def _transport_for(self, address: str) -> Transport | None:
        scheme = address.split("://", 1)[0]
        for t in self.config.transports:
            if t.scheme == scheme:
                return t
        return None

    def _backoff(self, attempt: int) -> float:
        growth = 2.0 ** min(attempt, 30)
        base = min(self.config.reconnect_max, self.config.reconnect_initial * growth)
        return base * self._rng.uniform(0.5, 1.5)

    async def _dial_loop(self, peer_id: bytes) -> None:
        failures = 0
        addresses = self._dialing[peer_id]
        while True:
            existing = self._sessions.get(peer_id)
            if existing is not None:
                await existing.closed.wait()
                await trio.sleep(self._backoff(0))
                continue
            address = addresses[failures % len(addresses)]
            transport = self._transport_for(address)
            if transport is None:
                log.warning("%s: no transport for %s", self.name, address.split("://")[0])
                return
            self._stats.dial_attempts += 1
            try:
                stream = await transport.dial(address, peer_id)
            except TransportError as exc:
                self._stats.dial_failures += 1
                log.debug("%s: dial %s failed: %s", self.name, short_id(peer_id), exc)
                await trio.sleep(self._backoff(failures))
                failures += 1
                continue
            session = self._adopt(stream, initiator=True)
            if session is not None:
                await session.run()
                if session.hello_received:
                    failures = 0
                else:
                    failures += 1  # refused or broken before the hello: back off
            await trio.sleep(self._backoff(failures))

    async def _handle_inbound(self, stream: PeerStream) -> None:
        if stream.remote_id == self.id or not self.policy.allow_peer(stream.remote_id):
            # Closed before a Session (and so a sync machine) exists: not one byte of
            # HELLO, let alone log data, is written to a refused peer.
            self._stats.peers_refused += 1
            log.info("%s: refused connection from %s (policy)", self.name,
                     short_id(stream.remote_id))
            self.audit.record(AuditKind.CONNECTION_REFUSED, peer=short_id(stream.remote_id),
                              direction="inbound")
            await trio.aclose_forcefully(stream)
            return
        session = self._adopt(stream, initiator=False)
        if session is not None:
            await session.run()

    def _adopt(self, stream: PeerStream, *, initiator: bool) -> Session | None:
        """Register a new connection, applying the one-session-per-peer rule."""
        session = Session(self, stream, initiator=initiator)
        existing = self._sessions.get(session.peer_id)
        if existing is not None:
            if existing.initiator_id < session.initiator_id:
                self._stats.duplicate_connections_closed += 1
                log.debug("%s: duplicate connection to %s dropped", self.name,
                          session.short_peer)
                self._nursery_close(stream)
                return None
            self._stats.duplicate_connections_closed += 1
            existing.close("replaced by a preferred connection")
        self._sessions[session.peer_id] = session
        self._stats.sessions_opened += 1
        direction = "outbound" if initiator else "inbound"
        log.info("%s: session with %s opened (%s)", self.name, session.short_peer, direction)
        self.audit.record(AuditKind.CONNECTION_ACCEPTED, peer=session.short_peer,
                          direction=direction)
        self._changed.unpark_all()
        return session

    def _nursery_close(self, stream: PeerStream) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(trio.aclose_forcefully, stream)

    def _session_ended(self, session: Session) -> None:
        if session.blobs is not None:
            session.blobs.session_closed()
        if self._sessions.get(session.peer_id) is session:
            del self._sessions[session.peer_id]
        if session.conn.state is not State.IDLE:
            self._fold_session_stats(self._stats, session)
        self._stats.sessions_closed += 1
        log.info("%s: session with %s closed: %s", self.name, session.short_peer,
                 session.close_reason or "done")
        self._changed.unpark_all()

    def _protocol_error(self, session: Session, exc: RemoteProtocolError) -> None:
        self._stats.protocol_errors += 1
        log.warning("%s: peer %s broke the protocol: %s", self.name, session.short_peer,
                    exc.reason)
        self.audit.record(AuditKind.PROTOCOL_ERROR, peer=session.short_peer,
                          reason=str(exc.reason))

    # -- sync events --------------------------------------------------------------

    def _handle_event(self, session: Session, event: events.Event) -> bool:
        """React to one machine event. True when the connection is finished."""
        if isinstance(event, ev.HelloReceived):
            session.hello_received = True
            session.granted_topics = frozenset(event.topics)
            denied = sorted(set(session.take_new_denials()))
            if denied:
                self.audit.record(AuditKind.TOPICS_DENIED, peer=session.short_peer,
                                  count=len(denied), topics=[short_id(t) for t in denied[:32]])
            self._changed.unpark_all()
        elif isinstance(event, ev.InterestUpdated):
            session.granted_topics = frozenset(event.topics)
            denied = sorted(set(session.take_new_denials()))
            if denied:
                self.audit.record(AuditKind.TOPICS_DENIED, peer=session.short_peer,
                                  count=len(denied), topics=[short_id(t) for t in denied[:32]])
            if event.served:
                self._reask_served(session, event.served)
            self._changed.unpark_all()
        elif isinstance(event, ev.EntriesNeeded):
            self._answer_range(session, event)
        elif isinstance(event, ev.EntriesReceived):
            self._apply_entries(session, event)
        elif isinstance(event, ev.PayloadsNeeded):
            answer: dict[bytes, bytes | None] = {}
            headers: list[Entry] = []
            for entry_id in event.entry_ids:
                value = self.store.get_payload(entry_id)
                entry = self.store.get_entry(entry_id)
                if isinstance(value, bytes) and entry is not None and entry.topic == event.topic:
                    answer[entry_id] = value
                    headers.append(entry)
                else:
                    answer[entry_id] = None
            session.command(cmd.SendPayloads(answer, headers))
        elif isinstance(event, ev.PayloadsReceived):
            try:
                for entry_id, payload in event.payloads.items():
                    try:
                        self.store.put_payload(entry_id, payload)
                    except StoreError as exc:
                        log.warning("%s: payload from %s rejected: %s", self.name,
                                    session.short_peer, exc)
            finally:
                session.command(cmd.EntriesApplied(event.token))
        elif isinstance(event, ev.LogDiverged):
            self._stats.diverged_logs += 1
            log.warning("%s: peer %s sent a conflicting entry of author %s in topic %s "
                        "at seq %d (fork below our head)", self.name, session.short_peer,
                        short_id(event.author), short_id(event.topic), event.seq)
        elif isinstance(event, ev.ForkProofReceived):
            self._record_fork(event.proof, origin=session)
        elif isinstance(event, ev.TopicSynced):
            session.synced_topics.add(event.topic)
            self._changed.unpark_all()
        elif isinstance(event, ev.BlobData):
            session.blob_channel().receive(event.data)
        elif isinstance(event, ev.ConnectionClosed):
            session.close_reason = session.close_reason or event.reason
            return True
        return False

    def _answer_range(self, session: Session, event: ev.EntriesNeeded) -> None:
        entries = self.store.get_range(event.author, event.topic, event.start, event.end)
        payloads: dict[bytes, bytes] = {}
        for entry in entries:
            value = self.store.get_payload(entry.id)
            if isinstance(value, bytes):
                payloads[entry.id] = value
        self._stats.entries_sent += len(entries)
        session.command(cmd.SendEntries(tuple(entries), payloads))

    def _apply_entries(self, session: Session, event: ev.EntriesReceived) -> None:
        entries: tuple[Entry, ...] = tuple(event.entries)
        try:
            if entries and (entries[0].author, entries[0].topic) in self._bad_logs:
                return  # the author misbehaved; its log is frozen here
            try:
                # The sync machine checked every payload against its header
                # (verify_payload) before emitting EntriesReceived.
                result = self.store.append(entries, event.payloads, payloads_verified=True)
            except ForkError as exc:
                self._record_fork(exc.proof, origin=None, source=session)
                return
            except StoreError as exc:
                # E.g. a concurrent session already extended the log differently
                # from what this run assumed; the machine will ask again.
                log.info("%s: run from %s not stored: %s", self.name, session.short_peer, exc)
                return
            self._stats.duplicate_entries += result.duplicates
            if not result.added:
                return
            self.index.update(result.added)
            self._stats.entries_received += len(result.added)
            wall = self.config.wall_clock()
            self.hlc.observe(max(e.header.timestamp for e in result.added), wall)
            self._lazy.append((session.peer_id, result.added))
            self._lazy_backlog += len(result.added)
            self._last_applied_at = trio.current_time()
            self._lazy_wake.unpark_all()
            added_ids = {e.id for e in result.added}
            payloads = {k: v for k, v in event.payloads.items() if k in added_ids}
            self._after_new_entries(result.added, payloads, origin=session)
        finally:
            session.command(cmd.EntriesApplied(event.token))

    def _after_new_entries(
        self, entries: Sequence[Entry], payloads: Mapping[bytes, bytes], origin: Session | None
    ) -> None:
        """Push new entries live to every other session, then to subscribers."""
        for session in list(self._sessions.values()):
            if session is not origin and session.hello_received:
                session.command(cmd.Offer(tuple(entries), dict(payloads)))
        for entry in entries:
            subs = self._subscribers.get(entry.topic)
            if not subs:
                continue
            for sub in list(subs):
                if not sub._deliver(entry):
                    if sub.overflowed:
                        self._stats.subscriber_overflows += 1
                        log.warning("%s: slow subscriber dropped (buffer full)", self.name)
                    subs.remove(sub)
        self._changed.unpark_all()

    def _record_fork(
        self, proof: ForkProof, origin: Session | None, source: Session | None = None
    ) -> None:
        if not self.store.record_fork(proof):
            return
        self._stats.forks += 1
        author, topic = proof.log_id
        log.warning("%s: fork by author %s in topic %s at seq %d; log frozen", self.name,
                    short_id(author), short_id(topic), proof.seq)
        via = source if source is not None else origin
        self.audit.record(AuditKind.FORK_DETECTED, author=short_id(author), topic=short_id(topic),
                          seq=proof.seq, peer=via.short_peer if via is not None else "local")
        for session in list(self._sessions.values()):
            if session is not origin and session.hello_received:
                session.command(cmd.SendForkProof(proof))
        self._changed.unpark_all()

    # -- lazy signature verification ---------------------------------------------

    async def _signature_checker(self) -> None:
        """Check the deferred signatures of received runs, off the hot path.

        The machine verified each run by its last signature (chain verification);
        here every other signature is checked in small chunks between checkpoints,
        with lower priority than replication: checks wait until no run was applied
        for ``_LAZY_IDLE`` seconds (so a catch-up is not slowed down by them),
        unless more than ``_LAZY_MAX_BACKLOG`` entries wait.
        A bad one is author misbehaviour: the evidence is recorded in the store
        (durable), logged, and the (author, topic) log is frozen on this node — later runs of it are
        not stored and :meth:`read` hides it from the bad entry on.
        """
        while True:
            if not self._lazy:
                await self._lazy_wake.park()
                continue
            quiet_at = self._last_applied_at + _LAZY_IDLE
            if trio.current_time() < quiet_at and self._lazy_backlog < _LAZY_MAX_BACKLOG:
                await trio.sleep_until(quiet_at)
                continue
            peer_id, run = self._lazy.popleft()
            self._lazy_backlog -= len(run)
            for i in range(0, len(run), _LAZY_CHUNK):
                chunk = run[i : i + _LAZY_CHUNK]
                bad = find_bad_signatures(chunk)
                self._stats.lazy_verified += len(chunk)
                if bad:
                    self._flag_bad_signature(bad[0], peer_id)
                    break
                await trio.sleep(0)

    def _flag_bad_signature(self, entry: Entry, peer_id: bytes) -> None:
        key = entry.log_id
        if key in self._bad_logs:
            return
        self._bad_logs[key] = BadSignatureEvidence(entry, peer_id)
        self._stats.bad_signature_logs += 1
        try:  # durable, so the log stays frozen after a restart
            self.store.record_misbehaviour(Misbehaviour(_BAD_SIGNATURE, entry, peer_id))
        except StoreError as exc:
            log.error("%s: could not persist bad-signature evidence: %s", self.name, exc)
        log.warning("%s: bad signature by author %s in topic %s at seq %d (from %s); "
                    "log frozen", self.name, short_id(entry.author), short_id(entry.topic),
                    entry.seq, short_id(peer_id))
        self.audit.record(AuditKind.BAD_SIGNATURE, author=short_id(entry.author),
                          topic=short_id(entry.topic), seq=entry.seq, peer=short_id(peer_id))
        self._changed.unpark_all()

    async def _run_discovery(self, source: Any) -> None:
        async for hint in source.hints():
            self.add_peer(hint)


@asynccontextmanager
async def open_node(config: NodeConfig) -> AsyncIterator[Node]:
    """Run a node for the duration of an ``async with`` block.

    Serves every transport, dials configured and discovered peers, and closes all
    sessions when the block exits (or is cancelled)::

        async with p2pmsg.open_node(config) as node:
            await node.append(topic, b"...")
    """
    node = Node(config)
    observable = isinstance(config.policy, ObservablePolicy)
    if isinstance(config.policy, ObservablePolicy):
        config.policy.add_change_listener(node._policy_changed)
    try:
        async with _run_node(node, config) as running:
            yield running
    finally:
        if observable and isinstance(config.policy, ObservablePolicy):
            config.policy.remove_change_listener(node._policy_changed)


@asynccontextmanager
async def _run_node(node: Node, config: NodeConfig) -> AsyncIterator[Node]:
    async with trio.open_nursery() as nursery:
        node._nursery = nursery
        for transport in config.transports:
            await nursery.start(transport.serve, node._handle_inbound)
        nursery.start_soon(node._signature_checker)
        for source in config.discovery:
            # The node owns each source's lifecycle: start it (advertising, browsing)
            # before consuming its hints. Callers must not start sources themselves.
            await nursery.start(source.run)
            nursery.start_soon(node._run_discovery, source)
        for hint in config.peers:
            node.add_peer(hint)
        try:
            yield node
        finally:
            nursery.cancel_scope.cancel()
            for session in list(node._sessions.values()):
                session.close("node shutting down")
            node._nursery = None


async def serve_node(
    config: NodeConfig, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run a node until cancelled: ``node = await nursery.start(serve_node, config)``."""
    async with open_node(config) as node:
        task_status.started(node)
        await trio.sleep_forever()
