"""The one exception hierarchy of p2pmsg.

Every error the library raises on purpose derives from :class:`P2PMsgError`, so an
application can catch the library's failures without catching its own bugs::

    P2PMsgError
    ├── ValidationError            input failed a check; ``.reason`` says which
    │   ├── DecodeError            bytes are not a well-formed, canonical object
    │   ├── ForkError              an author signed two entries at one position
    │   └── CertificateError       a device certificate does not verify
    ├── KeyFileError               a key file is missing, corrupt or too readable
    ├── StoreError                 the store refused an operation
    │   └── StoreCorruptError      the database file is damaged or not ours
    ├── LocalProtocolError         *you* called the sync machine wrongly
    ├── RemoteProtocolError        the *peer* broke the sync protocol
    └── TransportError             a connection failed or a peer key mismatched

Third-party exceptions (cbor2, nacl, sqlite3) are translated at the boundary:
``raise DecodeError(...) from exc``. Error messages never contain key material or
message content.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .forks import ForkProof

__all__ = [
    "CertificateError",
    "DecodeError",
    "ForkError",
    "KeyFileError",
    "LocalProtocolError",
    "P2PMsgError",
    "Reason",
    "RemoteProtocolError",
    "StoreCorruptError",
    "StoreError",
    "TransportError",
    "ValidationError",
]


class Reason(enum.Enum):
    """Stable reason codes carried by :class:`ValidationError` (and logged in audits).

    The string values are part of the public contract: they appear in logs, audit
    events and protocol error frames, and never change meaning.
    """

    MALFORMED = "malformed"
    """The bytes are not the expected CBOR structure (types, lengths, trailing data)."""
    NON_CANONICAL = "non_canonical"
    """Well-formed CBOR, but not the one canonical encoding of its value."""
    TOO_LARGE = "too_large"
    """A size bound was exceeded (header, payload, dependency count, frame)."""
    UNKNOWN_VERSION = "unknown_version"
    """A format version this implementation does not know."""
    BAD_SIGNATURE = "bad_signature"
    """An Ed25519 signature does not verify under the claimed key and domain."""
    SEQ_GAP = "seq_gap"
    """The sequence number does not directly follow the previous entry of the log."""
    BACKLINK_MISMATCH = "backlink_mismatch"
    """The backlink is not the id of the previous entry of the log."""
    PAYLOAD_MISMATCH = "payload_mismatch"
    """A payload's size or BLAKE2b-256 hash differs from what the header commits to."""
    WRONG_LOG = "wrong_log"
    """Entries of a run do not all belong to the same (author, topic) log."""
    FORK = "fork"
    """Two validly signed entries share (author, topic, seq) with different ids."""
    CERT_EXPIRED = "cert_expired"
    """A certificate is outside its validity window at the time of the check."""
    CERT_WRONG_ISSUER = "cert_wrong_issuer"
    """A certificate was issued by another key than the expected organisation root."""
    EXPIRED = "expired"
    """A signed statement (e.g. a federation list) is older than its maximum age."""
    ROLLBACK = "rollback"
    """A signed, versioned statement is older than the one already accepted."""
    WRONG_ISSUER = "wrong_issuer"
    """A signed statement comes from another key than the configured issuer."""


class P2PMsgError(Exception):
    """Base class of every error p2pmsg raises on purpose."""


class ValidationError(P2PMsgError):
    """Input failed validation. ``reason`` is a stable :class:`Reason` code."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.detail = message


class DecodeError(ValidationError):
    """Bytes could not be decoded into a valid object.

    Decoders raise *only* this for bad input (reasons: MALFORMED, NON_CANONICAL,
    TOO_LARGE, UNKNOWN_VERSION); anything else escaping a decoder is a bug.
    """


class ForkError(ValidationError):
    """An author equivocated: ``proof`` holds both headers, verifiable by anyone."""

    def __init__(self, proof: ForkProof, message: str = "conflicting entries at one seq") -> None:
        super().__init__(Reason.FORK, message)
        self.proof = proof


class CertificateError(ValidationError):
    """A device certificate is malformed, badly signed, expired or from another org."""


class KeyFileError(P2PMsgError):
    """A secret key file is missing, corrupt, has unsafe permissions, or the passphrase is wrong."""


class StoreError(P2PMsgError):
    """The store refused an operation (for example an entry that does not extend its log)."""


class StoreCorruptError(StoreError):
    """The database file is damaged, or is not a p2pmsg store. Nothing was changed."""


class LocalProtocolError(P2PMsgError):
    """The local application used a protocol state machine wrongly (a bug on our side)."""


class RemoteProtocolError(P2PMsgError):
    """The remote peer violated the protocol; the session must be closed.

    ``reason`` is a short stable code suitable for logs and audit events.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.detail = message


class TransportError(P2PMsgError):
    """A connection could not be made or was lost, or the peer's key was not the expected one."""
