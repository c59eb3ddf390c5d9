"""Composing room payloads: what a device appends to a room topic (pure).

Every function returns the **payload bytes** of the next entry; the node creates the
entry (``create_entry`` with the log head's seq + 1), appends it, and feeds it back
with :meth:`RoomState.apply`. Each function checks the local device is allowed to
do what it asks *in the current view* (raising :class:`NotPermitted`) — the same
rules every receiving node enforces, so a permitted op is normally accepted
(concurrent changes elsewhere can still make it lose; see :mod:`.room`).

Typical sequence for a new room::

    topic, create = compose_room(me, my_org, RoomKind.GROUP, [MemberSpec(...)], now_ms)
    # append create at seq 1 of (me, topic); state = RoomState(topic, orgs); state.apply(...)
    rekey = compose_rekey(state, me, now_ms)       # append at seq 2, apply
    text = compose_text(state, me, "hello", seq=3, now_ms=now_ms)   # append at seq 3

Sending when :meth:`RoomState.rekey_reason` is not None raises
:class:`RekeyRequired`: append :func:`compose_rekey`'s payload first.
"""

from __future__ import annotations

from collections.abc import Sequence

import nacl.utils

from ..identity import Identity
from .content import Content, Text
from .crypto import encrypt_content, epoch_key, new_epoch_secret, open_secret, seal_secret
from .errors import DecryptionError, NotPermitted, RekeyRequired
from .payloads import (
    NONCE_SIZE,
    EpochKeys,
    MemberAdd,
    MemberLeave,
    MemberRemove,
    MemberRole,
    MemberSpec,
    RelayAdd,
    RelayRemove,
    RoomCreate,
    RoomKind,
    RoomRole,
    encode_room_payload,
    room_topic,
)
from .room import RoomState

__all__ = [
    "compose_add",
    "compose_leave",
    "compose_message",
    "compose_rekey",
    "compose_relay_add",
    "compose_relay_remove",
    "compose_remove",
    "compose_role",
    "compose_room",
    "compose_text",
]


def compose_room(
    creator: Identity,
    creator_org: bytes,
    room_kind: RoomKind,
    members: Sequence[MemberSpec],
    created_ms: int,
    *,
    nonce: bytes | None = None,
) -> tuple[bytes, bytes]:
    """(topic, creation payload) of a new room. Append the payload at seq 1 of the topic."""
    nonce = nacl.utils.random(NONCE_SIZE) if nonce is None else nonce
    specs = tuple(sorted(members, key=lambda m: m.device))
    payload = encode_room_payload(
        RoomCreate(creator.public_key, creator_org, room_kind, nonce, created_ms, specs)
    )
    return room_topic(payload), payload


def _require_admin(state: RoomState, me: Identity) -> None:
    member = state.members.get(me.public_key)
    if member is None:
        raise NotPermitted("this device is not a member of the room")
    if member.role is not RoomRole.ADMIN:
        raise NotPermitted("only room admins may change membership")


def compose_add(
    state: RoomState, me: Identity, device: bytes, org: bytes, role: RoomRole = RoomRole.MEMBER
) -> bytes:
    """Add ``device`` (certified by ``org``). Follow with :func:`compose_rekey`."""
    _require_admin(state, me)
    if device in state.members:
        raise NotPermitted("the device is already a member")
    return encode_room_payload(MemberAdd(device, org, role))


def compose_remove(state: RoomState, me: Identity, device: bytes) -> bytes:
    """Remove ``device``. Follow with :func:`compose_rekey` so it cannot read on."""
    _require_admin(state, me)
    if device not in state.members:
        raise NotPermitted("the device is not a member")
    return encode_room_payload(MemberRemove(device))


def compose_role(state: RoomState, me: Identity, device: bytes, role: RoomRole) -> bytes:
    """Make ``device`` an admin or a plain member."""
    _require_admin(state, me)
    if device not in state.members:
        raise NotPermitted("the device is not a member")
    return encode_room_payload(MemberRole(device, role))


def compose_relay_add(state: RoomState, me: Identity, node: bytes, org: bytes) -> bytes:
    """Declare ``node`` (a node key of organisation ``org``) a relay of the room: it may
    replicate the room's ciphertext. No rekey: a relay never gets the room key."""
    _require_admin(state, me)
    if node in state.view.relays:
        raise NotPermitted("the node is already a relay of the room")
    return encode_room_payload(RelayAdd(node, org))


def compose_relay_remove(state: RoomState, me: Identity, node: bytes) -> bytes:
    """``node`` stops being a relay of the room (its sessions lose the room)."""
    _require_admin(state, me)
    if node not in state.view.relays:
        raise NotPermitted("the node is not a relay of the room")
    return encode_room_payload(RelayRemove(node))


def compose_leave(state: RoomState, me: Identity) -> bytes:
    """Leave the room. Remaining members rekey (any of them may)."""
    if me.public_key not in state.members:
        raise NotPermitted("this device is not a member of the room")
    return encode_room_payload(MemberLeave())


def compose_rekey(
    state: RoomState, me: Identity, now_ms: int, *, secret: bytes | None = None
) -> bytes:
    """A new epoch: a fresh secret sealed to every *active* member device.

    Active = member now, certified now, never revoked (:meth:`RoomState.active_members`).
    Any member may rekey; the author must itself be active.
    """
    recipients = state.active_members(now_ms)
    if me.public_key not in recipients:
        raise NotPermitted("this device is not an active member of the room")
    secret = new_epoch_secret() if secret is None else secret
    sealed: list[tuple[bytes, bytes]] = []
    for device in sorted(recipients):
        try:
            sealed.append((device, seal_secret(device, secret)))
        except ValueError:
            continue  # not a valid curve point: nobody can hold its private key
    return encode_room_payload(EpochKeys(tuple(sealed)))


def compose_message(
    state: RoomState, me: Identity, content: Content, *, seq: int, now_ms: int
) -> bytes:
    """The SEALED v2 payload of ``content`` for the entry ``me`` will append at ``seq``.

    Its clear refs (:func:`~.crypto.refs_of`) name the attachment's blob root or
    the redacted entry, so relays can forward the blob and enforce the redaction.

    Raises :class:`RekeyRequired` if the current epoch may not be used (its
    recipients differ from the active members, it is too old or too full), and
    :class:`NotPermitted` if this device is not a member.
    """
    if me.public_key not in state.members:
        raise NotPermitted("this device is not a member of the room")
    reason = state.rekey_reason(now_ms)
    if reason is not None:
        raise RekeyRequired(f"start a new epoch first ({reason.value})")
    epoch = state.view.current_epoch
    assert epoch is not None  # rekey_reason is NO_EPOCH otherwise
    sealed = epoch.recipients.get(me.public_key)
    if sealed is None:
        raise RekeyRequired("the current epoch was not sealed to this device")
    try:
        key = epoch_key(state.topic, open_secret(me, sealed))
    except DecryptionError as exc:
        raise RekeyRequired("the current epoch's key does not open for this device") from exc
    return encrypt_content(key, epoch.id, state.topic, me.public_key, seq, content)


def compose_text(state: RoomState, me: Identity, text: str, *, seq: int, now_ms: int) -> bytes:
    """:func:`compose_message` for a plain text."""
    return compose_message(state, me, Text(text), seq=seq, now_ms=now_ms)
