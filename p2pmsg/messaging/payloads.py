"""Room payloads: what a room topic's entries carry (pure encode/decode).

Room entries carry one of these canonical CBOR arrays ``[kind, version, *fields]``:

============  =====================================================  =============
kind          fields                                                 readable by
============  =====================================================  =============
ROOM_CREATE   creator, creator_org, room kind, nonce, created_ms,    anyone holding
              initial members ``[[device, org, role], ...]``         the entry
MEMBER_ADD    device, org, role                                      anyone
MEMBER_REMOVE device                                                 anyone
MEMBER_LEAVE  (none)                                                 anyone
MEMBER_ROLE   device, role                                           anyone
EPOCH_KEYS    ``[[device, sealed epoch secret], ...]``               anyone (keys
                                                                     sealed per device)
SEALED        epoch id, nonce, ciphertext of a content               epoch key holders
              (v2 adds clear refs: attachment blob roots, redacted  anyone (signed,
              entry id — see :class:`ClearRefs`)                     AEAD-bound)
RELAY_ADD     node key, org                                          anyone
RELAY_REMOVE  node key                                               anyone
============  =====================================================  =============

Membership and key-distribution payloads are plaintext on purpose: they are signed by
the entry, every node must be able to enforce the permission rules, and a member
added later must be able to recompute the membership from the first entry. They
name device keys and organisation ids only — never people or patients. Everything a
person writes is a SEALED payload (:mod:`.crypto`).

RELAY_ADD / RELAY_REMOVE (written by a room admin) declare which always-on **nodes**
(node keys of the federation list, with the organisation running them) may
replicate the room's ciphertext as relays: need-to-know lets a relay hold the room
without being a member (:mod:`.room`, :mod:`p2pmsg.governance.policy`).

SEALED **version 2** (what this version writes) is
``[38, 2, epoch, nonce, ciphertext, blobs, redacts]``: besides the ciphertext it
carries :class:`ClearRefs` — the blob roots of the attachments the content
references (sorted, unique, at most :data:`MAX_CLEAR_BLOBS`) and the entry id the
content redacts (or null). They are signed with the entry and bound into the AEAD
associated data, so relays (which hold no epoch key) can redact, forward
attachments and purge blobs, and a member detects any disagreement between the
clear refs and the content (:func:`p2pmsg.messaging.crypto.decrypt_content`).
Version 1 ``[38, 1, epoch, nonce, ciphertext]`` still decodes (no refs).

Decode with :func:`decode_room_payload` (raises only DecodeError); an unknown kind
or newer version decodes to :class:`UnknownPayload`.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
from dataclasses import dataclass
from typing import Any, TypeAlias

from ..errors import DecodeError, Reason
from ._codec import Frame, check_fields, encode, is_b32, is_blob, is_bytes, is_uint
from ._codec import read_frame as _read_frame
from .kinds import ROOM_KINDS, VERSIONS, Kind

__all__ = [
    "MAX_CLEAR_BLOBS",
    "MAX_MEMBERS",
    "NONCE_SIZE",
    "NO_REFS",
    "SEALED_VERSION",
    "ClearRefs",
    "EpochKeys",
    "MemberAdd",
    "MemberLeave",
    "MemberRemove",
    "MemberRole",
    "MemberSpec",
    "RelayAdd",
    "RelayRemove",
    "RoomCreate",
    "RoomKind",
    "RoomPayload",
    "RoomRole",
    "Sealed",
    "UnknownPayload",
    "decode_room_payload",
    "encode_room_payload",
    "room_topic",
]

MAX_MEMBERS = 2048
"""Devices per room (and recipients per epoch); keeps an EPOCH_KEYS payload < 1 MiB."""
NONCE_SIZE = 16
"""Random bytes in a creation payload, so two equal rooms get different ids."""
AEAD_NONCE_SIZE = 24
SEALED_SECRET_SIZE = 32 + 48
"""A 32-byte epoch secret in a libsodium sealed box (ephemeral key 32 + MAC 16)."""
_ROOM_TOPIC_DOMAIN = b"p2pmsg/room-topic/v1\x00"
MAX_CLEAR_BLOBS = 16
"""Blob roots one SEALED v2 payload may name in the clear (a message has 0 or 1 today)."""
SEALED_VERSION = 2
"""The SEALED version this implementation writes (1 still decodes; newer: unknown)."""


class RoomKind(enum.Enum):
    """Direct (two parties) or group. In a direct room every initial member is admin."""

    DIRECT = "direct"
    GROUP = "group"


class RoomRole(enum.Enum):
    """A member's role in one room."""

    ADMIN = "admin"
    """May add and remove members, change roles and redact anyone's messages."""
    MEMBER = "member"


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """One member device: its key, the organisation that certifies it, its role."""

    device: bytes
    org: bytes
    role: RoomRole = RoomRole.MEMBER


