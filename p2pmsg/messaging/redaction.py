"""Which payloads a room's redactions require this node to erase (pure).

A redaction (delete for everyone) is a sealed :class:`~.content.Redaction` content:
only a node that can open the redaction's epoch learns which message it targets.
:func:`plan_redactions` folds a resolved :class:`~.room.RoomView` with the epoch keys
this device holds and applies **exactly the timeline's rule**
(:mod:`.timeline`): a redaction applies if its author wrote the target, or was a
room admin when the redaction was applied (``Applied.author_role``), and the target
is a message; the first such redaction of a target wins.

For every applied redaction it returns a :class:`RedactionTombstone`: who redacted
what and when (the redaction entry itself stays: it is the signed evidence, and
the timeline keeps showing the target as REDACTED from it), plus what must go:

* the target's payload and the payloads of the target author's **edits** of it
  (they carry the redacted text), as far as they are still present here;
* the attachment blob roots the target referenced (their chunks and manifest).

Reactions and replies are other people's content and stay; only SEALED payloads
are ever listed (a room payload of a newer, unknown kind is kept, as retention
keeps it). Execute a plan with
:func:`p2pmsg.governance.redaction.erase_redactions` (store and blob I/O).
Planning again after erasure is harmless: erased payloads are no longer listed
(the target still is, as a tombstone with nothing left to erase).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .content import Attachment, Content, Edit, Reaction, ReadReceipt, Redaction
from .payloads import RoomRole, Sealed, UnknownPayload
from .room import RoomView
from .timeline import open_content

__all__ = ["RedactionTombstone", "plan_redactions"]


@dataclass(frozen=True, slots=True)
class RedactionTombstone:
    """One applied redaction: who redacted what, when, and what is left to erase."""

    topic: bytes
    redaction: bytes
    """Id of the redaction entry (signed by the redactor; kept as the evidence)."""
    target: bytes
    """Id of the redacted message (its header stays, so the log still verifies)."""
    redactor: bytes
    """The device that wrote the redaction."""
    timestamp: int
    """HLC timestamp of the redaction entry (``p2pmsg.hlc.physical_ms`` for ms)."""
    erase: tuple[bytes, ...]
    """Entry ids whose payloads are still present and must be erased, sorted."""
    blobs: tuple[bytes, ...]
    """Attachment blob roots the target referenced (known only while its payload is)."""


@dataclass
class _Target:
    author: bytes
    content: Content | None
    present: bool


def plan_redactions(view: RoomView, keys: Mapping[bytes, bytes]) -> list[RedactionTombstone]:
    """The applied redactions of ``view`` and the payloads they require erased.

    ``keys``: epoch id -> AEAD key, as :func:`~.timeline.open_epoch_keys` returns.
    A redaction this device cannot decrypt is invisible to it (and so erases
    nothing here) — exactly as the timeline ignores it.
    """
    messages: dict[bytes, _Target] = {}
    edits: dict[bytes, list[tuple[bytes, bytes]]] = {}
    """target -> [(edit id, edit author)] for edits whose payload is present."""
    applied_by: dict[bytes, tuple[bytes, bytes, int]] = {}
    """target -> (redaction id, redactor, timestamp) of the redaction that applied."""
    for applied in view.applied:
        entry = applied.entry
        payload = applied.payload
        if payload is None or isinstance(payload, UnknownPayload):
            # a newer version's room payload may be structure others need: like
            # retention, never erase it (the timeline still shows it as redacted)
            messages[entry.id] = _Target(entry.author, None, False)
            continue
        if not isinstance(payload, Sealed):
            continue
        content = open_content(view, applied, keys)
        match content:
            case None:
                messages[entry.id] = _Target(entry.author, None, True)
            case Edit(target, _):
                edits.setdefault(target, []).append((entry.id, entry.author))
            case Redaction(target, _):
                msg = messages.get(target)
                if msg is None or target in applied_by:
                    continue
                if entry.author != msg.author and applied.author_role is not RoomRole.ADMIN:
                    continue
                applied_by[target] = (entry.id, entry.author, entry.header.timestamp)
            case Reaction() | ReadReceipt():
                continue
            case _:
                messages[entry.id] = _Target(entry.author, content, True)
    out: list[RedactionTombstone] = []
    for target, (redaction, redactor, timestamp) in applied_by.items():
        msg = messages[target]
        erase = {eid for eid, author in edits.get(target, ()) if author == msg.author}
        if msg.present:
            erase.add(target)
        blobs = ((msg.content.descriptor.content_hash,)
                 if isinstance(msg.content, Attachment) else ())
        out.append(RedactionTombstone(view.topic, redaction, target, redactor, timestamp,
                                      tuple(sorted(erase)), blobs))
    return out
