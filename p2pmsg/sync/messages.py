"""The sync protocol's messages: type codes, fields, encoding and strict decoding.

Every frame body is a canonical CBOR array whose first element is the message type
(:class:`MsgType`); docs/protocol-sync.md has the full table. :func:`decode_message`
checks types, sizes and orderings of every field and raises only
:class:`~p2pmsg.errors.RemoteProtocolError` (with a stable ``reason`` code), so the
connection can hand it anything a peer sent. Semantic checks that need session
state (was this requested? is this topic granted?) live in connection.py.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from typing import Any

from .. import _cbor
from ..entry import HASH_SIZE, MAX_ENTRY_SIZE, MAX_PAYLOAD_SIZE, MAX_SEQ, TOPIC_SIZE
from ..errors import DecodeError, Reason, RemoteProtocolError
from .frames import MAX_FRAME_SIZE, canonical_bstr_tail

__all__ = [
    "MAX_BLOB_PIECE",
    "BlobPiece",
    "FINGERPRINT_SIZE",
    "MAX_BOUND_SIZE",
    "MAX_CLOSE_TEXT",
    "MAX_TOPICS",
    "PROTOCOL_VERSION",
    "RUN_FINAL",
    "RUN_LIVE",
    "Close",
    "Credit",
    "ForkProofMsg",
    "Grant",
    "Hello",
    "Interest",
    "InterestGrant",
    "Item",
    "Message",
    "MsgType",
    "PayloadRequest",
    "Payloads",
    "Ping",
    "Pong",
    "Range",
    "RangeMode",
    "Recon",
    "Request",
    "Resync",
    "Run",
    "decode_message",
]

PROTOCOL_VERSION = 1
MAX_TOPICS = 4096
"""At most this many topics in one HELLO or GRANT."""
FINGERPRINT_SIZE = 16
MAX_BOUND_SIZE = 32
"""A range bound is a (prefix of an) author key: 1..32 bytes, or null for +infinity."""
MAX_CLOSE_TEXT = 200
MAX_BLOB_PIECE = 1 << 16
"""Bytes of blob-transfer stream per BLOB frame (small, so sync frames interleave)."""
MAX_CREDIT = 1 << 40
RUN_LIVE = 1
"""Run flag: a live push of new entries (not an answer to a REQUEST)."""
RUN_FINAL = 2
"""Run flag: the last run answering a REQUEST (the request is closed)."""


class MsgType(enum.IntEnum):
    """Message type codes (the first element of every frame body). Never reused."""

    HELLO = 0
    GRANT = 1
    RECON = 2
    REQUEST = 3
    RUN = 4
    CREDIT = 5
    PAYLOAD_REQUEST = 6
    PAYLOADS = 7
    FORK_PROOF = 8
    PING = 9
    PONG = 10
    CLOSE = 11
    RESYNC = 12
    INTEREST = 13
    INTEREST_GRANT = 14
    BLOB = 15


class RangeMode(enum.IntEnum):
    """What a reconciliation range carries."""

    SKIP = 0
    """Nothing to do in this range (sides agree, or already handled)."""
    FINGERPRINT = 1
    """The sender's fingerprint of the range; the receiver compares and answers."""
    ITEMS = 2
    """The sender's complete item list for the range; answer with what I lack."""
    ITEMS_FINAL = 3
    """Items where the sender is ahead (or all, when pushed one-way); no answer."""


def _fail(reason: str, message: str) -> RemoteProtocolError:
    return RemoteProtocolError(reason, message)


def _is_bytes(v: object, size: int) -> bool:
    return type(v) is bytes and len(v) == size


def _is_uint(v: object, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v <= hi


@dataclass(frozen=True, slots=True)
class Hello:
    """First message of each side: who I am and what I ask for."""

    version: int
    node_id: bytes
    topics: tuple[bytes, ...]
    credit: int
    """Bytes of run/payload frames the sender is willing to have in flight to it."""

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.HELLO.value, self.version, self.node_id, list(self.topics),
                            self.credit])


@dataclass(frozen=True, slots=True)
class Grant:
    """Answer to HELLO: the topics of the peer's request this side will serve."""

    topics: tuple[bytes, ...]

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.GRANT.value, list(self.topics)])