@dataclass(frozen=True, slots=True)
class RoomCreate:
    creator: bytes
    creator_org: bytes
    room_kind: RoomKind
    nonce: bytes
    created_ms: int
    members: tuple[MemberSpec, ...] = ()
    """Initial members besides the creator (who is always the first admin)."""


@dataclass(frozen=True, slots=True)
class MemberAdd:
    device: bytes
    org: bytes
    role: RoomRole = RoomRole.MEMBER


@dataclass(frozen=True, slots=True)
class MemberRemove:
    device: bytes


@dataclass(frozen=True, slots=True)
class MemberLeave:
    """The author leaves the room."""


@dataclass(frozen=True, slots=True)
class MemberRole:
    device: bytes
    role: RoomRole


@dataclass(frozen=True, slots=True)
class RelayAdd:
    """Declare ``node`` (a node key of organisation ``org``) a relay of the room."""

    node: bytes
    org: bytes


@dataclass(frozen=True, slots=True)
class RelayRemove:
    """``node`` is no longer a relay of the room."""

    node: bytes


@dataclass(frozen=True, slots=True)
class EpochKeys:
    """A new epoch: a fresh secret sealed to each recipient device.

    The epoch's id is the id of the entry carrying this payload.
    """

    recipients: tuple[tuple[bytes, bytes], ...]
    """(device key, sealed secret), sorted by device key."""


@dataclass(frozen=True, slots=True)
class ClearRefs:
    """The clear, signed references of a SEALED v2 payload (what relays may act on).

    Relays learn from them "this message has attachments with these roots" and
    "this message redacts that entry" — nothing else of the content.
    """

    blobs: tuple[bytes, ...] = ()
    """Blob roots of the attachments the content references: sorted, unique."""
    redacts: bytes | None = None
    """Id of the entry the content redacts, if it is a redaction."""

    def to_cbor(self) -> list[Any]:
        """The two wire fields ``[blobs, redacts]`` (also bound into the AEAD's AD)."""
        return [list(self.blobs), self.redacts]


NO_REFS = ClearRefs()


@dataclass(frozen=True, slots=True)
class Sealed:
    """An encrypted content. See :func:`p2pmsg.messaging.crypto.encrypt_content`.

    ``version`` 2 carries ``refs`` in the clear; a decoded version 1 payload has
    ``version == 1`` and empty refs (it says nothing in the clear).
    """

    epoch: bytes
    nonce: bytes
    ciphertext: bytes
    refs: ClearRefs = NO_REFS
    version: int = SEALED_VERSION


@dataclass(frozen=True, slots=True)
class UnknownPayload:
    """A room payload of a kind or version this implementation does not know."""

    kind: int
    version: int
    raw: bytes


RoomPayload: TypeAlias = (
    RoomCreate | MemberAdd | MemberRemove | MemberLeave | MemberRole | EpochKeys | Sealed
    | RelayAdd | RelayRemove | UnknownPayload
)


def room_topic(create_payload: bytes) -> bytes:
    """The room's topic id: a domain-separated BLAKE2b-256 of its creation payload."""
    return hashlib.blake2b(_ROOM_TOPIC_DOMAIN + create_payload, digest_size=32).digest()


def encode_room_payload(payload: RoomPayload) -> bytes:
    """Canonical bytes of a room payload; refuses values peers would refuse (ValueError)."""
    data = _encode(payload)
    try:
        decode_room_payload(data)
    except DecodeError as exc:
        raise ValueError(str(exc)) from exc
    return data


def _encode(p: RoomPayload) -> bytes:
    v = VERSIONS
    match p:
        case RoomCreate(creator, org, room_kind, nonce, created_ms, members):
            specs = [[m.device, m.org, m.role.value] for m in members]
            return encode(Kind.ROOM_CREATE, v[Kind.ROOM_CREATE], creator, org, room_kind.value,
                          nonce, created_ms, specs)
        case MemberAdd(device, org, role):
            return encode(Kind.MEMBER_ADD, v[Kind.MEMBER_ADD], device, org, role.value)
        case MemberRemove(device):
            return encode(Kind.MEMBER_REMOVE, v[Kind.MEMBER_REMOVE], device)
        case MemberLeave():
            return encode(Kind.MEMBER_LEAVE, v[Kind.MEMBER_LEAVE])
        case MemberRole(device, role):
            return encode(Kind.MEMBER_ROLE, v[Kind.MEMBER_ROLE], device, role.value)
        case EpochKeys(recipients):
            return encode(Kind.EPOCH_KEYS, v[Kind.EPOCH_KEYS], [list(r) for r in recipients])
        case Sealed(epoch, nonce, ciphertext, refs, version):
            if version == 1:
                if refs != NO_REFS:
                    raise ValueError("a version 1 sealed payload carries no clear refs")
                return encode(Kind.SEALED, 1, epoch, nonce, ciphertext)
            if version != SEALED_VERSION:
                raise ValueError(f"sealed payload version {version} cannot be written")
            return encode(Kind.SEALED, version, epoch, nonce, ciphertext, *refs.to_cbor())
        case RelayAdd(node, org):
            return encode(Kind.RELAY_ADD, v[Kind.RELAY_ADD], node, org)
        case RelayRemove(node):
            return encode(Kind.RELAY_REMOVE, v[Kind.RELAY_REMOVE], node)
        case UnknownPayload():
            raise ValueError("an unknown payload cannot be written")
    raise ValueError(f"not a room payload: {type(p).__name__}")


