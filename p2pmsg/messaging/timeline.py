"""Reading a room: open epoch keys, decrypt, and fold edits/redactions/reactions (pure).

:func:`decrypt_timeline` turns a resolved :class:`~p2pmsg.messaging.room.RoomView`
into what a member's screen shows, in display order (= the room's total order:
causal, then HLC, then entry id). Rules applied while folding, identical on every
node because they depend only on the view:

* **edit** — applies only if its author is the target's author and the target is
  a text or reply; the content shown is the latest edit, and every earlier version
  stays in :attr:`Message.history`;
* **redaction** — applies if its author wrote the target or was a room admin when
  the redaction was applied; the message stays in place as redacted (who, when),
  with its content, history and reactions dropped from the view;

"Author" is judged per **person** where the author device's certificate names one
(:attr:`Message.person`; same organisation): an edit or redaction from the
author's other device is the author's. Device-only authors are judged per device.
* **reaction** — one per (author, key); later duplicates are ignored;
* **read receipt** — latest per device, in :attr:`Timeline.read_up_to`.

Modifiers whose target is unknown, not a message, or not decryptable are ignored.
An entry whose payload is gone is listed as UNAVAILABLE — unless ``folded`` names
it: a redaction's plan erased it as an edit or reaction (not a message;
:func:`~.redaction.folded_entries`, kept by the store as
:meth:`~p2pmsg.store.base.Store.folded`), so it stays folded into the message it
modified, as it was while its payload was there.
Sealed entries this device cannot open (an epoch it was not given: before it
joined, after it was removed) appear as :attr:`MessageStatus.UNDECRYPTABLE`;
entries whose payload is missing or erased as :attr:`MessageStatus.UNAVAILABLE`;
contents of unknown kinds — sealed, or a room payload kind from a newer version —
as :class:`~p2pmsg.messaging.content.UnknownContent` (raw bytes kept).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field, replace

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
)
from .crypto import decrypt_content, epoch_key, open_secret
from .errors import DecryptionError
from .payloads import RoomRole, Sealed, UnknownPayload
from .room import Applied, Epoch, RoomState, RoomView

__all__ = [
    "Message",
    "MessageStatus",
    "Timeline",
    "decrypt_messages",
    "decrypt_timeline",
    "open_content",
    "open_epoch_key",
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
    person: bytes | None = None
    """The author device's (pseudonymous) person in ``org``; None for a device-only author."""

    def same_author(self, device: bytes, org: bytes, person: bytes | None) -> bool:
        """True if (device, org, person) wrote this message: the same device, or another
        device of the same person of the same organisation."""
        if device == self.author:
            return True
        return person is not None and person == self.person and org == self.org


@dataclass(frozen=True, slots=True)
class Timeline:
    messages: tuple[Message, ...]
    read_up_to: Mapping[bytes, bytes]
    """device -> id of the last message it declared read."""
    by_id: Mapping[bytes, Message] = field(default_factory=dict, compare=False, repr=False)
    """The same messages by id (filled by :func:`decrypt_timeline`)."""


def open_epoch_key(topic: bytes, epoch: Epoch, identity: Identity) -> bytes | None:
    """The AEAD key of ``epoch`` if it is sealed to ``identity`` and opens, else None
    (not a recipient, or a member sealed garbage to us: that epoch stays unreadable)."""
    sealed = epoch.recipients.get(identity.public_key)
    if sealed is None:
        return None
    try:
        return epoch_key(topic, open_secret(identity, sealed))
    except DecryptionError:
        return None


def open_epoch_keys(view: RoomView, identity: Identity) -> dict[bytes, bytes]:
    """The AEAD keys of every epoch sealed to ``identity``, by epoch id.

    Nothing is cached: the device's private key is the only secret needed at rest.
    """
    keys: dict[bytes, bytes] = {}
    for epoch in view.epochs:
        key = open_epoch_key(view.topic, epoch, identity)
        if key is not None:
            keys[epoch.id] = key
    return keys


def open_content(
    view: RoomView, applied: Applied, keys: Mapping[bytes, bytes]
) -> Content | None:
    """The content of a SEALED entry, or None if ``keys`` cannot open it (or it is bad,
    including a v2 payload whose clear refs disagree with its content)."""
    sealed = applied.payload
    assert isinstance(sealed, Sealed)
    key = keys.get(sealed.epoch)
    if key is None:
        return None
    h = applied.entry.header
    try:
        return decrypt_content(key, view.topic, h.author, h.seq, sealed)
    except (DecryptionError, DecodeError):
        return None


def open_cached(
    view: RoomView,
    applied: Applied,
    keys: Mapping[bytes, bytes],
    contents: MutableMapping[bytes, Content] | None,
) -> Content | None:
    """:func:`open_content` through ``contents``, a cache by entry id (None: no
    cache). The cache is read only while ``keys`` holds the entry's epoch key,
    and filled with what opened."""
    sealed = applied.payload
    assert isinstance(sealed, Sealed)
    if contents is None:
        return open_content(view, applied, keys)
    content = contents.get(applied.entry.id) if sealed.epoch in keys else None
    if content is None:
        content = open_content(view, applied, keys)
        if content is not None:
            contents[applied.entry.id] = content
    return content


