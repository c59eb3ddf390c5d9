"""Reading a room: open epoch keys, decrypt, and fold edits/redactions/reactions (pure).

:func:`decrypt_timeline` turns a resolved :class:`~p2pmsg.messaging.room.RoomView`
into what a member's screen shows, in display order (= the room's total order:
causal, then HLC, then entry id). Rules applied while folding, identical on every
node because they depend only on the view:

* **edit** — applies only if its author is the target's author (same device) and
  the target is a text or reply; the content shown is the latest edit, and every
  earlier version stays in :attr:`Message.history`;
* **redaction** — applies if its author wrote the target or was a room admin when
  the redaction was applied; the message stays in place as redacted (who, when),
  with its content, history and reactions dropped from the view;
* **reaction** — one per (author, key); later duplicates are ignored;
* **read receipt** — latest per device, in :attr:`Timeline.read_up_to`.

Modifiers whose target is unknown, not a message, or not decryptable are ignored.
Sealed entries this device cannot open (an epoch it was not given: before it
joined, after it was removed) appear as :attr:`MessageStatus.UNDECRYPTABLE`;
entries whose payload is missing or erased as :attr:`MessageStatus.UNAVAILABLE`;
contents of unknown kinds — sealed, or a room payload kind from a newer version —
as :class:`~p2pmsg.messaging.content.UnknownContent` (raw bytes kept).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import DecodeError
from ..identity import Identity
from .content import (
    Content,
    Edit,
    Reaction,
    ReadReceipt,
    Redaction,
    Reply,
    Text,
    UnknownContent,
    decode_content,
)
from .crypto import decrypt_for_entry, epoch_key, open_secret
from .errors import DecryptionError
from .payloads import RoomRole, Sealed, UnknownPayload
from .room import Applied, RoomState, RoomView

__all__ = [
    "Message",
    "MessageStatus",
    "Timeline",
    "decrypt_messages",
    "decrypt_timeline",
    "open_content",
    "open_epoch_keys",
]


class MessageStatus(enum.Enum):
    OK = "ok"
    REDACTED = "redacted"
    UNDECRYPTABLE = "undecryptable"
    UNAVAILABLE = "unavailable"
    """The payload is not on this node (not fetched yet, or erased by retention)."""


@dataclass
class Message:
    """One message as shown to a member."""

    id: bytes
    author: bytes
    """The device that wrote it."""
    org: bytes
    """The organisation that certifies the author device."""
    timestamp: int
    """HLC timestamp of the entry (``p2pmsg.hlc.physical_ms`` gives milliseconds)."""
    status: MessageStatus
    content: Content | None
    """The current content (latest edit); None unless status is OK."""
    history: tuple[Content, ...] = ()
    """Earlier versions of an edited message, oldest first."""
    edited: bool = False
    redacted_by: bytes | None = None
    reactions: dict[str, list[bytes]] = field(default_factory=dict)
    """Reaction key -> devices, in order of application."""


@dataclass(frozen=True, slots=True)
class Timeline:
    messages: tuple[Message, ...]
    read_up_to: Mapping[bytes, bytes]
    """device -> id of the last message it declared read."""


def open_epoch_keys(view: RoomView, identity: Identity) -> dict[bytes, bytes]:
    """The AEAD keys of every epoch sealed to ``identity``, by epoch id.

    Nothing is cached: the device's private key is the only secret needed at rest.
    """
    keys: dict[bytes, bytes] = {}
    for epoch in view.epochs:
        sealed = epoch.recipients.get(identity.public_key)
        if sealed is None:
            continue
        try:
            keys[epoch.id] = epoch_key(view.topic, open_secret(identity, sealed))
        except DecryptionError:
            continue  # a member sealed garbage to us: that epoch stays unreadable
    return keys


def open_content(
    view: RoomView, applied: Applied, keys: Mapping[bytes, bytes]
) -> Content | None:
    """The content of a SEALED entry, or None if ``keys`` cannot open it (or it is bad)."""
    sealed = applied.payload
    assert isinstance(sealed, Sealed)
    key = keys.get(sealed.epoch)
    if key is None:
        return None
    h = applied.entry.header
    try:
        return decode_content(decrypt_for_entry(key, view.topic, h.author, h.seq, sealed))
    except (DecryptionError, DecodeError):
        return None


def decrypt_timeline(
    room: RoomState | RoomView,
    identity: Identity,
    keys: Mapping[bytes, bytes] | None = None,
) -> Timeline:
    """What ``identity``'s device shows for the room, in display order."""
    view = room.view if isinstance(room, RoomState) else room
    keys = open_epoch_keys(view, identity) if keys is None else keys
    messages: dict[bytes, Message] = {}
    receipts: dict[bytes, bytes] = {}
    for applied in view.applied:
        entry = applied.entry
        payload = applied.payload
        if payload is None:
            messages[entry.id] = Message(entry.id, entry.author, applied.author_org,
                                         entry.header.timestamp, MessageStatus.UNAVAILABLE, None)
            continue
        if isinstance(payload, UnknownPayload):  # a newer peer's kind: shown, never dropped
            messages[entry.id] = Message(
                entry.id, entry.author, applied.author_org, entry.header.timestamp,
                MessageStatus.OK, UnknownContent(payload.kind, payload.version, payload.raw))
            continue
        if not isinstance(payload, Sealed):
            continue  # creation, membership and epochs are not messages
        content = open_content(view, applied, keys)
        if content is None:
            messages[entry.id] = Message(entry.id, entry.author, applied.author_org,
                                         entry.header.timestamp, MessageStatus.UNDECRYPTABLE,
                                         None)
            continue
        match content:
            case Edit(target, text):
                _apply_edit(messages.get(target), entry.author, text)
            case Redaction(target):
                _apply_redaction(messages.get(target), applied)
            case Reaction(target, key):
                msg = messages.get(target)
                if msg is not None and msg.status is MessageStatus.OK:
                    who = msg.reactions.setdefault(key, [])
                    if entry.author not in who:
                        who.append(entry.author)
            case ReadReceipt(up_to):
                if up_to in messages:
                    receipts[entry.author] = up_to
            case _:
                messages[entry.id] = Message(entry.id, entry.author, applied.author_org,
                                             entry.header.timestamp, MessageStatus.OK, content)
    return Timeline(tuple(messages.values()), receipts)


def _apply_edit(msg: Message | None, editor: bytes, text: str) -> None:
    if msg is None or msg.status is not MessageStatus.OK or msg.author != editor:
        return
    current = msg.content
    if isinstance(current, Text):
        new: Content = Text(text)
    elif isinstance(current, Reply):
        new = Reply(current.target, text)
    else:
        return
    msg.history = (*msg.history, current)
    msg.content = new
    msg.edited = True


def _apply_redaction(msg: Message | None, applied: Applied) -> None:
    if msg is None or msg.status is MessageStatus.REDACTED:
        return
    author = applied.entry.author
    if author != msg.author and applied.author_role is not RoomRole.ADMIN:
        return
    msg.status = MessageStatus.REDACTED
    msg.content = None
    msg.history = ()
    msg.reactions = {}
    msg.redacted_by = author


def decrypt_messages(room: RoomState | RoomView, identity: Identity) -> list[Message]:
    """The messages of :func:`decrypt_timeline`, as a list (display order)."""
    return list(decrypt_timeline(room, identity).messages)
