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
    """BLAKE2b-256 of the signed header bytes: the entry's id."""
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


def create_entry(
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
    header = Header(
        version=FORMAT_VERSION,
        author=identity.public_key,
        topic=topic,
        seq=seq,
        backlink=backlink,
        timestamp=timestamp,
        payload_hash=payload_hash(payload),
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
    header = decode_header(raw)
    return Entry(header=header, signature=signature, raw=raw, id=entry_id(data))


def decode_header(raw: bytes) -> Header:
    """Parse canonical header bytes into a :class:`Header`. Raises only DecodeError."""
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
