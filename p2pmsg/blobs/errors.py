"""Errors of the attachment (blob) layer, inside p2pmsg's one hierarchy::

    P2PMsgError
    ├── ValidationError
    │   ├── DecodeError              a manifest root or page is malformed
    │   ├── ChunkMismatchError       bytes do not hash to the address they claim
    │   ├── FileTooLargeError        a file exceeds the configured size limit
    │   └── DecryptionError          (p2pmsg.messaging.errors) a chunk does not open:
    │                                wrong key, tampered, or bound to another place
    ├── StoreError
    │   ├── QuotaExceededError       storing would exceed an organisation/room quota
    │   └── BlobIncompleteError      a chunk needed to read the file is not stored
    ├── LocalProtocolError           the transfer machine was called wrongly
    └── RemoteProtocolError          the peer broke the transfer protocol (cut it off)

Messages never contain key material or file content.
"""

from __future__ import annotations

from ..errors import P2PMsgError, Reason, StoreError, ValidationError

__all__ = [
    "BlobIncompleteError",
    "BlobUnavailableError",
    "ChunkMismatchError",
    "FileTooLargeError",
    "QuotaExceededError",
]


class ChunkMismatchError(ValidationError):
    """An object's bytes do not hash (BLAKE2b-256) to its address, or have the wrong size.

    Raised before anything is stored: the object is rejected as a whole.
    """

    def __init__(self, message: str = "object does not match its hash") -> None:
        super().__init__(Reason.PAYLOAD_MISMATCH, message)


class FileTooLargeError(ValidationError):
    """A file (or a manifest describing one) is larger than the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(Reason.TOO_LARGE, f"file of {size} bytes > limit {limit}")
        self.size = size
        self.limit = limit


class QuotaExceededError(StoreError):
    """Storing a blob would take ``scope`` over its byte quota. Nothing was stored.

    ``scope`` is ``"org"`` or ``"room"``; ``owner`` is the organisation or room id.
    """

    def __init__(self, scope: str, owner: bytes, used: int, needed: int, limit: int) -> None:
        super().__init__(
            f"{scope} quota exceeded: {used} bytes used + {needed} needed > {limit} allowed"
        )
        self.scope = scope
        self.owner = owner
        self.used = used
        self.needed = needed
        self.limit = limit


class BlobIncompleteError(StoreError):
    """A file cannot be read yet: ``missing`` chunk indices are not stored."""

    def __init__(self, missing: int) -> None:
        super().__init__(f"blob incomplete: {missing} chunk(s) missing")
        self.missing = missing


class BlobUnavailableError(P2PMsgError):
    """No connected peer would serve the blob (each lacked it, refused it — the
    room is not theirs to read from us — or served corrupt data and was cut off).

    Chunks already fetched stay stored: a later fetch resumes with the rest."""

    def __init__(self, root: bytes, missing: int) -> None:
        super().__init__(f"blob unavailable from connected peers ({missing} chunks missing)")
        self.root = root
        self.missing = missing
