"""Kind codes and versions of every messaging payload (the registry, in one place).

Every payload the messaging layer writes is a canonical CBOR array that starts with
``[kind, version, ...]``. Kind codes are grouped by where the payload lives:

* ``1..31`` — **message contents**: the plaintext *inside* a sealed room payload
  (:mod:`p2pmsg.messaging.content`);
* ``32..63`` — **room payloads**: what a room topic's entries carry in the clear,
  signed by the entry (creation, membership, epoch keys, sealed envelopes;
  :mod:`p2pmsg.messaging.payloads`);
* ``64..95`` — **organisation control payloads** (:mod:`p2pmsg.messaging.org`).

A code this implementation does not know, or a known code with a *newer* version,
decodes to an ``Unknown…`` value instead of failing: newer peers may add kinds, and
older peers keep and show them as unknown, never drop them or crash. Codes never
change meaning; retired codes are never reused.
"""

from __future__ import annotations

import enum

__all__ = ["CONTENT_KINDS", "CONTROL_KINDS", "ROOM_KINDS", "VERSIONS", "Kind"]


class Kind(enum.IntEnum):
    """The kind code of a payload (first array element)."""

    # --- message contents (inside the ciphertext) ---------------------------------
    TEXT = 1
    VOICE = 2
    IMAGE = 3
    DOCUMENT = 4
    VIDEO = 5
    FHIR = 6
    """A FHIR R4 ``Communication`` resource (JSON) with a plain-text fallback."""
    REPLY = 7
    EDIT = 8
    REDACTION = 9
    REACTION = 10
    READ_RECEIPT = 11

    # --- room payloads (plaintext, authenticated by the entry signature) ----------
    ROOM_CREATE = 32
    MEMBER_ADD = 33
    MEMBER_REMOVE = 34
    MEMBER_LEAVE = 35
    MEMBER_ROLE = 36
    EPOCH_KEYS = 37
    SEALED = 38
    """An encrypted message content (XChaCha20-Poly1305 under an epoch key); v2 adds
    clear, signed refs (attachment roots, redacted entry) for relays."""
    RELAY_ADD = 39
    """Declare a node (of an organisation) a relay of the room: it may replicate the
    room's ciphertext; it is not a member (cannot write, gets no keys)."""
    RELAY_REMOVE = 40

    # --- organisation control topic -----------------------------------------------
    CERTIFICATE = 64
    REVOCATION = 65


CONTENT_KINDS = frozenset(k for k in Kind if k < 32)
ROOM_KINDS = frozenset(k for k in Kind if 32 <= k < 64)
CONTROL_KINDS = frozenset(k for k in Kind if 64 <= k < 96)

VERSIONS: dict[Kind, int] = {**dict.fromkeys(Kind, 1), Kind.SEALED: 2}
"""The newest version of each kind this implementation writes and understands."""