def _role(value: Any) -> bool:
    return value in ("admin", "member")


def _is_spec(value: Any) -> bool:
    return (type(value) is list and len(value) == 3 and is_b32(value[0]) and is_b32(value[1])
            and _role(value[2]))


def _specs(value: Any) -> bool:
    if type(value) is not list or len(value) > MAX_MEMBERS or not all(map(_is_spec, value)):
        return False
    devices = [spec[0] for spec in value]
    return len(set(devices)) == len(devices)


def _recipients(value: Any) -> bool:
    if type(value) is not list or not 0 < len(value) <= MAX_MEMBERS:
        return False
    ok = all(type(r) is list and len(r) == 2 and is_b32(r[0])
             and is_bytes(SEALED_SECRET_SIZE)(r[1]) for r in value)
    # sorted and unique by device: one canonical form, no duplicate recipients
    return ok and all(a[0] < b[0] for a, b in itertools.pairwise(value))


def decode_room_payload(data: bytes) -> RoomPayload:
    """Parse a room entry's payload. Raises only :class:`DecodeError`."""
    frame = _read_frame(data, "room payload")
    if frame.kind not in ROOM_KINDS:
        if frame.kind < 32 or frame.kind >= 64:
            return UnknownPayload(frame.kind, frame.version, bytes(data))
    elif frame.version <= VERSIONS[Kind(frame.kind)]:
        return _decode_known(Kind(frame.kind), frame)
    return UnknownPayload(frame.kind, frame.version, bytes(data))


def _decode_known(kind: Kind, frame: Frame) -> RoomPayload:
    what = f"room payload {kind.name.lower()}"
    if kind is Kind.ROOM_CREATE:
        creator, org, room_kind, nonce, created, specs = check_fields(
            frame, what,
            [is_b32, is_b32, lambda x: x in ("direct", "group"), is_bytes(NONCE_SIZE), is_uint,
             _specs],
        )
        members = tuple(MemberSpec(d, o, RoomRole(r)) for d, o, r in specs)
        if any(m.device == creator for m in members):
            raise DecodeError(Reason.MALFORMED, f"{what}: the creator is listed as a member")
        return RoomCreate(creator, org, RoomKind(room_kind), nonce, created, members)
    if kind is Kind.MEMBER_ADD:
        device, org, role = check_fields(frame, what, [is_b32, is_b32, _role])
        return MemberAdd(device, org, RoomRole(role))
    if kind is Kind.MEMBER_REMOVE:
        (device,) = check_fields(frame, what, [is_b32])
        return MemberRemove(device)
    if kind is Kind.MEMBER_LEAVE:
        check_fields(frame, what, [])
        return MemberLeave()
    if kind is Kind.MEMBER_ROLE:
        device, role = check_fields(frame, what, [is_b32, _role])
        return MemberRole(device, RoomRole(role))
    if kind is Kind.EPOCH_KEYS:
        (recipients,) = check_fields(frame, what, [_recipients])
        return EpochKeys(tuple((d, s) for d, s in recipients))
    if kind is Kind.RELAY_ADD:
        node, org = check_fields(frame, what, [is_b32, is_b32])
        return RelayAdd(node, org)
    if kind is Kind.RELAY_REMOVE:
        (node,) = check_fields(frame, what, [is_b32])
        return RelayRemove(node)
    sealed = [is_b32, is_bytes(AEAD_NONCE_SIZE), is_blob(1 << 20)]  # SEALED
    if frame.version == 1:
        epoch, nonce, ciphertext = check_fields(frame, what, sealed)
        return Sealed(epoch, nonce, ciphertext, NO_REFS, 1)
    epoch, nonce, ciphertext, blobs, redacts = check_fields(
        frame, what, [*sealed, _clear_blobs, lambda x: x is None or is_b32(x)])
    return Sealed(epoch, nonce, ciphertext, ClearRefs(tuple(blobs), redacts), frame.version)


def _clear_blobs(value: Any) -> bool:
    if type(value) is not list or len(value) > MAX_CLEAR_BLOBS or not all(map(is_b32, value)):
        return False
    return all(a < b for a, b in itertools.pairwise(value))  # sorted, unique: canonical
