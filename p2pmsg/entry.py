"""Log entries: the header format, its canonical encoding, signing and ids (pure).

Theory of operation
-------------------
A log is the sequence of entries one *author* (a device key) writes to one *topic*
(a room or control stream). Each entry is a **signed header**; the payload travels
and is stored separately, and the header commits to it by BLAKE2b-256 hash and size.
That split is what lets a node delete a payload (retention, erasure) while the log
still verifies.

Wire form of an entry (see docs/protocol.md for the byte-level table)::

    entry_bytes  = header_bytes || signature          (signature: 64 bytes)
    header_bytes = canonical CBOR array [version, author, topic, seq, backlink,
                                         timestamp, payload_hash, payload_size, deps]
    signature    = Ed25519(author, "p2pmsg/entry/v1\\0" || header_bytes)
    entry id     = BLAKE2b-256(entry_bytes)
    backlink     = id of entry seq-1 of the same log (null at seq 1)

Because the id hashes the signature too, a backlink commits to everything about the
previous entry; that is the basis of chain verification (:mod:`p2pmsg.validate`).

Create entries with :func:`create_entry`; parse received bytes with
:func:`decode_entry`; then check them with :mod:`p2pmsg.validate`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import _cbor
from .errors import DecodeError, Reason
from .identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Domain, Identity

__all__ = [
    "FORMAT_VERSION",
    "HASH_SIZE",
    "MAX_DEPS",
    "MAX_ENTRY_SIZE",
    "MAX_HEADER_SIZE",
    "MAX_PAYLOAD_SIZE",
    "TOPIC_SIZE",
    "Entry",
    "Header",
    "create_entry",
    "decode_entry",
    "entry_id",
    "payload_hash",
]

FORMAT_VERSION = 1
HASH_SIZE = 32
TOPIC_SIZE = 32
MAX_DEPS = 16
"""At most this many causal dependencies per entry (sorted, unique)."""
MAX_HEADER_SIZE = 1024
"""Bytes of the encoded (unsigned) header; a maximal valid header is ~720 bytes."""
MAX_ENTRY_SIZE = MAX_HEADER_SIZE + SIGNATURE_SIZE
MAX_PAYLOAD_SIZE = 1 << 20
"""1 MiB. Larger content (attachments) is chunked and content-addressed separately."""
MAX_SEQ = (1 << 63) - 1
MAX_TIMESTAMP = (1 << 64) - 1
_HEADER_FIELDS = 9


def payload_hash(payload: bytes) -> bytes:
    """BLAKE2b-256 of a payload, as committed to by ``Header.payload_hash``."""
    return hashlib.blake2b(payload, digest_size=HASH_SIZE).digest()


def entry_id(entry_bytes: bytes) -> bytes:
    """The entry's id: BLAKE2b-256 of its wire bytes (header bytes, then signature)."""
    return hashlib.blake2b(entry_bytes, digest_size=HASH_SIZE).digest()