def decrypt_timeline(
    room: RoomState | RoomView,
    identity: Identity,
    keys: Mapping[bytes, bytes] | None = None,
    contents: MutableMapping[bytes, Content] | None = None,
    *,
    previous: tuple[Timeline, int] | None = None,
    changed: set[bytes] | None = None,
    folded: Mapping[bytes, bytes] | None = None,
) -> Timeline:
    """What ``identity``'s device shows for the room, in display order.

    ``contents``: a cache of opened SEALED contents by entry id, read and filled
    here (a caller folding a growing room again decrypts only the new entries). It
    is consulted only for entries whose payload the view still has and whose epoch
    key ``keys`` holds, so an erased payload or a forgotten epoch shows as it
    would without the cache; the caller must still drop such plaintext from it.

    ``previous``: ``(timeline, n)`` this function returned for a view whose
    ``applied`` were the first ``n`` of this view's, with the same ``keys``. Only
    the entries after those are folded, into a copy of it: the result is the
    full fold's, and a message they change (edit, redaction, reaction) is copied
    first, so ``timeline`` and its messages stay as they were. Messages the new
    entries leave alone are the same objects in both. ``changed``, if given,
    receives the ids of the messages this call created or copied (with
    ``previous``: exactly the ones that may differ from it).

    ``folded``: entry id -> message, for entries a redaction erased that were no
    messages (the store's record, :meth:`~p2pmsg.store.base.Store.folded`, or
    :func:`~.redaction.folded_entries` of the plans executed). Such an
    entry without payload is not listed (with its payload it folds anyway). With
    ``previous``, it must be the mapping that timeline was folded with."""
    view = room.view if isinstance(room, RoomState) else room
    keys = open_epoch_keys(view, identity) if keys is None else keys
    messages: dict[bytes, Message] = {}
    receipts: dict[bytes, bytes] = {}
    inherited: Mapping[bytes, Message] = {}
    start = 0
    if previous is not None:
        before = previous[0]
        inherited = before.by_id if len(before.by_id) == len(before.messages) else {
            m.id: m for m in before.messages}
        messages = dict(inherited)
        receipts = dict(previous[0].read_up_to)
        start = previous[1]

    def own(target: bytes) -> Message | None:
        """``messages[target]``, copied first if the previous timeline holds it."""
        msg = messages.get(target)
        if msg is not None and inherited.get(target) is msg:
            msg = messages[target] = replace(
                msg, reactions={k: list(v) for k, v in msg.reactions.items()})
            if changed is not None:
                changed.add(target)
        return msg

    for applied in view.applied[start:]:
        entry = applied.entry
        payload = applied.payload
        if payload is None:
            if folded is not None and entry.id in folded:
                continue  # an erased edit or reaction: it belongs to its target
            messages[entry.id] = Message(entry.id, entry.author, applied.author_org,
                                         entry.header.timestamp, MessageStatus.UNAVAILABLE, None,
                                         person=applied.author_person)
            continue
        if isinstance(payload, UnknownPayload):  # a newer peer's kind: shown, never dropped
            messages[entry.id] = Message(
                entry.id, entry.author, applied.author_org, entry.header.timestamp,
                MessageStatus.OK, UnknownContent(payload.kind, payload.version, payload.raw),
                person=applied.author_person)
            continue
        if not isinstance(payload, Sealed):
            continue  # creation, membership and epochs are not messages
        content = open_cached(view, applied, keys, contents)
        if content is None:
            messages[entry.id] = Message(entry.id, entry.author, applied.author_org,
                                         entry.header.timestamp, MessageStatus.UNDECRYPTABLE,
                                         None, person=applied.author_person)
            continue
        match content:
            case Edit(target, text):
                _apply_edit(own(target), applied, text)
            case Redaction(target):
                _apply_redaction(own(target), applied)
            case Reaction(target, key):
                msg = own(target)
                if msg is not None and msg.status is MessageStatus.OK:
                    who = msg.reactions.setdefault(key, [])
                    if entry.author not in who:
                        who.append(entry.author)
            case ReadReceipt(up_to):
                if up_to in messages:
                    receipts[entry.author] = up_to
            case _:
                messages[entry.id] = Message(entry.id, entry.author, applied.author_org,
                                             entry.header.timestamp, MessageStatus.OK, content,
                                             person=applied.author_person)
    if changed is not None:  # new messages come after the inherited ones
        changed.update(itertools.islice(messages, len(inherited), None))
    return Timeline(tuple(messages.values()), receipts, messages)


def _by_author(msg: Message, applied: Applied) -> bool:
    return msg.same_author(applied.entry.author, applied.author_org, applied.author_person)


def _apply_edit(msg: Message | None, applied: Applied, text: str) -> None:
    if msg is None or msg.status is not MessageStatus.OK or not _by_author(msg, applied):
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
    if not _by_author(msg, applied) and applied.author_role is not RoomRole.ADMIN:
        return
    msg.status = MessageStatus.REDACTED
    msg.content = None
    msg.history = ()
    msg.reactions = {}
    msg.redacted_by = author


def decrypt_messages(room: RoomState | RoomView, identity: Identity) -> list[Message]:
    """The messages of :func:`decrypt_timeline`, as a list (display order)."""
    return list(decrypt_timeline(room, identity).messages)