@dataclass(frozen=True, slots=True)
class Item:
    """One log in reconciliation: its author, height and head entry id."""

    author: bytes
    height: int
    head_id: bytes

    def to_wire(self) -> list[Any]:
        return [self.author, self.height, self.head_id]


@dataclass(frozen=True, slots=True)
class Range:
    """A range [previous upper, upper) of author keys and what it carries."""

    upper: bytes | None
    """Exclusive upper bound (an author key prefix); None = +infinity."""
    mode: RangeMode
    fingerprint: bytes = b""
    items: tuple[Item, ...] = ()

    def to_wire(self) -> list[Any]:
        if self.mode == RangeMode.SKIP:
            data: Any = None
        elif self.mode == RangeMode.FINGERPRINT:
            data = self.fingerprint
        else:
            data = [i.to_wire() for i in self.items]
        return [self.upper, int(self.mode), data]


@dataclass(frozen=True, slots=True)
class Recon:
    """One frame of a reconciliation turn for a topic; ``more`` = turn continues."""

    topic: bytes
    more: bool
    ranges: tuple[Range, ...]

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.RECON.value, self.topic, int(self.more),
                            [r.to_wire() for r in self.ranges]])


@dataclass(frozen=True, slots=True)
class Request:
    """Ask for entries ``start..end`` (inclusive) of some logs of one topic."""

    topic: bytes
    ranges: tuple[tuple[bytes, int, int], ...]

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.REQUEST.value, self.topic, [list(r) for r in self.ranges]])


@dataclass(frozen=True, slots=True)
class Run:
    """Contiguous entries of one log (wire bytes), with optional payloads."""

    topic: bytes
    author: bytes
    flags: int
    entries: tuple[bytes, ...]
    payloads: tuple[bytes | None, ...]

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.RUN.value, self.topic, self.author, self.flags,
                            list(self.entries), list(self.payloads)])


@dataclass(frozen=True, slots=True)
class Credit:
    """Return ``amount`` bytes of flow-control credit to the peer."""

    amount: int

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.CREDIT.value, self.amount])


@dataclass(frozen=True, slots=True)
class PayloadRequest:
    """Ask for the payloads of entries (by id) of one topic."""

    topic: bytes
    ids: tuple[bytes, ...]

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.PAYLOAD_REQUEST.value, self.topic, list(self.ids)])


@dataclass(frozen=True, slots=True)
class Payloads:
    """Answers to a PAYLOAD_REQUEST: bytes, or null = unavailable (erased/missing)."""

    topic: bytes
    items: tuple[tuple[bytes, bytes | None], ...]

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.PAYLOADS.value, self.topic, [list(i) for i in self.items]])


@dataclass(frozen=True, slots=True)
class ForkProofMsg:
    """A fork proof (two conflicting signed entries) in its canonical encoding."""

    proof: bytes

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.FORK_PROOF.value, self.proof])


@dataclass(frozen=True, slots=True)
class Ping:
    nonce: int

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.PING.value, self.nonce])


@dataclass(frozen=True, slots=True)
class Pong:
    nonce: int

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.PONG.value, self.nonce])


@dataclass(frozen=True, slots=True)
class Close:
    """Orderly close, or the reason code of a protocol error seen by the sender."""

    reason: str
    detail: str = ""

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.CLOSE.value, self.reason, self.detail])


@dataclass(frozen=True, slots=True)
class Resync:
    """Ask the peer to open a new reconciliation round for these topics.

    Sent by the side that does not open rounds (the responder of a mutual topic,
    the receiver of a one-way topic) when it suspects a difference: a request the
    peer answered short, or live entries dropped by its own send queue.
    """

    topics: tuple[bytes, ...]

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.RESYNC.value, list(self.topics)])


@dataclass(frozen=True, slots=True)
class Interest:
    """Ask, inside an established session, for more topics than the HELLO did.

    The sender's interest grew at run time (``Node.add_topics``). The receiver
    answers every INTEREST, in order, with one :class:`InterestGrant`; a topic
    already granted to the sender may not be asked again (one it was denied may:
    the policy is asked again).
    """

    topics: tuple[bytes, ...]

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.INTEREST.value, list(self.topics)])