@dataclass(frozen=True, slots=True)
class Header:
    """The signed part of an entry. Field order is the wire order."""

    version: int
    """Format version; this implementation writes and accepts :data:`FORMAT_VERSION`."""
    author: bytes
    """32-byte Ed25519 public key of the writing device: the log's owner."""
    topic: bytes
    """32-byte topic id (room or control stream)."""
    seq: int
    """Position in the (author, topic) log, from 1, without gaps."""
    backlink: bytes | None
    """Id of entry ``seq - 1`` of this log; ``None`` exactly when ``seq == 1``."""
    timestamp: int
    """Hybrid logical clock value (:mod:`p2pmsg.hlc`)."""
    payload_hash: bytes
    """BLAKE2b-256 of the payload bytes (ciphertext for room messages)."""
    payload_size: int
    """Length of the payload in bytes, at most :data:`MAX_PAYLOAD_SIZE`."""
    deps: tuple[bytes, ...] = ()
    """Ids of the latest entries of *other* logs of the topic the author had seen."""

    def encode(self) -> bytes:
        """Canonical CBOR bytes of this header (the signing input, minus the domain)."""
        if self.version == FORMAT_VERSION and type(self.version) is int:
            fast = _encode_valid_header(
                self.author, self.topic, self.seq, self.backlink, self.timestamp,
                self.payload_hash, self.payload_size, self.deps,
            )
            if fast is not None:
                return fast
        # Invalid headers (tests build them on purpose) still get a faithful encoding.
        return _cbor.dumps(
            [
                self.version,
                self.author,
                self.topic,
                self.seq,
                self.backlink,
                self.timestamp,
                self.payload_hash,
                self.payload_size,
                list(self.deps),
            ]
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """A signed header as stored and replicated. Immutable; cheap to pass around.

    ``raw`` is the exact header bytes that were signed (kept, not re-encoded, so ids
    and signatures are always computed over what was received).
    """

    header: Header
    signature: bytes
    raw: bytes = field(repr=False)
    id: bytes

    @property
    def log_id(self) -> tuple[bytes, bytes]:
        """(author, topic): the key of the log this entry belongs to."""
        return (self.header.author, self.header.topic)

    @property
    def author(self) -> bytes:
        return self.header.author

    @property
    def topic(self) -> bytes:
        return self.header.topic

    @property
    def seq(self) -> int:
        return self.header.seq

    def to_bytes(self) -> bytes:
        """The wire form: header bytes followed by the 64-byte signature."""
        return self.raw + self.signature

    def signing_input(self) -> bytes:
        return Domain.ENTRY.value + self.raw


def create_entry(  # noqa: PLR0917 - positional API kept for existing callers
    identity: Identity,
    topic: bytes,
    seq: int,
    backlink: bytes | None,
    timestamp: int,
    payload: bytes,
    deps: Iterable[bytes] = (),
) -> Entry:
    """Build and sign the next entry of ``identity``'s log in ``topic``.

    The caller supplies ``seq``/``backlink`` from the log head (the node does this
    for you in ``Node.append``). Raises ``ValueError`` for arguments that would make
    an entry other nodes must reject — a local programming error, not a peer's.
    """
    dep_tuple = tuple(sorted(set(deps)))
    p_hash = payload_hash(payload)
    raw = _encode_valid_header(
        identity.public_key, topic, seq, backlink, timestamp, p_hash, len(payload), dep_tuple
    )
    if raw is not None:  # fast path: every rule holds, so no _header_problem needed
        header = _make_header(
            identity.public_key, topic, seq, backlink, timestamp, p_hash, len(payload), dep_tuple
        )
        signature = identity.sign(Domain.ENTRY, raw)
        return _make_entry(header, signature, raw, entry_id(raw + signature))
    header = Header(
        version=FORMAT_VERSION,
        author=identity.public_key,
        topic=topic,
        seq=seq,
        backlink=backlink,
        timestamp=timestamp,
        payload_hash=p_hash,
        payload_size=len(payload),
        deps=dep_tuple,
    )
    problem = _header_problem(header)
    if problem is not None:
        raise ValueError(f"cannot create entry: {problem[1]}")
    raw = header.encode()
    signature = identity.sign(Domain.ENTRY, raw)
    return Entry(header=header, signature=signature, raw=raw, id=entry_id(raw + signature))


def decode_entry(data: bytes) -> Entry:
    """Parse the wire form of an entry. Checks structure, bounds and canonical form.

    Does **not** check the signature or the log linkage: call
    :func:`p2pmsg.validate.verify_entry` or :func:`p2pmsg.validate.verify_run` next.
    Raises only :class:`DecodeError`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(Reason.MALFORMED, f"entry: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_ENTRY_SIZE:
        raise DecodeError(Reason.TOO_LARGE, f"entry: {len(data)} bytes > limit {MAX_ENTRY_SIZE}")
    if len(data) <= SIGNATURE_SIZE:
        raise DecodeError(Reason.MALFORMED, "entry: shorter than a signature")
    raw, signature = data[:-SIGNATURE_SIZE], data[-SIGNATURE_SIZE:]
    header = _parse_valid_header(raw)
    if header is None:  # not the common valid shape: the general route finds the error
        header = decode_header(raw)
    return _make_entry(header, signature, raw, entry_id(data))


def decode_header(raw: bytes) -> Header:
    """Parse canonical header bytes into a :class:`Header`. Raises only DecodeError."""
    if type(raw) is bytes:
        fast = _parse_valid_header(raw)
        if fast is not None:
            return fast
    return _decode_header_general(raw)


def _decode_header_general(raw: bytes) -> Header:
    """The reference decoder: cbor2 + canonical re-encoding check + field rules."""
    value = _cbor.loads_canonical(raw, "header", MAX_HEADER_SIZE)
    if type(value) is not list or len(value) != _HEADER_FIELDS:
        # A future version may have another arity; say "unknown version" if it says so.
        if type(value) is list and value and type(value[0]) is int and value[0] != FORMAT_VERSION:
            raise DecodeError(Reason.UNKNOWN_VERSION, f"header: version {value[0]}")
        raise DecodeError(Reason.MALFORMED, f"header: expected an array of {_HEADER_FIELDS} fields")
    version, author, topic, seq, backlink, timestamp, p_hash, p_size, deps = value
    if type(version) is not int:
        raise DecodeError(Reason.MALFORMED, "header: version is not an integer")
    if version != FORMAT_VERSION:
        raise DecodeError(Reason.UNKNOWN_VERSION, f"header: version {version}")
    if type(deps) is not list:
        raise DecodeError(Reason.MALFORMED, "header: deps is not an array")
    header = Header(
        version=version,
        author=author,
        topic=topic,
        seq=seq,
        backlink=backlink,
        timestamp=timestamp,
        payload_hash=p_hash,
        payload_size=p_size,
        deps=tuple(deps),
    )
    problem = _header_problem(header)
    if problem is not None:
        raise DecodeError(*problem)
    return header


def _is_hash(value: object, size: int = HASH_SIZE) -> bool:
    return type(value) is bytes and len(value) == size


def _header_problem(h: Header) -> tuple[Reason, str] | None:
    """The first structural rule ``h`` breaks, or None. Shared by create and decode."""
    if h.version != FORMAT_VERSION:
        return Reason.UNKNOWN_VERSION, f"version {h.version}"
    if not _is_hash(h.author, PUBLIC_KEY_SIZE):
        return Reason.MALFORMED, "author must be a 32-byte public key"
    if not _is_hash(h.topic, TOPIC_SIZE):
        return Reason.MALFORMED, "topic must be 32 bytes"
    if type(h.seq) is not int or not 1 <= h.seq <= MAX_SEQ:
        return Reason.MALFORMED, "seq must be an integer from 1"
    if h.seq == 1:
        if h.backlink is not None:
            return Reason.MALFORMED, "seq 1 must have no backlink"
    elif not _is_hash(h.backlink):
        return Reason.MALFORMED, "backlink must be a 32-byte hash after seq 1"
    if type(h.timestamp) is not int or not 0 <= h.timestamp <= MAX_TIMESTAMP:
        return Reason.MALFORMED, "timestamp must be an unsigned 64-bit integer"
    if not _is_hash(h.payload_hash):
        return Reason.MALFORMED, "payload hash must be 32 bytes"
    if type(h.payload_size) is not int or h.payload_size < 0:
        return Reason.MALFORMED, "payload size must be a non-negative integer"
    if h.payload_size > MAX_PAYLOAD_SIZE:
        return Reason.TOO_LARGE, f"payload size {h.payload_size} > limit {MAX_PAYLOAD_SIZE}"
    if len(h.deps) > MAX_DEPS:
        return Reason.TOO_LARGE, f"{len(h.deps)} deps > limit {MAX_DEPS}"
    if not all(_is_hash(d) for d in h.deps):
        return Reason.MALFORMED, "every dep must be a 32-byte entry id"
    if any(a >= b for a, b in zip(h.deps, h.deps[1:], strict=False)):
        return Reason.MALFORMED, "deps must be sorted and unique"
    return None


# --- Fast paths -------------------------------------------------------------------
# create_entry and decode_entry are the per-entry hot paths of append and ingest.
# The general route (cbor2 encode; cbor2 decode + canonical re-encode + field checks
# + frozen-dataclass __init__) costs ~13 us per header; the fixed header layout lets a
# hand-written codec do the same job in a few. Both fast functions are *partial*:
# they handle exactly the valid, canonical headers and return None for everything
# else, which then takes the general route — so errors (and their reasons) always
# come from one place, and the fast path can only ever be stricter, never laxer.
# tests/test_entry_fastpath.py checks both against the general route.

_B32 = b"\x58\x20"  # CBOR head of a 32-byte byte string
_NULL = 0xF6
_ARRAY9 = 0x89
_VERSION1 = 0x01
_ARRAY0 = 0x80
_MIN_HEADER = 1 + 1 + 34 + 34 + 1 + 1 + 1 + 34 + 1 + 1
"""Smallest valid header: seq 1, null backlink, timestamp 0, empty payload, no deps."""
_new = object.__new__
_HDR_SET = tuple(Header.__dict__[name].__set__ for name in Header.__slots__)
_ENT_SET = tuple(Entry.__dict__[name].__set__ for name in Entry.__slots__)
_UINT_MIN = {24: 24, 25: 1 << 8, 26: 1 << 16, 27: 1 << 32}
_UINT_LEN = {24: 1, 25: 2, 26: 4, 27: 8}


def _uint_head(major: int, n: int) -> bytes:
    """Shortest CBOR head for major type ``major`` (0..7 << 5) and argument ``n``."""
    if n < 24:
        return bytes((major | n,))
    if n < 1 << 8:
        return bytes((major | 24, n))
    if n < 1 << 16:
        return bytes((major | 25,)) + n.to_bytes(2, "big")
    if n < 1 << 32:
        return bytes((major | 26,)) + n.to_bytes(4, "big")
    return bytes((major | 27,)) + n.to_bytes(8, "big")


def _is_b32(value: object) -> bool:
    return type(value) is bytes and len(value) == HASH_SIZE


def _encode_valid_header(  # noqa: PLR0917 -- hot path: positional calls are cheaper
    author: object, topic: object, seq: object, backlink: object, timestamp: object,
    p_hash: object, p_size: object, deps: tuple[object, ...],
) -> bytes | None:
    """Canonical bytes of a version-1 header, or None if any field breaks a rule.

    Byte-identical to ``cbor2.dumps([...], canonical=True)`` for every valid header.
    """
    if not (
        _is_b32(author) and _is_b32(topic) and _is_b32(p_hash)
        and type(seq) is int and 1 <= seq <= MAX_SEQ
        and type(timestamp) is int and 0 <= timestamp <= MAX_TIMESTAMP
        and type(p_size) is int and 0 <= p_size <= MAX_PAYLOAD_SIZE
        and len(deps) <= MAX_DEPS
    ):
        return None
    assert isinstance(author, bytes) and isinstance(topic, bytes)  # narrowed above
    assert isinstance(p_hash, bytes)
    if seq == 1:
        if backlink is not None:
            return None
        link = b"\xf6"
    elif _is_b32(backlink):
        assert isinstance(backlink, bytes)
        link = _B32 + backlink
    else:
        return None
    parts = [
        b"\x89\x01\x58\x20", author, _B32, topic, _uint_head(0x00, seq), link,
        _uint_head(0x00, timestamp), _B32, p_hash, _uint_head(0x00, p_size),
        bytes((_ARRAY0 | len(deps),)),
    ]
    prev: bytes | None = None
    for dep in deps:
        if not _is_b32(dep):
            return None
        assert isinstance(dep, bytes)
        if prev is not None and prev >= dep:
            return None
        parts.append(_B32)
        parts.append(dep)
        prev = dep
    return b"".join(parts)


def _parse_valid_header(raw: bytes) -> Header | None:
    """The header ``raw`` encodes if it is a valid, canonical version-1 header; else None."""
    n = len(raw)
    # Fixed prefix: array(9), version 1, author, topic.
    if n < _MIN_HEADER or n > MAX_HEADER_SIZE or raw[0] != _ARRAY9 or raw[1] != _VERSION1:
        return None
    if not (raw.startswith(_B32, 2) and raw.startswith(_B32, 36)):
        return None
    author = raw[4:36]
    topic = raw[38:70]
    # seq
    pos = 70
    ib = raw[pos]
    if ib < 24:
        seq = ib
        pos += 1
    else:
        size = _UINT_LEN.get(ib)
        if size is None:
            return None
        seq = int.from_bytes(raw[pos + 1 : pos + 1 + size], "big")
        if seq < _UINT_MIN[ib] or seq > MAX_SEQ:  # non-shortest or out of range
            return None
        pos += 1 + size
    if seq == 0:
        return None
    # backlink
    backlink: bytes | None
    if seq == 1:
        if raw[pos] != _NULL:
            return None
        backlink = None
        pos += 1
    else:
        if not raw.startswith(_B32, pos):
            return None
        backlink = raw[pos + 2 : pos + 34]
        pos += 34
    # timestamp (may need all 8 bytes; the length check below catches truncation)
    if pos >= n:
        return None
    ib = raw[pos]
    if ib < 24:
        timestamp = ib
        pos += 1
    else:
        size = _UINT_LEN.get(ib)
        if size is None:
            return None
        timestamp = int.from_bytes(raw[pos + 1 : pos + 1 + size], "big")
        if timestamp < _UINT_MIN[ib]:
            return None
        pos += 1 + size
    # payload hash
    if not raw.startswith(_B32, pos):
        return None
    p_hash = raw[pos + 2 : pos + 34]
    pos += 34
    # payload size
    if pos >= n:
        return None
    ib = raw[pos]
    if ib < 24:
        p_size = ib
        pos += 1
    else:
        size = _UINT_LEN.get(ib)
        if size is None or size == 8:
            return None
        p_size = int.from_bytes(raw[pos + 1 : pos + 1 + size], "big")
        if p_size < _UINT_MIN[ib] or p_size > MAX_PAYLOAD_SIZE:
            return None
        pos += 1 + size
    # deps: array(k), k <= MAX_DEPS (< 24, so a one-byte head), sorted unique ids
    if pos >= n:
        return None
    count = raw[pos] - _ARRAY0
    pos += 1
    if not 0 <= count <= MAX_DEPS or n != pos + 34 * count:
        return None
    deps: tuple[bytes, ...] = ()
    if count:
        dep_list = []
        prev = b""
        for _ in range(count):
            if not raw.startswith(_B32, pos):
                return None
            dep = raw[pos + 2 : pos + 34]
            if dep <= prev:
                return None
            dep_list.append(dep)
            prev = dep
            pos += 34
        deps = tuple(dep_list)
    # Every slice above was in range: the total length equals pos exactly, and the
    # reads before it only ever consumed bytes that exist (else n != pos + 34k).
    return _make_header(author, topic, seq, backlink, timestamp, p_hash, p_size, deps)


def _make_header(  # noqa: PLR0917 -- hot path: positional calls are cheaper
    author: bytes, topic: bytes, seq: int, backlink: bytes | None, timestamp: int,
    p_hash: bytes, p_size: int, deps: tuple[bytes, ...],
) -> Header:
    """A version-1 :class:`Header` of already-checked fields, without ``__init__`` overhead."""
    header: Header = _new(Header)
    s_ver, s_aut, s_top, s_seq, s_back, s_ts, s_ph, s_ps, s_deps = _HDR_SET
    s_ver(header, FORMAT_VERSION)
    s_aut(header, author)
    s_top(header, topic)
    s_seq(header, seq)
    s_back(header, backlink)
    s_ts(header, timestamp)
    s_ph(header, p_hash)
    s_ps(header, p_size)
    s_deps(header, deps)
    return header


def _make_entry(header: Header, signature: bytes, raw: bytes, eid: bytes) -> Entry:
    """An :class:`Entry` without the frozen-dataclass ``__init__`` overhead."""
    entry: Entry = _new(Entry)
    s_header, s_sig, s_raw, s_id = _ENT_SET
    s_header(entry, header)
    s_sig(entry, signature)
    s_raw(entry, raw)
    s_id(entry, eid)
    return entry
