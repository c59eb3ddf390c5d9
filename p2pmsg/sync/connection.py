"""SyncConnection: the replication protocol of one session, as a sans-IO state machine.

Theory of operation
-------------------
The machine has three inputs and two outputs, like h11/aioquic:

* bytes from the peer — :meth:`SyncConnection.receive_data` (``b""`` = end of stream);
* commands from the node — :meth:`SyncConnection.send` (commands.py);
* time — :meth:`SyncConnection.handle_timer` at :meth:`SyncConnection.get_timer`;

and it produces events (:meth:`SyncConnection.next_event`, events.py) and bytes
(:meth:`SyncConnection.data_to_send`, also returned by ``send``). It never reads a
clock, opens a socket or touches the store: ``now`` is an argument, and the node
answers events by reading/writing the store itself.

A session runs: HELLO both ways (version, node id, topics wanted, byte credit) ->
GRANT both ways (topics the policy lets the peer read) -> per topic, range-based
reconciliation of log heads (reconcile.py) -> REQUESTs for missing ranges -> RUNs of
entries under credit-based flow control -> live pushes (``Offer``) -> CLOSE.
States and their transitions are in states.py; docs/protocol-sync.md documents the
wire format, the algorithm and the error codes.

Errors: anything wrong the peer sends raises :class:`RemoteProtocolError` from
``receive_data`` (with a stable ``reason``), queues a CLOSE frame carrying that
reason, and queues ``ConnectionClosed(reason, error)``. Afterwards the machine is
CLOSED: ``receive_data``, ``handle_timer`` and commands are no-ops (returning b"");
only ``start()`` in a wrong state and misuse of commands while open raise
:class:`LocalProtocolError`.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..entry import TOPIC_SIZE, Entry, decode_entry
from ..errors import (
    DecodeError,
    LocalProtocolError,
    Reason,
    RemoteProtocolError,
    ValidationError,
)
from ..forks import ForkProof, decode_fork_proof, verify_fork_proof
from ..policy import Policy
from ..validate import verify_payload, verify_run, verify_signature
from . import commands as cmd
from . import events as ev
from .frames import (
    FRAME_HEADER_SIZE,
    MAX_FRAME_SIZE,
    FrameDecoder,
    canonical_bstr_head,
    encode_frame,
)
from .index import LogIndex
from .messages import (
    MAX_BLOB_PIECE,
    MAX_TOPICS,
    PROTOCOL_VERSION,
    RUN_FINAL,
    RUN_LIVE,
    BlobPiece,
    Close,
    Credit,
    ForkProofMsg,
    Grant,
    Hello,
    Interest,
    InterestGrant,
    Message,
    MsgType,
    PayloadRequest,
    Payloads,
    Ping,
    Pong,
    Range,
    Recon,
    Request,
    Resync,
    Run,
    decode_message,
)
from .reconcile import answer_ranges, compact, needs_reply, one_way_ranges, opening_ranges
from .states import (
    ACCEPTS,
    ROUND_INITIAL,
    ROUND_TRANSITIONS,
    TRANSITIONS,
    Round,
    RoundTrigger,
    State,
    Trigger,
)

__all__ = ["SyncConfig", "SyncConnection", "SyncStatistics"]

_MIB = 1 << 20
_Log = tuple[bytes, bytes]  # (topic, author)
_TURN_FRAME_TARGET = 128 * 1024
_REQUEST_BATCH = 4096


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """Tunables of one session. Defaults suit a LAN or WAN link of a hospital site."""

    max_in_flight: int = 2 * _MIB
    """Byte credit we grant the peer: RUN/PAYLOADS frame bytes it may send us that
    the node has not yet applied. At least one maximal frame (MAX_FRAME_SIZE + 4)."""
    fanout: int = 16
    """Buckets a differing range is split into during reconciliation."""
    leaf_items: int = 16
    """Ranges with at most this many items are answered with the item list."""
    max_entries_per_need: int = 512
    """Entries per ``EntriesNeeded`` event (bounds what the node reads at once)."""
    run_target_bytes: int = 256 * 1024
    """Pack RUN/PAYLOADS frames up to about this size (one big payload may exceed it)."""
    keepalive_interval: float = 15.0
    """Send PING after this many seconds without hearing from the peer."""
    idle_timeout: float = 60.0
    """Close with ``idle_timeout`` after this many seconds without hearing from the peer."""
    max_send_queue: int = 8 * _MIB
    """Live offers are dropped (and healed by gap requests) beyond this many queued bytes."""
    max_pending_requests: int = 100_000
    """Log ranges the peer may have asked us for and not yet received."""
    max_payload_requests: int = 4096
    """Payload ids the peer may have asked us for and not yet received."""
    resync_interval: float | None = 30.0
    """Anti-entropy: the opener of a mutual topic re-reconciles it this many seconds
    after the previous round ended (an in-sync round costs one fingerprint each way,
    ~100 bytes). None disables the timer; overflow and gap triggers still work."""

    def __post_init__(self) -> None:
        if self.max_in_flight < MAX_FRAME_SIZE + FRAME_HEADER_SIZE:
            raise ValueError("max_in_flight must hold at least one maximal frame")
        if self.fanout < 2 or self.leaf_items < self.fanout:
            raise ValueError("need fanout >= 2 and leaf_items >= fanout")
        if self.max_entries_per_need < 1 or self.run_target_bytes < 1:
            raise ValueError("max_entries_per_need and run_target_bytes must be positive")
        if not 0 < self.keepalive_interval < self.idle_timeout:
            raise ValueError("need 0 < keepalive_interval < idle_timeout")
        if self.resync_interval is not None and not self.resync_interval > 0:
            raise ValueError("resync_interval must be positive (or None)")


@dataclass
class SyncStatistics:
    """Counters of one session (for tests, benchmarks and the node's metrics)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    recon_bytes_sent: int = 0
    entries_received: int = 0
    entries_sent: int = 0
    live_dropped: int = 0
    credit_in_use: int = 0
    """Bytes of RUN/PAYLOADS frames received and not yet applied (<= max_in_flight)."""
    max_credit_in_use: int = 0
    send_queue_bytes: int = 0
    """Bytes queued waiting for the peer's credit."""
    sent_by_type: dict[str, int] = field(default_factory=dict)
    """Bytes written per message type (frame incl. its 4-byte prefix); live RUN
    frames are counted under ``RUN_LIVE``, answers to requests under ``RUN``."""
    received_by_type: dict[str, int] = field(default_factory=dict)
    """Bytes received per message type (same keys as ``sent_by_type``)."""
    live_duplicates: int = 0
    """Entries that arrived in live runs although we already held them."""
    resync_rounds: int = 0
    """Reconciliation rounds opened after the first one (timer, overflow, RESYNC)."""


@dataclass
class _Recon:
    round: Round = Round.AWAITING
    opener: bool = False
    cursor: bytes | None = b""
    reply: list[Range] = field(default_factory=list)
    reply_needed: bool = False
    done: bool = False


@dataclass
class _Request:
    next: int
    end: int


@dataclass
class _Need:
    topic: bytes
    author: bytes
    start: int
    end: int
    final_end: int


_TYPE_OF: dict[type, MsgType] = {
    Hello: MsgType.HELLO, Grant: MsgType.GRANT, Recon: MsgType.RECON,
    Request: MsgType.REQUEST, Run: MsgType.RUN, Credit: MsgType.CREDIT,
    PayloadRequest: MsgType.PAYLOAD_REQUEST, Payloads: MsgType.PAYLOADS,
    ForkProofMsg: MsgType.FORK_PROOF, Ping: MsgType.PING, Pong: MsgType.PONG,
    Close: MsgType.CLOSE, Resync: MsgType.RESYNC, Interest: MsgType.INTEREST,
    InterestGrant: MsgType.INTEREST_GRANT, BlobPiece: MsgType.BLOB,
}
_TYPE_NAMES = {m.value: m.name for m in MsgType}
_BLOB_HEAD = bytes([0x82, MsgType.BLOB.value])
"""Canonical CBOR of a BLOB message up to its data's head: array(2), type code."""


def _type_name(body: bytes) -> str:
    """The message type of an encoded frame body (array header, then a small int)."""
    name = _TYPE_NAMES.get(body[1]) if len(body) > 1 else None
    return name or "UNKNOWN"


def _count(table: dict[str, int], name: str, size: int) -> None:
    table[name] = table.get(name, 0) + size


def _remote(reason: str, message: str) -> RemoteProtocolError:
    return RemoteProtocolError(reason, message)


class SyncConnection:
    """The sync protocol of one session with one authenticated peer. See module doc.

    Create one per connection after the transport authenticated ``peer_id``; call
    :meth:`start` with the topics to replicate, then loop: feed bytes, drain events
    and answer them, write :meth:`data_to_send`, and call :meth:`handle_timer` at
    :meth:`get_timer`.
    """

    def __init__(self, *, local_id: bytes, peer_id: bytes, index: LogIndex, policy: Policy,
                 initiator: bool, config: SyncConfig | None = None) -> None:
        self.local_id = local_id
        self.peer_id = peer_id
        self.initiator = initiator
        self.config = config or SyncConfig()
        self._index = index
        self._policy = policy
        self._state = State.IDLE
        self._decoder = FrameDecoder()
        self._events: deque[ev.Event] = deque()
        self._out = bytearray()
        self.stats = SyncStatistics()
        # handshake
        self._want: frozenset[bytes] = frozenset()
        self._granted: frozenset[bytes] = frozenset()  # topics we serve to the peer
        self._peer_granted: frozenset[bytes] = frozenset()  # topics the peer serves us
        self._peer_version = 0
        # interest changes at run time (INTEREST / INTEREST_GRANT)
        self._interest_deferred: set[bytes] = set()  # asked before the handshake ended
        self._interest_pending: deque[frozenset[bytes]] = deque()  # sent, not answered
        self._interest_crossed: set[bytes] = set()  # granted while we asked it too
        # flow control: what we may send / what the peer may send us
        self._tx_limit = 0
        self._tx_credit = 0
        self._credit_queue: deque[tuple[bytes, str]] = deque()
        self._tokens: dict[int, tuple[int, _Log | None, bytes | None]] = {}
        self._token_ids = itertools.count(1)
        # reconciliation and pulls
        self._recon: dict[bytes, _Recon] = {}
        self._requests: dict[_Log, _Request] = {}
        self._open_requests: dict[bytes, int] = {}
        self._later: dict[_Log, int] = {}
        self._pending_heads: dict[_Log, Entry] = {}
        self._diverged: set[_Log] = set()
        self._synced: set[bytes] = set()
        # anti-entropy rounds and fork evidence
        self._round_wanted: set[bytes] = set()
        self._resync_asked: set[bytes] = set()
        self._overflowed: set[bytes] = set()
        self._gap_seen: dict[_Log, int] = {}
        self._next_resync: float | None = None
        self._evidence: dict[_Log, Entry] = {}
        self._evidence_asked: set[_Log] = set()
        # serving the peer's pulls
        self._serve_queue: deque[tuple[bytes, bytes, int, int]] = deque()
        self._serving: set[_Log] = set()
        self._need: _Need | None = None
        # payload fetch
        self._asked_payloads: dict[bytes, Entry] = {}
        self._peer_payload_asks: dict[bytes, bytes] = {}
        # timers
        self._last_rx: float | None = None
        self._clock: float | None = None
        self._pinged = False
        self._ping_nonce = 0

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> State:
        """The current :class:`~p2pmsg.sync.states.State`."""
        return self._state

    @property
    def granted(self) -> frozenset[bytes]:
        """Topics we serve to the peer (its request intersected with our policy)."""
        return self._granted

    @property
    def peer_granted(self) -> frozenset[bytes]:
        """Topics the peer serves us."""
        return self._peer_granted

    @property
    def asked(self) -> frozenset[bytes]:
        """Topics we asked the peer for (HELLO and INTEREST; granted or not), and
        those held back to ask once the handshake completes."""
        return self._want | self._interest_deferred

    @property
    def quiescent(self) -> bool:
        """True when this side has nothing in progress: established, no round open
        or wanted, no request open or being served, nothing waiting for credit, no
        batch waiting for ``EntriesApplied``. Both sides quiescent after a round =
        the two nodes hold the same heads of every topic they share."""
        return (self._state is State.ESTABLISHED and not self._requests
                and not self._interest_pending
                and not self._credit_queue and not self._serve_queue and self._need is None
                and not self._tokens and not self._round_wanted and not self._overflowed
                and all(st.round is Round.QUIET for st in self._recon.values()))

    def start(self, topics: Iterable[bytes], now: float | None = None) -> None:
        """Queue our HELLO asking for ``topics`` (those our policy lets the peer hold).

        Raises LocalProtocolError if already started or closed, or for a bad topic.
        """
        if self._state not in (State.IDLE, State.HELLO_RECEIVED):
            raise LocalProtocolError(f"start() in state {self._state.name}")
        asked = sorted(set(topics) | self._interest_deferred)
        self._interest_deferred.clear()
        if len(asked) > MAX_TOPICS or not all(
                type(t) is bytes and len(t) == TOPIC_SIZE for t in asked):
            raise LocalProtocolError(f"topics: at most {MAX_TOPICS} ids of {TOPIC_SIZE} bytes")
        allowed = self._policy.allow_peer(self.peer_id)
        self._want = frozenset(
            t for t in asked if allowed and self._policy.may_read(self.peer_id, t))
        self._touch(now)
        self._emit(Hello(PROTOCOL_VERSION, self.local_id, tuple(sorted(self._want)),
                         self.config.max_in_flight).encode())
        self._transition(Trigger.START)
        if self.state is State.AWAIT_GRANT:
            self._emit(Grant(tuple(sorted(self._granted))).encode())

    def receive_data(self, data: bytes, now: float | None = None) -> None:
        """Feed bytes from the transport; ``b""`` means the peer closed its side.

        Pass ``now`` (the node's clock) for precise idle detection. Raises only
        RemoteProtocolError (and then the session is CLOSED). No-op when CLOSED.
        """
        if self._state is State.CLOSED:
            return
        try:
            if not data:
                self._decoder.eof()
                self._close(Trigger.EOF, "eof", send=False)
                return
            self._touch(now)
            self._last_rx = self._clock
            self._pinged = False
            self.stats.bytes_received += len(data)
            self._decoder.feed(data)
            while self.state is not State.CLOSED:
                body = self._decoder.next_frame()
                if body is None:
                    break
                self.stats.frames_received += 1
                size = len(body) + FRAME_HEADER_SIZE
                msg = decode_message(body)
                name = _TYPE_NAMES[_TYPE_OF[type(msg)].value]
                if isinstance(msg, Run) and msg.flags & RUN_LIVE:
                    name = "RUN_LIVE"
                _count(self.stats.received_by_type, name, size)
                self._dispatch(msg, size)
        except RemoteProtocolError as exc:
            self._fail(exc)
            raise

    def next_event(self) -> ev.Event | None:
        """The next event, or None if there is none until more input arrives."""
        if not self._events and self._state is State.ESTABLISHED:
            self._next_need()
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> bytes:
        """Drain the bytes to write to the transport (may be b"")."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def send(self, command: cmd.Command) -> bytes:
        """Apply a command (commands.py); returns (and drains) the bytes to send."""
        if self._state is not State.CLOSED:
            handler = _COMMANDS.get(type(command))
            if handler is None:
                raise LocalProtocolError(f"not a sync command: {type(command).__name__}")
            handler(self, command)
        return self.data_to_send()

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should be called next, or None (no timer)."""
        if self._state is State.CLOSED or self._last_rx is None:
            return None
        if self._pinged:
            deadline = self._last_rx + self.config.idle_timeout
        else:
            deadline = self._last_rx + self.config.keepalive_interval
        if self._next_resync is not None:
            deadline = min(deadline, self._next_resync)
        return deadline

    def handle_timer(self, now: float) -> None:
        """Run timers due at ``now``: PING after keepalive, close after idle timeout,
        and open anti-entropy rounds when ``resync_interval`` has passed."""
        if self._state is State.CLOSED:
            return
        self._touch(now)
        if self._last_rx is None:
            self._last_rx = now
            return
        if now >= self._last_rx + self.config.idle_timeout:
            self._close(Trigger.IDLE_TIMEOUT, "idle_timeout", send=True)
            return
        if now >= self._last_rx + self.config.keepalive_interval and not self._pinged:
            self._pinged = True
            self._ping_nonce += 1
            self._emit(Ping(self._ping_nonce).encode())
        if self._next_resync is not None and now >= self._next_resync:
            self._next_resync = None
            for topic, state in self._recon.items():
                if state.opener and topic in self._granted and topic in self._peer_granted:
                    self._round_wanted.add(topic)
            self._open_rounds()
            self._schedule_resync()

    # ------------------------------------------------------------------ plumbing

    def _touch(self, now: float | None) -> None:
        if now is not None:
            self._clock = now
            if self._last_rx is None:
                self._last_rx = now

    def _transition(self, trigger: Trigger) -> None:
        nxt = TRANSITIONS.get((self._state, trigger))
        if nxt is None:  # pragma: no cover - guarded by ACCEPTS / start()
            raise LocalProtocolError(f"{trigger.value} not allowed in {self._state.name}")
        self._state = nxt

    def _emit(self, body: bytes) -> None:
        frame = encode_frame(body)
        self._out += frame
        self.stats.bytes_sent += len(frame)
        self.stats.frames_sent += 1
        _count(self.stats.sent_by_type, _type_name(body), len(frame))

    def _emit_credited(self, body: bytes, name: str | None = None) -> None:
        """Queue a RUN/PAYLOADS frame; it is written when the peer's credit allows."""
        frame = encode_frame(body)
        self._credit_queue.append((frame, name or _type_name(body)))
        self.stats.send_queue_bytes += len(frame)
        self._pump()

    def _pump(self) -> None:
        while self._credit_queue and len(self._credit_queue[0][0]) <= self._tx_credit:
            frame, name = self._credit_queue.popleft()
            self._tx_credit -= len(frame)
            self.stats.send_queue_bytes -= len(frame)
            self._out += frame
            self.stats.bytes_sent += len(frame)
            self.stats.frames_sent += 1
            _count(self.stats.sent_by_type, name, len(frame))
        if not self._credit_queue and self._overflowed:
            # Live offers were dropped while the queue was full: now that it has
            # drained, reconcile those topics so the peer learns what it missed.
            topics, self._overflowed = self._overflowed, set()
            for topic in sorted(topics):
                self._want_round(topic)

    def _fail(self, exc: RemoteProtocolError) -> None:
        if self._state is State.CLOSED:
            return
        self._emit(Close(exc.reason, "").encode())
        self._state = TRANSITIONS[(self._state, Trigger.PROTOCOL_ERROR)]
        self._events.append(ev.ConnectionClosed(exc.reason, exc))

    def _close(self, trigger: Trigger, reason: str, *, send: bool, detail: str = "") -> None:
        if send:
            self._emit(Close(reason, "").encode())
        self._transition(trigger)
        self._events.append(ev.ConnectionClosed(reason, None, detail))

    def _dispatch(self, msg: Message, size: int) -> None:
        kind = _TYPE_OF[type(msg)]
        if kind not in ACCEPTS[self._state]:
            raise _remote("unexpected_message", f"{kind.name} in state {self._state.name}")
        _HANDLERS[kind](self, msg, size)

    # ------------------------------------------------------------------ handshake

    def _on_hello(self, msg: Message, size: int) -> None:
        assert isinstance(msg, Hello)
        if msg.version != PROTOCOL_VERSION:
            raise _remote("unsupported_version", f"peer speaks version {msg.version}")
        if msg.node_id != self.peer_id:
            raise _remote("wrong_node_id", "HELLO node id is not the authenticated peer")
        if msg.credit < MAX_FRAME_SIZE + FRAME_HEADER_SIZE:
            raise _remote("bad_credit", "HELLO credit smaller than one maximal frame")
        self._peer_version = msg.version
        self._tx_limit = self._tx_credit = msg.credit
        allowed = self._policy.allow_peer(self.peer_id)
        self._granted = frozenset(
            t for t in msg.topics if allowed and self._policy.may_read(self.peer_id, t))
        self._transition(Trigger.RECV_HELLO)
        if self.state is State.AWAIT_GRANT:
            self._emit(Grant(tuple(sorted(self._granted))).encode())

    def _on_grant(self, msg: Message, size: int) -> None:
        assert isinstance(msg, Grant)
        if not set(msg.topics) <= self._want:
            raise _remote("unexpected_topic", "GRANT names a topic we did not ask for")
        self._peer_granted = frozenset(msg.topics)
        self._transition(Trigger.RECV_GRANT)
        self._events.append(ev.HelloReceived(self.peer_id, self._peer_version, self._granted,
                                             self._peer_granted))
        self._begin_recon()
        if self._interest_deferred:
            deferred = sorted(self._interest_deferred)
            self._interest_deferred.clear()
            self._ask_more(deferred)

    # ------------------------------------------------------------------ interest at run time
    #
    # A topic joins a running session one-way: the side asking (INTEREST) receives
    # it from the side granting (INTEREST_GRANT), which pushes its item list right
    # after the grant, exactly like a one-way topic of the HELLO. If the asking side
    # already served that topic to the peer, the topic becomes mutual and its opener
    # stays the side that served it first (it opens a fingerprint round when the
    # grant arrives), so two rounds still never cross. See docs/protocol-sync.md.

    def _cmd_add_interest(self, command: cmd.Command) -> None:
        assert isinstance(command, cmd.AddInterest)
        topics = set(command.topics)
        if not all(type(t) is bytes and len(t) == TOPIC_SIZE for t in topics):
            raise LocalProtocolError(f"topics are ids of {TOPIC_SIZE} bytes")
        if self._state is State.ESTABLISHED:
            self._ask_more(sorted(topics))
        else:  # asked by start() (not called yet) or once the handshake completes
            self._interest_deferred |= topics

    def _ask_more(self, topics: Sequence[bytes]) -> None:
        pending = set().union(*self._interest_pending)
        allowed = self._policy.allow_peer(self.peer_id)
        new = tuple(sorted(
            t for t in set(topics) if t not in self._peer_granted and t not in pending
            and allowed and self._policy.may_read(self.peer_id, t)))
        if not new:
            return
        if len(self._want | set(new)) > MAX_TOPICS:
            raise LocalProtocolError(f"a session asks at most {MAX_TOPICS} topics")
        self._want |= set(new)
        self._interest_pending.append(frozenset(new))
        self._emit(Interest(new).encode())
        self._transition(Trigger.ADD_INTEREST)

    def _on_interest(self, msg: Message, size: int) -> None:
        assert isinstance(msg, Interest)
        if any(t in self._granted for t in msg.topics):
            raise _remote("unexpected_topic", "INTEREST repeats a topic already granted")
        allowed = self._policy.allow_peer(self.peer_id)
        new = frozenset(t for t in msg.topics
                        if allowed and self._policy.may_read(self.peer_id, t))
        if len(self._granted) + len(new) > MAX_TOPICS:
            raise _remote("too_many_topics", f"a session serves at most {MAX_TOPICS} topics")
        self._granted |= new
        self._transition(Trigger.RECV_INTEREST)
        self._emit(InterestGrant(tuple(sorted(new))).encode())
        self._events.append(ev.InterestUpdated(self._granted, self._peer_granted, served=new,
                                               denied=frozenset(msg.topics) - new))
        pending = set().union(*self._interest_pending)
        for topic in sorted(new):
            if topic in self._recon:
                continue  # the peer served it to us: now mutual; the peer opens a round
            if topic in pending:
                # Both sides asked for it at once: who opens its rounds is settled
                # when the peer answers our INTEREST (mutual: the initiator).
                self._interest_crossed.add(topic)
                continue
            self._serve_new(topic)

    def _serve_new(self, topic: bytes) -> None:
        """Start serving a topic granted by INTEREST one-way: push our item list."""
        state = self._recon[topic] = _Recon(opener=True)
        self._open_requests.setdefault(topic, 0)
        self._send_turn(topic, one_way_ranges(self._index, topic))
        state.round = ROUND_INITIAL[RoundTrigger.INTEREST_SERVE]
        state.done = True
        self._check_synced(topic)

    def _on_interest_grant(self, msg: Message, size: int) -> None:
        assert isinstance(msg, InterestGrant)
        if not self._interest_pending:
            raise _remote("unexpected_message", "INTEREST_GRANT without an INTEREST")
        asked = self._interest_pending.popleft()
        got = frozenset(msg.topics)
        if not got <= asked:
            raise _remote("unexpected_topic", "INTEREST_GRANT names a topic we did not ask for")
        self._peer_granted |= got
        self._transition(Trigger.RECV_INTEREST_GRANT)
        self._events.append(ev.InterestUpdated(self._granted, self._peer_granted,
                                               received=got, denied=asked - got))
        for topic in sorted(asked):
            crossed = topic in self._interest_crossed
            self._interest_crossed.discard(topic)
            if topic not in got:
                if crossed:  # we granted the peer's ask; it denied ours: one-way, we serve
                    self._serve_new(topic)
                continue
            if crossed:  # both asked and both granted: mutual, the initiator opens
                self._recon[topic] = _Recon(
                    opener=self.initiator, round=ROUND_INITIAL[RoundTrigger.ESTABLISHED_WAIT])
                self._open_requests.setdefault(topic, 0)
                if self.initiator:
                    self._send_turn(topic, opening_ranges(self._index, topic))
            elif topic in self._recon:  # we serve it (and open its rounds): now mutual
                self._want_round(topic)
            else:
                self._recon[topic] = _Recon(
                    opener=False, round=ROUND_INITIAL[RoundTrigger.INTEREST_RECEIVE])
                self._open_requests.setdefault(topic, 0)
        self._schedule_resync()

    # ------------------------------------------------------------------ reconciliation

    def _begin_recon(self) -> None:
        mutual = self._granted & self._peer_granted
        for topic in sorted(self._granted | self._peer_granted):
            state = self._recon[topic] = _Recon()
            self._open_requests[topic] = 0
            if topic in mutual:
                state.opener = self.initiator
                state.round = ROUND_INITIAL[RoundTrigger.ESTABLISHED_WAIT]
                if self.initiator:
                    self._send_turn(topic, opening_ranges(self._index, topic))
            elif topic in self._granted:  # we serve it, the peer may not send it back
                state.opener = True
                self._send_turn(topic, one_way_ranges(self._index, topic))
                state.round = ROUND_INITIAL[RoundTrigger.ESTABLISHED_PUSHED]
                state.done = True
                self._check_synced(topic)
            else:  # the peer serves it one way: wait for its item list
                state.round = ROUND_INITIAL[RoundTrigger.ESTABLISHED_WAIT]
        self._schedule_resync()

    # Anti-entropy. Only a topic's opener starts rounds, so two rounds never cross;
    # the other side asks with RESYNC. Triggers: the resync timer (mutual topics,
    # opener), a drained send queue after dropped live offers (either side), and a
    # request the peer answered short (receiver). See docs/protocol-sync.md.

    @staticmethod
    def _round_step(state: _Recon, trigger: RoundTrigger) -> None:
        nxt = ROUND_TRANSITIONS.get((state.round, trigger))
        if nxt is None:  # pragma: no cover - guarded by the callers
            raise LocalProtocolError(f"{trigger.value} not allowed in round {state.round}")
        state.round = nxt

    def _schedule_resync(self) -> None:
        interval = self.config.resync_interval
        if interval is None or self._clock is None or self._next_resync is not None:
            return
        if any(st.opener and t in self._granted and t in self._peer_granted
               for t, st in self._recon.items()):
            self._next_resync = self._clock + interval

    def _want_round(self, topic: bytes) -> None:
        """Something suggests the sides differ on ``topic``: get a round going."""
        state = self._recon.get(topic)
        if state is None:
            return
        if state.opener:
            self._round_wanted.add(topic)
            self._open_rounds()
        elif topic not in self._resync_asked:
            self._resync_asked.add(topic)
            self._emit(Resync((topic,)).encode())

    def _open_rounds(self) -> None:
        """Open the wanted rounds whose topic is QUIET (others wait for their end)."""
        for topic in sorted(self._round_wanted):
            state = self._recon[topic]
            if state.round is not Round.QUIET or not state.done:
                continue
            self._round_wanted.discard(topic)
            self.stats.resync_rounds += 1
            if topic in self._peer_granted:
                self._send_turn(topic, opening_ranges(self._index, topic))
                self._round_step(state, RoundTrigger.OPEN_ROUND)
            else:
                self._send_turn(topic, one_way_ranges(self._index, topic))
                self._round_step(state, RoundTrigger.PUSH_ITEMS)

    def _on_resync(self, msg: Message, size: int) -> None:
        assert isinstance(msg, Resync)
        for topic in msg.topics:
            state = self._recon.get(topic)
            if state is None or not state.opener:
                raise _remote("unexpected_topic", "RESYNC for a topic we do not open rounds of")
            self._round_wanted.add(topic)
        self._open_rounds()

    def _send_turn(self, topic: bytes, ranges: list[Range]) -> None:
        before = self.stats.bytes_sent
        chunk: list[Range] = []
        size = 0
        for r in ranges:
            chunk.append(r)
            size += 40 + 80 * len(r.items)
            if size >= _TURN_FRAME_TARGET:
                self._emit(Recon(topic, True, tuple(chunk)).encode())
                chunk, size = [], 0
        self._emit(Recon(topic, False, tuple(chunk)).encode())
        self.stats.recon_bytes_sent += self.stats.bytes_sent - before

    def _on_recon(self, msg: Message, size: int) -> None:
        assert isinstance(msg, Recon)
        topic = msg.topic
        state = self._recon.get(topic)
        if state is None or (state.round is Round.QUIET and (state.opener or not state.done)):
            raise _remote("unexpected_recon", "RECON for a topic not being reconciled")
        if state.round is Round.QUIET and state.cursor == b"":
            self._resync_asked.discard(topic)  # the opener started the round we asked for
        mutual = topic in self._granted and topic in self._peer_granted
        if not mutual and needs_reply(list(msg.ranges)):
            raise _remote("unexpected_recon", "RECON asks for an answer on a one-way topic")
        if msg.ranges:
            lo = state.cursor
            first = msg.ranges[0].upper
            if lo is None or (first is not None and first <= lo):
                raise _remote("bad_range", "RECON range does not continue the turn")
            outcome = answer_ranges(self._index, topic, lo, msg.ranges,
                                    fanout=self.config.fanout, leaf=self.config.leaf_items)
            state.cursor = msg.ranges[-1].upper
            state.reply.extend(outcome.ranges)
            state.reply_needed |= needs_reply(list(msg.ranges))
            self._want_entries(topic, [(i.author, i.height, i.head_id) for i in outcome.needs])
        if msg.more:
            return
        reply, reply_needed = compact(state.reply), state.reply_needed
        state.cursor, state.reply, state.reply_needed = b"", [], False
        if reply_needed:
            self._send_turn(topic, reply)
        if reply_needed and needs_reply(reply):
            self._round_step(state, RoundTrigger.TURN_NEEDS_REPLY)
        else:
            self._round_step(state, RoundTrigger.TURN_ENDS_ROUND)
            state.done = True
            self._check_synced(topic)
            if state.opener:
                self._next_resync = None  # count the interval from the end of a round
                self._schedule_resync()
                self._open_rounds()

    def _vhead(self, key: _Log) -> Entry | None:
        """The head to verify against: our pending (emitted, unapplied) or the index's."""
        topic, author = key
        indexed = self._index.head(author, topic)
        pending = self._pending_heads.get(key)
        if pending is not None:
            if indexed is None or pending.header.seq > indexed.header.seq:
                return pending
            del self._pending_heads[key]
        return indexed

    def _want_entries(self, topic: bytes, needs: Sequence[tuple[bytes, int, bytes | None]]) -> None:
        """Request (author, peer height, peer head id) logs where the peer is ahead."""
        batch: list[tuple[bytes, int, int]] = []
        for author, height, head_id in needs:
            key = (topic, author)
            if key in self._diverged:
                continue
            head = self._vhead(key)
            have = 0 if head is None else head.header.seq
            if head is not None and height == have and head_id is not None and head_id != head.id:
                start = end = have  # same height, other head: fetch it as fork evidence
            elif height > have:
                start, end = have + 1, height
            else:
                continue
            if key in self._requests:
                self._later[key] = max(self._later.get(key, 0), end)
                continue
            self._requests[key] = _Request(start, end)
            self._open_requests[topic] = self._open_requests.get(topic, 0) + 1
            batch.append((author, start, end))
        for i in range(0, len(batch), _REQUEST_BATCH):
            self._emit(Request(topic, tuple(batch[i:i + _REQUEST_BATCH])).encode())

    def _ask_evidence(self, key: _Log) -> None:
        """Request the peer's entry at the seq of our saved conflicting entry."""
        ours = self._evidence.get(key)
        if ours is None or key in self._requests or key in self._evidence_asked:
            return
        self._evidence_asked.add(key)
        topic, author = key
        seq = ours.header.seq
        self._requests[key] = _Request(seq, seq)
        self._open_requests[topic] = self._open_requests.get(topic, 0) + 1
        self._emit(Request(topic, ((author, seq, seq),)).encode())

    def _check_synced(self, topic: bytes) -> None:
        state = self._recon.get(topic)
        if (state is not None and state.done and topic not in self._synced
                and self._open_requests.get(topic, 0) == 0):
            self._synced.add(topic)
            self._events.append(ev.TopicSynced(topic))

    # ------------------------------------------------------------------ serving pulls

    def _on_request(self, msg: Message, size: int) -> None:
        assert isinstance(msg, Request)
        if msg.topic not in self._granted:
            raise _remote("unexpected_topic", "REQUEST for a topic not granted")
        for author, start, end in msg.ranges:
            key = (msg.topic, author)
            if key in self._serving:
                raise _remote("duplicate_request", "REQUEST for a log already being served")
            if len(self._serving) >= self.config.max_pending_requests:
                raise _remote("too_many_requests", "too many outstanding log requests")
            self._serving.add(key)
            self._serve_queue.append((msg.topic, author, start, end))

    def _next_need(self) -> None:
        """Turn the next queued peer request into EntriesNeeded, if the window allows."""
        while self._need is None and not self._credit_queue and self._serve_queue:
            topic, author, start, end = self._serve_queue.popleft()
            final_end = min(end, self._index.height(author, topic))
            if start > final_end:  # nothing (more) to give: close the peer's request
                self._serving.discard((topic, author))
                self._emit_credited(Run(topic, author, RUN_FINAL, (), ()).encode())
                continue
            chunk_end = min(final_end, start + self.config.max_entries_per_need - 1)
            self._need = _Need(topic, author, start, chunk_end, final_end)
            self._events.append(ev.EntriesNeeded(topic, author, start, chunk_end))

    def _cmd_send_entries(self, command: cmd.Command) -> None:
        assert isinstance(command, cmd.SendEntries)
        self._require_established()
        need = self._need
        if need is None:
            raise LocalProtocolError("SendEntries without an outstanding EntriesNeeded")
        entries = list(command.entries)
        for i, e in enumerate(entries):
            if e.log_id != (need.author, need.topic) or e.header.seq != need.start + i:
                raise LocalProtocolError("SendEntries: entries do not match EntriesNeeded")
        if len(entries) > need.end - need.start + 1:
            raise LocalProtocolError("SendEntries: more entries than needed")
        self._check_payloads(entries, command.payloads)
        self._need = None
        last = entries[-1].header.seq if entries else need.start - 1
        final = last < need.end or last >= need.final_end
        self._queue_runs(need.topic, need.author, entries, command.payloads,
                         RUN_FINAL if final else 0)
        self.stats.entries_sent += len(entries)
        if final:
            self._serving.discard((need.topic, need.author))
        else:
            self._serve_queue.appendleft((need.topic, need.author, last + 1, need.final_end))

    @staticmethod
    def _check_payloads(entries: Sequence[Entry], payloads: Mapping[bytes, bytes]) -> None:
        for e in entries:
            p = payloads.get(e.id)
            if p is not None:
                try:
                    verify_payload(e.header, p)
                except ValidationError as exc:
                    raise LocalProtocolError(f"payload does not match its entry: {exc}") from exc

    def _queue_runs(self, topic: bytes, author: bytes, entries: Sequence[Entry],
                    payloads: Mapping[bytes, bytes], final_flag: int, *,
                    live: bool = False) -> None:
        flags = RUN_LIVE if live else 0
        chunk: list[Entry] = []
        size = 0
        for e in entries:
            p = payloads.get(e.id)
            cost = len(e.raw) + 80 + (len(p) if p is not None else 0)
            if chunk and size + cost > self.config.run_target_bytes:
                self._emit_run(topic, author, chunk, payloads, flags)
                chunk, size = [], 0
            chunk.append(e)
            size += cost
        if chunk or final_flag:
            self._emit_run(topic, author, chunk, payloads, flags | final_flag)

    def _emit_run(self, topic: bytes, author: bytes, chunk: list[Entry],
                  payloads: Mapping[bytes, bytes], flags: int) -> None:
        self._emit_credited(Run(topic, author, flags, tuple(e.to_bytes() for e in chunk),
                                tuple(payloads.get(e.id) for e in chunk)).encode(),
                            "RUN_LIVE" if flags & RUN_LIVE else "RUN")

    # ------------------------------------------------------------------ receiving runs

    def _take_credit(self, size: int) -> None:
        self.stats.credit_in_use += size
        if self.stats.credit_in_use > self.config.max_in_flight:
            raise _remote("credit_exceeded", "peer sent more than its flow-control credit")
        self.stats.max_credit_in_use = max(self.stats.max_credit_in_use,
                                           self.stats.credit_in_use)

    def _release(self, size: int) -> None:
        self.stats.credit_in_use -= size
        self._emit(Credit(size).encode())

    def _on_credit(self, msg: Message, size: int) -> None:
        assert isinstance(msg, Credit)
        self._tx_credit += msg.amount
        if self._tx_credit > self._tx_limit:
            raise _remote("credit_overflow", "peer returned more credit than was used")
        self._pump()

    def _on_run(self, msg: Message, size: int) -> None:
        assert isinstance(msg, Run)
        self._take_credit(size)
        topic, author = msg.topic, msg.author
        if topic not in self._peer_granted:
            raise _remote("unexpected_topic", "RUN of a topic the peer does not serve us")
        entries: list[Entry] = []
        for raw in msg.entries:
            try:
                entries.append(decode_entry(raw))
            except DecodeError as exc:
                raise _remote("malformed_entry", exc.detail) from exc
        for i, e in enumerate(entries):
            if e.header.topic != topic or e.header.author != author:
                raise _remote("wrong_log", "RUN entry of another log than the frame names")
            if e.header.seq != entries[0].header.seq + i:
                raise _remote("bad_link", "RUN entries are not consecutive")
        payloads = {e.id: p for e, p in zip(entries, msg.payloads, strict=True)}
        key = (topic, author)
        if msg.flags & RUN_LIVE:
            if key in self._diverged:
                self._release(size)
            elif key in self._requests:  # the pull in progress brings it, or a later one
                self._later[key] = max(self._later.get(key, 0), entries[-1].header.seq)
                self._release(size)
            else:
                self._accept(key, entries, payloads, size, live=True)
            return
        req = self._requests.get(key)
        if req is None:
            raise _remote("unrequested_entries", "RUN for a log we did not request")
        if entries:
            if entries[0].header.seq != req.next or entries[-1].header.seq > req.end:
                raise _remote("unrequested_entries", "RUN outside the requested range")
            req.next = entries[-1].header.seq + 1
        if not entries or key in self._diverged:
            ours = self._evidence.get(key)
            if ours is not None and entries:
                i = ours.header.seq - entries[0].header.seq
                if 0 <= i < len(entries) and entries[i].id != ours.id:
                    del self._evidence[key]
                    self._conflict(key, ours, entries[i])
            self._release(size)
        else:
            self._accept(key, entries, payloads, size, live=False)
        if msg.flags & RUN_FINAL:
            del self._requests[key]
            self._open_requests[topic] -= 1
            if (req.next <= req.end and key not in self._diverged
                    and self._gap_seen.get(key) != req.end):
                # Answered short of what the peer's reconciliation promised: let a
                # round find out what is really there (once per promised height).
                self._gap_seen[key] = req.end
                self._want_round(topic)
            later = self._later.pop(key, 0)
            if later and key not in self._diverged:
                self._want_entries(topic, [(author, later, None)])
            self._ask_evidence(key)
            self._check_synced(topic)

    def _accept(self, key: _Log, entries: list[Entry], payloads: dict[bytes, bytes | None],
                size: int, *, live: bool) -> None:
        topic, author = key
        head = self._vhead(key)
        have = 0 if head is None else head.header.seq
        first = entries[0].header.seq
        if first <= have:
            assert head is not None
            if entries[-1].header.seq >= have:
                same_seq = entries[have - first]
                if same_seq.id != head.id:
                    self._conflict(key, head, same_seq)
                    self._release(size)
                    return
            if live:
                self.stats.live_duplicates += min(len(entries), have - first + 1)
            entries = entries[have - first + 1:]
            if not entries:
                self._release(size)
                return
            first = entries[0].header.seq
        if first > have + 1:  # a gap: ask for what is missing instead
            self._release(size)
            if live:
                self._want_entries(topic, [(author, entries[-1].header.seq, None)])
            else:
                self._later[key] = max(self._later.get(key, 0), entries[-1].header.seq)
            return
        if head is not None and entries[0].header.backlink != head.id:
            self._check_signature(entries[0])
            self._diverged.add(key)
            self._events.append(ev.LogDiverged(topic, author, first, entries[0]))
            # The author forked at or below our head's seq: the peer's entry at that
            # seq conflicts with our head. Fetch it to build a full fork proof.
            self._evidence[key] = head
            self._ask_evidence(key)
            self._release(size)
            return
        try:
            verify_run(head, entries)
        except ValidationError as exc:
            code = "bad_signature" if exc.reason == Reason.BAD_SIGNATURE else "bad_link"
            raise _remote(code, exc.detail) from exc
        kept: dict[bytes, bytes] = {}
        for e in entries:
            p = payloads[e.id]
            if p is not None:
                try:
                    verify_payload(e.header, p)
                except ValidationError as exc:
                    raise _remote("payload_mismatch", exc.detail) from exc
                kept[e.id] = p
        self._pending_heads[key] = entries[-1]
        token = next(self._token_ids)
        self._tokens[token] = (size, key, entries[-1].id)
        self.stats.entries_received += len(entries)
        self._events.append(ev.EntriesReceived(tuple(entries), kept, token, live))

    @staticmethod
    def _check_signature(entry: Entry) -> None:
        try:
            verify_signature(entry)
        except ValidationError as exc:
            raise _remote("bad_signature", exc.detail) from exc

    def _conflict(self, key: _Log, head: Entry, other: Entry) -> None:
        """The peer's entry at our head's seq differs from our head: a fork."""
        self._check_signature(other)
        self._diverged.add(key)
        proof = ForkProof.of(head, other)
        try:
            verify_fork_proof(proof)
        except ValidationError:
            # Our own head's signature is unverified (chain verification) and bad:
            # the author misbehaved either way; report divergence without a proof.
            self._events.append(ev.LogDiverged(key[0], key[1], other.header.seq, other))
            return
        self._events.append(ev.ForkProofReceived(proof))
        if key[0] in self._granted:
            # The peer holds the other branch and may not know: tell it.
            self._emit(ForkProofMsg(proof.to_bytes()).encode())

    def _cmd_applied(self, command: cmd.Command) -> None:
        assert isinstance(command, cmd.EntriesApplied)
        found = self._tokens.pop(command.token, None)
        if found is None:
            raise LocalProtocolError(f"unknown or already applied token {command.token}")
        size, key, last_id = found
        self._release(size)
        if key is not None:
            pending = self._pending_heads.get(key)
            if pending is not None and pending.id == last_id:
                del self._pending_heads[key]

    # ------------------------------------------------------------------ live push

    def _cmd_offer(self, command: cmd.Command) -> None:
        assert isinstance(command, cmd.Offer)
        if self._state is not State.ESTABLISHED:
            return
        logs: dict[_Log, dict[int, Entry]] = {}
        for e in command.entries:
            if e.header.topic in self._granted:
                logs.setdefault((e.header.topic, e.header.author), {})[e.header.seq] = e
        self._check_payloads([e for log in logs.values() for e in log.values()],
                             command.payloads)
        for (topic, author), by_seq in sorted(logs.items()):
            run: list[Entry] = []
            for seq in sorted(by_seq):
                if run and seq != run[-1].header.seq + 1:
                    self._offer_run(topic, author, run, command.payloads)
                    run = []
                run.append(by_seq[seq])
            self._offer_run(topic, author, run, command.payloads)

    def _offer_run(self, topic: bytes, author: bytes, run: list[Entry],
                   payloads: Mapping[bytes, bytes]) -> None:
        if self.stats.send_queue_bytes > self.config.max_send_queue:
            self.stats.live_dropped += len(run)
            self._overflowed.add(topic)  # reconciled once the queue has drained
            return
        self.stats.entries_sent += len(run)
        self._queue_runs(topic, author, run, payloads, 0, live=True)

    # ------------------------------------------------------------------ payloads

    def _cmd_request_payloads(self, command: cmd.Command) -> None:
        assert isinstance(command, cmd.RequestPayloads)
        self._require_established()
        by_topic: dict[bytes, list[bytes]] = {}
        for e in command.entries:
            if e.header.topic in self._peer_granted and e.id not in self._asked_payloads:
                self._asked_payloads[e.id] = e
                by_topic.setdefault(e.header.topic, []).append(e.id)
        for topic, ids in sorted(by_topic.items()):
            for i in range(0, len(ids), _REQUEST_BATCH):
                self._emit(PayloadRequest(topic, tuple(ids[i:i + _REQUEST_BATCH])).encode())

    def _on_payload_request(self, msg: Message, size: int) -> None:
        assert isinstance(msg, PayloadRequest)
        if msg.topic not in self._granted:
            raise _remote("unexpected_topic", "PAYLOAD_REQUEST for a topic not granted")
        for pid in msg.ids:
            if pid in self._peer_payload_asks:
                raise _remote("duplicate_request", "payload already requested")
        if len(self._peer_payload_asks) + len(msg.ids) > self.config.max_payload_requests:
            raise _remote("too_many_requests", "too many outstanding payload requests")
        for pid in msg.ids:
            self._peer_payload_asks[pid] = msg.topic
        self._events.append(ev.PayloadsNeeded(msg.topic, msg.ids))

    def _cmd_send_payloads(self, command: cmd.Command) -> None:
        assert isinstance(command, cmd.SendPayloads)
        self._require_established()
        headers = {e.id: e for e in command.entries}
        by_topic: dict[bytes, list[tuple[bytes, bytes | None]]] = {}
        for pid, data in command.payloads.items():
            topic = self._peer_payload_asks.get(pid)
            if topic is None:
                raise LocalProtocolError("SendPayloads for an id the peer did not ask for")
            if data is not None:
                header = headers.get(pid)
                if header is None or header.header.topic != topic:
                    raise LocalProtocolError("SendPayloads: no header of the asked topic")
                try:
                    verify_payload(header.header, data)
                except ValidationError as exc:
                    raise LocalProtocolError(f"payload does not match its entry: {exc}") from exc
            by_topic.setdefault(topic, []).append((pid, data))
        for pid in command.payloads:
            del self._peer_payload_asks[pid]
        for topic, items in sorted(by_topic.items()):
            chunk: list[tuple[bytes, bytes | None]] = []
            size = 0
            for pid, data in items:
                cost = 40 + (len(data) if data is not None else 0)
                if chunk and size + cost > self.config.run_target_bytes:
                    self._emit_credited(Payloads(topic, tuple(chunk)).encode())
                    chunk, size = [], 0
                chunk.append((pid, data))
                size += cost
            self._emit_credited(Payloads(topic, tuple(chunk)).encode())

    def _on_payloads(self, msg: Message, size: int) -> None:
        assert isinstance(msg, Payloads)
        self._take_credit(size)
        if msg.topic not in self._peer_granted:
            raise _remote("unexpected_topic", "PAYLOADS of a topic the peer does not serve us")
        got: dict[bytes, bytes] = {}
        missing: list[bytes] = []
        seen: set[bytes] = set()
        for pid, data in msg.items:
            entry = self._asked_payloads.get(pid)
            if entry is None or entry.header.topic != msg.topic or pid in seen:
                raise _remote("unrequested_payload", "PAYLOADS holds an id we did not ask for")
            seen.add(pid)
            if data is None:
                missing.append(pid)
                continue
            try:
                verify_payload(entry.header, data)
            except ValidationError as exc:
                raise _remote("payload_mismatch", exc.detail) from exc
            got[pid] = data
        for pid in seen:
            del self._asked_payloads[pid]
        token = next(self._token_ids)
        self._tokens[token] = (size, None, None)
        self._events.append(ev.PayloadsReceived(msg.topic, got, tuple(missing), token))

    # ------------------------------------------------------------------ forks, ping, close

    def _cmd_fork_proof(self, command: cmd.Command) -> None:
        assert isinstance(command, cmd.SendForkProof)
        if self._state is State.ESTABLISHED and command.proof.first.header.topic in self._granted:
            self._emit(ForkProofMsg(command.proof.to_bytes()).encode())

    def _on_fork_proof(self, msg: Message, size: int) -> None:
        assert isinstance(msg, ForkProofMsg)
        try:
            proof = decode_fork_proof(msg.proof)
        except ValidationError as exc:
            raise _remote("bad_fork_proof", exc.detail) from exc
        topic = proof.first.header.topic
        if topic not in self._peer_granted:
            raise _remote("unexpected_topic", "fork proof of a topic the peer does not serve us")
        self._diverged.add((topic, proof.first.header.author))
        self._events.append(ev.ForkProofReceived(proof))

    def _on_ping(self, msg: Message, size: int) -> None:
        assert isinstance(msg, Ping)
        self._emit(Pong(msg.nonce).encode())

    def _on_pong(self, msg: Message, size: int) -> None:
        assert isinstance(msg, Pong)  # any frame already counts as liveness

    def _on_blob(self, msg: Message, size: int) -> None:
        assert isinstance(msg, BlobPiece)
        self._events.append(ev.BlobData(msg.data))

    def encode_blob(self, data: bytes | memoryview | Sequence[bytes | memoryview]) -> bytes:
        """Wrap blob-transfer stream bytes in BLOB frames and return them (not queued).

        ``data`` is one buffer or several in stream order (each is cut into frames
        on its own, so a frame never spans two). The caller (the node's session
        writer) interleaves these frames with :meth:`data_to_send`, sync bytes
        first, so attachment bytes never delay log replication by more than one
        :data:`MAX_BLOB_PIECE` frame. Raises :class:`LocalProtocolError` unless
        the session is established.
        """
        self._require_established()
        # Bulk path: each frame is length + canonical CBOR head + a view of the
        # data (the bytes of encode_frame(BlobPiece(piece).encode()), tested), and
        # the frames are joined once: one copy of the data instead of four.
        buffers = [data] if isinstance(data, bytes | bytearray | memoryview) else data
        parts: list[bytes | memoryview] = []
        for buffer in buffers:
            view = memoryview(buffer)
            for i in range(0, len(view), MAX_BLOB_PIECE):
                piece = view[i:i + MAX_BLOB_PIECE]
                head = _BLOB_HEAD + canonical_bstr_head(len(piece))
                size = FRAME_HEADER_SIZE + len(head) + len(piece)
                parts += ((size - FRAME_HEADER_SIZE).to_bytes(FRAME_HEADER_SIZE, "big"),
                          head, piece)
                self.stats.bytes_sent += size
                self.stats.frames_sent += 1
                _count(self.stats.sent_by_type, "BLOB", size)
        return b"".join(parts)

    def _on_close(self, msg: Message, size: int) -> None:
        assert isinstance(msg, Close)
        self._close(Trigger.RECV_CLOSE, "peer_closed", send=False, detail=msg.reason)

    def _cmd_close(self, command: cmd.Command) -> None:
        assert isinstance(command, cmd.Close)
        self._close(Trigger.CLOSE, "closed", send=True, detail=command.reason[:200])

    def _require_established(self) -> None:
        if self._state is not State.ESTABLISHED:
            raise LocalProtocolError(f"command needs an established session, not {self._state}")


_HANDLERS = {
    MsgType.HELLO: SyncConnection._on_hello,
    MsgType.GRANT: SyncConnection._on_grant,
    MsgType.RECON: SyncConnection._on_recon,
    MsgType.REQUEST: SyncConnection._on_request,
    MsgType.RUN: SyncConnection._on_run,
    MsgType.CREDIT: SyncConnection._on_credit,
    MsgType.PAYLOAD_REQUEST: SyncConnection._on_payload_request,
    MsgType.PAYLOADS: SyncConnection._on_payloads,
    MsgType.FORK_PROOF: SyncConnection._on_fork_proof,
    MsgType.PING: SyncConnection._on_ping,
    MsgType.PONG: SyncConnection._on_pong,
    MsgType.CLOSE: SyncConnection._on_close,
    MsgType.RESYNC: SyncConnection._on_resync,
    MsgType.INTEREST: SyncConnection._on_interest,
    MsgType.INTEREST_GRANT: SyncConnection._on_interest_grant,
    MsgType.BLOB: SyncConnection._on_blob,
}

_COMMANDS = {
    cmd.SendEntries: SyncConnection._cmd_send_entries,
    cmd.EntriesApplied: SyncConnection._cmd_applied,
    cmd.Offer: SyncConnection._cmd_offer,
    cmd.RequestPayloads: SyncConnection._cmd_request_payloads,
    cmd.SendPayloads: SyncConnection._cmd_send_payloads,
    cmd.SendForkProof: SyncConnection._cmd_fork_proof,
    cmd.Close: SyncConnection._cmd_close,
    cmd.AddInterest: SyncConnection._cmd_add_interest,
}