@dataclass(frozen=True, slots=True)
class InterestGrant:
    """Answer to the oldest unanswered INTEREST: the subset its policy grants."""

    topics: tuple[bytes, ...]

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.INTEREST_GRANT.value, list(self.topics)])


@dataclass(frozen=True, slots=True)
class BlobPiece:
    """A piece of the session's blob-transfer byte stream (docs/attachments.md §6).

    Attachments travel inside the sync session: each side runs one
    :class:`p2pmsg.blobs.BlobTransfer` per session and its output bytes are cut
    into BLOB frames of at most :data:`MAX_BLOB_PIECE` bytes. The blob machine has
    its own request credit; the sync machine only carries the bytes.
    """

    data: bytes

    def encode(self) -> bytes:
        return _cbor.dumps([MsgType.BLOB.value, self.data])


Message = (Hello | Grant | Recon | Request | Run | Credit | PayloadRequest | Payloads
           | ForkProofMsg | Ping | Pong | Close | Resync | Interest | InterestGrant
           | BlobPiece)


_BLOB_PREFIX = bytes([0x82, MsgType.BLOB.value])
"""Canonical CBOR of a BLOB frame up to its data: array(2), type code 15."""


def decode_message(body: bytes) -> Message:
    """Parse one frame body. Raises only RemoteProtocolError."""
    if body[:2] == _BLOB_PREFIX:  # bulk attachment bytes: skip decode + re-encode
        data = canonical_bstr_tail(body, 2)
        if data is not None:
            return _blob([data])
    try:
        value = _cbor.loads_canonical(body, "frame", MAX_FRAME_SIZE)
    except DecodeError as exc:
        code = "non_canonical" if exc.reason == Reason.NON_CANONICAL else "malformed_frame"
        raise _fail(code, exc.detail) from exc
    if type(value) is not list or not value or type(value[0]) is not int:
        raise _fail("malformed_frame", "a frame is an array starting with a type code")
    try:
        kind = MsgType(value[0])
    except ValueError:
        raise _fail("unknown_message", f"message type {value[0]}") from None
    fields = value[1:]
    decoder = _DECODERS[kind]
    if len(fields) != decoder[0]:
        raise _fail("malformed_frame", f"{kind.name}: expected {decoder[0]} fields")
    message: Message = decoder[1](fields)
    return message


def _topics(v: object, what: str) -> tuple[bytes, ...]:
    if type(v) is not list or len(v) > MAX_TOPICS:
        raise _fail("malformed_frame", f"{what}: topics must be an array of <= {MAX_TOPICS}")
    if not all(_is_bytes(t, TOPIC_SIZE) for t in v):
        raise _fail("malformed_frame", f"{what}: every topic is {TOPIC_SIZE} bytes")
    if any(a >= b for a, b in itertools.pairwise(v)):
        raise _fail("malformed_frame", f"{what}: topics must be sorted and unique")
    return tuple(v)


def _topic(v: object, what: str) -> bytes:
    if not _is_bytes(v, TOPIC_SIZE):
        raise _fail("malformed_frame", f"{what}: topic must be {TOPIC_SIZE} bytes")
    assert isinstance(v, bytes)
    return v


def _hello(f: list[Any]) -> Hello:
    version, node_id, topics, credit = f
    if type(version) is not int or version < 0:
        raise _fail("malformed_frame", "HELLO: version")
    if not _is_bytes(node_id, 32):
        raise _fail("malformed_frame", "HELLO: node id must be 32 bytes")
    if not _is_uint(credit, 0, MAX_CREDIT):
        raise _fail("bad_credit", "HELLO: credit out of range")
    return Hello(version, node_id, _topics(topics, "HELLO"), credit)


def _grant(f: list[Any]) -> Grant:
    return Grant(_topics(f[0], "GRANT"))


def _item(v: object) -> Item:
    if (type(v) is not list or len(v) != 3 or not _is_bytes(v[0], 32)
            or not _is_uint(v[1], 1, MAX_SEQ) or not _is_bytes(v[2], HASH_SIZE)):
        raise _fail("bad_range", "RECON: an item is [author(32), height>=1, head id(32)]")
    return Item(v[0], v[1], v[2])


