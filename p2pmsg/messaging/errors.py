"""Errors of the messaging layer, inside p2pmsg's one hierarchy::

    P2PMsgError
    ├── ValidationError
    │   └── DecryptionError      a sealed payload does not open (wrong key, tampered,
    │                            bound to another room/author/seq)
    └── LocalProtocolError
        ├── NotPermitted         you tried to compose an op the room rules forbid
        └── RekeyRequired        compose a new epoch (compose_rekey) first

Decoders raise :class:`~p2pmsg.errors.DecodeError` only.
"""

from __future__ import annotations

from ..errors import LocalProtocolError, Reason, ValidationError

__all__ = ["DecryptionError", "NotPermitted", "RekeyRequired"]


class DecryptionError(ValidationError):
    """An AEAD or sealed box did not open. Never says why beyond that (no oracle)."""

    def __init__(self, message: str = "payload does not decrypt") -> None:
        super().__init__(Reason.PAYLOAD_MISMATCH, message)


class NotPermitted(LocalProtocolError):
    """The local device may not do this in this room (not a member, not an admin...)."""


class RekeyRequired(LocalProtocolError):
    """The room's current epoch may not be used (membership changed, revocation, age).

    Append :func:`p2pmsg.messaging.compose.compose_rekey`'s payload, apply it, retry.
    """