def _range(v: object) -> Range:
    if type(v) is not list or len(v) != 3:
        raise _fail("bad_range", "RECON: a range is [upper, mode, data]")
    upper, mode, data = v
    if upper is not None and not (type(upper) is bytes and 1 <= len(upper) <= MAX_BOUND_SIZE):
        raise _fail("bad_range", "RECON: a bound is 1..32 bytes or null")
    if type(mode) is not int or mode not in (0, 1, 2, 3):
        raise _fail("bad_range", "RECON: unknown range mode")
    m = RangeMode(mode)
    if m == RangeMode.SKIP:
        if data is not None:
            raise _fail("bad_range", "RECON: SKIP carries null")
        return Range(upper, m)
    if m == RangeMode.FINGERPRINT:
        if not _is_bytes(data, FINGERPRINT_SIZE):
            raise _fail("bad_range", "RECON: fingerprint size")
        return Range(upper, m, fingerprint=data)
    if type(data) is not list:
        raise _fail("bad_range", "RECON: items must be an array")
    items = tuple(_item(i) for i in data)
    if any(a.author >= b.author for a, b in itertools.pairwise(items)):
        raise _fail("bad_range", "RECON: items must be sorted by author, unique")
    return Range(upper, m, items=items)


def _recon(f: list[Any]) -> Recon:
    topic, more, ranges = f
    if more not in (0, 1) or type(more) is not int:
        raise _fail("malformed_frame", "RECON: more flag is 0 or 1")
    if type(ranges) is not list:
        raise _fail("malformed_frame", "RECON: ranges must be an array")
    parsed = tuple(_range(r) for r in ranges)
    for i, r in enumerate(parsed):
        if r.upper is None and i != len(parsed) - 1:
            raise _fail("bad_range", "RECON: only the last range may be unbounded")
        if i and r.upper is not None:
            prev = parsed[i - 1].upper
            assert prev is not None
            if r.upper <= prev:
                raise _fail("bad_range", "RECON: bounds must increase")
    return Recon(_topic(topic, "RECON"), bool(more), parsed)


def _request(f: list[Any]) -> Request:
    topic, ranges = f
    if type(ranges) is not list or not ranges:
        raise _fail("malformed_frame", "REQUEST: ranges must be a non-empty array")
    out: list[tuple[bytes, int, int]] = []
    for r in ranges:
        if (type(r) is not list or len(r) != 3 or not _is_bytes(r[0], 32)
                or not _is_uint(r[1], 1, MAX_SEQ) or not _is_uint(r[2], 1, MAX_SEQ)
                or r[2] < r[1]):
            raise _fail("malformed_frame", "REQUEST: a range is [author(32), start, end>=start]")
        out.append((r[0], r[1], r[2]))
    return Request(_topic(topic, "REQUEST"), tuple(out))


def _run(f: list[Any]) -> Run:
    topic, author, flags, entries, payloads = f
    if not _is_bytes(author, 32):
        raise _fail("malformed_frame", "RUN: author must be 32 bytes")
    if not _is_uint(flags, 0, RUN_LIVE | RUN_FINAL):
        raise _fail("malformed_frame", "RUN: unknown flags")
    if type(entries) is not list or type(payloads) is not list or len(entries) != len(payloads):
        raise _fail("malformed_frame", "RUN: entries and payloads are arrays of equal length")
    if not entries and not flags & RUN_FINAL:
        raise _fail("malformed_frame", "RUN: only a final run may be empty")
    if flags & RUN_LIVE and flags & RUN_FINAL:
        raise _fail("malformed_frame", "RUN: a live run is never final")
    for e in entries:
        if type(e) is not bytes or len(e) > MAX_ENTRY_SIZE:
            raise _fail("malformed_entry", "RUN: entry must be bytes within the entry limit")
    for p in payloads:
        if p is not None and (type(p) is not bytes or len(p) > MAX_PAYLOAD_SIZE):
            raise _fail("malformed_frame", "RUN: payload must be bytes or null")
    return Run(_topic(topic, "RUN"), author, flags, tuple(entries), tuple(payloads))


def _credit(f: list[Any]) -> Credit:
    if not _is_uint(f[0], 1, MAX_CREDIT):
        raise _fail("bad_credit", "CREDIT: amount out of range")
    return Credit(f[0])


def _payload_request(f: list[Any]) -> PayloadRequest:
    topic, ids = f
    if type(ids) is not list or not ids or not all(_is_bytes(i, HASH_SIZE) for i in ids):
        raise _fail("malformed_frame", "PAYLOAD_REQUEST: ids are 32-byte entry ids")
    if len(set(ids)) != len(ids):
        raise _fail("malformed_frame", "PAYLOAD_REQUEST: duplicate id")
    return PayloadRequest(_topic(topic, "PAYLOAD_REQUEST"), tuple(ids))


def _payloads(f: list[Any]) -> Payloads:
    topic, items = f
    if type(items) is not list or not items:
        raise _fail("malformed_frame", "PAYLOADS: items must be a non-empty array")
    out: list[tuple[bytes, bytes | None]] = []
    for it in items:
        if (type(it) is not list or len(it) != 2 or not _is_bytes(it[0], HASH_SIZE)
                or not (it[1] is None or type(it[1]) is bytes)):
            raise _fail("malformed_frame", "PAYLOADS: an item is [id(32), bytes|null]")
        out.append((it[0], it[1]))
    return Payloads(_topic(topic, "PAYLOADS"), tuple(out))


def _fork(f: list[Any]) -> ForkProofMsg:
    if type(f[0]) is not bytes:
        raise _fail("malformed_frame", "FORK_PROOF: proof must be bytes")
    return ForkProofMsg(f[0])


def _ping(f: list[Any]) -> Ping:
    if not _is_uint(f[0], 0, (1 << 64) - 1):
        raise _fail("malformed_frame", "PING: nonce")
    return Ping(f[0])


def _pong(f: list[Any]) -> Pong:
    if not _is_uint(f[0], 0, (1 << 64) - 1):
        raise _fail("malformed_frame", "PONG: nonce")
    return Pong(f[0])


def _close(f: list[Any]) -> Close:
    reason, detail = f
    if (type(reason) is not str or type(detail) is not str or len(reason) > MAX_CLOSE_TEXT
            or len(detail) > MAX_CLOSE_TEXT):
        raise _fail("malformed_frame", "CLOSE: reason and detail are short strings")
    return Close(reason, detail)


def _resync(f: list[Any]) -> Resync:
    topics = _topics(f[0], "RESYNC")
    if not topics:
        raise _fail("malformed_frame", "RESYNC: at least one topic")
    return Resync(topics)


def _interest(f: list[Any]) -> Interest:
    topics = _topics(f[0], "INTEREST")
    if not topics:
        raise _fail("malformed_frame", "INTEREST: at least one topic")
    return Interest(topics)


def _interest_grant(f: list[Any]) -> InterestGrant:
    return InterestGrant(_topics(f[0], "INTEREST_GRANT"))


def _blob(f: list[Any]) -> BlobPiece:
    if type(f[0]) is not bytes or not 1 <= len(f[0]) <= MAX_BLOB_PIECE:
        raise _fail("malformed_frame", f"BLOB: 1..{MAX_BLOB_PIECE} bytes")
    return BlobPiece(f[0])


_DECODERS: dict[MsgType, tuple[int, Any]] = {
    MsgType.HELLO: (4, _hello),
    MsgType.GRANT: (1, _grant),
    MsgType.RECON: (3, _recon),
    MsgType.REQUEST: (2, _request),
    MsgType.RUN: (5, _run),
    MsgType.CREDIT: (1, _credit),
    MsgType.PAYLOAD_REQUEST: (2, _payload_request),
    MsgType.PAYLOADS: (2, _payloads),
    MsgType.FORK_PROOF: (1, _fork),
    MsgType.PING: (1, _ping),
    MsgType.PONG: (1, _pong),
    MsgType.CLOSE: (2, _close),
    MsgType.RESYNC: (1, _resync),
    MsgType.INTEREST: (1, _interest),
    MsgType.INTEREST_GRANT: (1, _interest_grant),
    MsgType.BLOB: (1, _blob),
}
