"""Which payloads a room's redactions require this node to erase (pure).

A redaction (delete for everyone) is a sealed :class:`~.content.Redaction` content.
:func:`plan_redactions` folds a resolved :class:`~.room.RoomView` with the epoch keys
this device holds (none on a relay) and applies the permission rule of the
timeline (:mod:`.timeline`): a redaction applies if its author wrote the target, or
was a room admin when the redaction was applied (``Applied.author_role``); the
first applying redaction of a target wins. Two paths, one rule:

* **clear path** (SEALED v2, what this version writes): the redaction names its
  target in its clear, signed refs (``Sealed.refs.redacts``) and each message
  names its attachment blob roots (``Sealed.refs.blobs``). The target may be any
  earlier SEALED entry of the room except another v2 redaction (a relay cannot
  tell a reaction from a text: redacting one erases it everywhere, though the
  timeline only shows messages as redacted). This path needs
  no key, so **relays and members compute exactly the same tombstones** from the
  same view: a member uses the clear refs too, even when it can decrypt (a
  content whose clear refs disagree with it is rejected as malformed by
  :func:`~.crypto.decrypt_content`, but its clear refs still decide erasure, so
  no node erases differently from another).
* **decrypted path** (SEALED v1, no clear refs): only a node that can open the
  redaction learns its target, which must be a decrypted message (not an edit,
  reaction, receipt or redaction), as before.

For every applied redaction it returns a :class:`RedactionTombstone`: who redacted
what and when (the redaction entry itself stays: it is the signed evidence, and
the timeline keeps showing the target as REDACTED from it), plus what must go:

* the target's payload and the payloads of the target author's **edits** of it
  (they carry the redacted text), as far as they are still present here — edits
  are known only to nodes that can decrypt them (a relay keeps their ciphertext
  until retention: it cannot tell which entries edit the target);
* the attachment blob roots the target referenced (their chunks and manifest):
  its clear refs (v2), or its decrypted descriptor (v1, members only).

Each tombstone also names the entries it erases that were **not messages**
(:attr:`RedactionTombstone.folded`: the edits, and the target itself when a v2
redaction named an edit or a reaction), with the message each was folded into.
Once erased, such an entry is a header without payload, which the timeline could
not tell from a message whose payload is missing; given these names
(:func:`folded_entries`), :func:`~.timeline.decrypt_timeline` leaves them out, so
the room reads the same before and after enforcement. The executor erases each
with its message as ``folded_into``, so the store keeps the link durably with the
erasure (:meth:`p2pmsg.store.base.Store.folded`), and a restarted messenger or
daemon folds them the same way.

Reactions and replies are other people's content and stay; only SEALED payloads
are ever listed (a room payload of a newer, unknown kind is kept, as retention
keeps it). Execute a plan with
:func:`p2pmsg.governance.redaction.erase_redactions` (store and blob I/O).
Planning again after erasure is harmless: erased payloads are no longer listed
(the target still is, as a tombstone with nothing left to erase).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field

from .content import Attachment, Content, Edit, Reaction, ReadReceipt, Redaction
from .payloads import RoomRole, Sealed, UnknownPayload
from .room import Applied, RoomView
from .timeline import open_cached

__all__ = ["RedactionTombstone", "folded_entries", "plan_redactions"]


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
    folded: tuple[tuple[bytes, bytes], ...] = field(default=(), compare=False)
    """(entry id, id of the message it modifies) for the entries of :attr:`erase`
    that are not messages — the edits, or a target that is an edit or a reaction —
    sorted. Known only to a node that decrypts them, while their payloads are (see
    the module docstring); a relay's are empty, so it is left out of comparisons."""


def folded_entries(tombstones: Iterable[RedactionTombstone]) -> dict[bytes, bytes]:
    """Entry id -> the message it was folded into, for every erased non-message the
    tombstones name: what :func:`~.timeline.decrypt_timeline` takes as ``folded``."""
    return {eid: into for stone in tombstones for eid, into in stone.folded}


@dataclass
class _Target:
    author: bytes
    """:func:`_author` of the entry (its person where it has one, else its device)."""
    blobs: tuple[bytes, ...]
    present: bool
    modifies: bytes | None = None
    """The message a decrypted edit or reaction modifies (it is no message itself)."""


def _author(applied: Applied) -> bytes:
    """Who counts as an entry's author for the "own message" rules, exactly as the
    timeline judges them: ``org || person`` if the author device has a person, else
    the device key (docs/messaging.md, "Persons and devices")."""
    if applied.author_person is None:
        return applied.entry.author
    return applied.author_org + applied.author_person


def plan_redactions(
    view: RoomView,
    keys: Mapping[bytes, bytes],
    *,
    contents: MutableMapping[bytes, Content] | None = None,
) -> list[RedactionTombstone]:
    """The applied redactions of ``view`` and the payloads they require erased.

    ``contents``: a cache of opened contents by entry id, as for
    :func:`~.timeline.decrypt_timeline` (the messenger passes the room's).

    ``keys``: epoch id -> AEAD key, as :func:`~.timeline.open_epoch_keys` returns
    (``{}`` on a relay). A v2 redaction applies from its clear refs whatever the
    keys; a v1 redaction this device cannot decrypt is invisible to it (and so
    erases nothing here) — exactly as the timeline ignores it.
    """
    messages: dict[bytes, _Target] = {}
    """Targets of v1 redactions: messages as decrypted (or undecryptable) here."""
    clear: dict[bytes, _Target] = {}
    """Targets of v2 redactions: every SEALED entry but a v2 redaction (no key needed)."""
    edits: dict[bytes, list[tuple[bytes, bytes]]] = {}
    """target -> [(edit id, edit author)] for edits whose payload is present."""
    applied_by: dict[bytes, tuple[bytes, bytes, int]] = {}
    """target -> (redaction id, redactor, timestamp) of the redaction that applied."""
    chosen: dict[bytes, _Target] = {}
    """target -> the target as the applying redaction saw it."""

    def apply(targets: dict[bytes, _Target], target: bytes, applied: Applied) -> None:
        msg = targets.get(target)
        if msg is None or target in applied_by:
            return
        entry = applied.entry
        if _author(applied) != msg.author and applied.author_role is not RoomRole.ADMIN:
            return
        applied_by[target] = (entry.id, entry.author, entry.header.timestamp)
        chosen[target] = msg

    for applied in view.applied:
        entry = applied.entry
        payload = applied.payload
        if payload is None or isinstance(payload, UnknownPayload):
            # a newer version's room payload may be structure others need: like
            # retention, never erase it (the timeline still shows it as redacted)
            messages[entry.id] = clear[entry.id] = _Target(_author(applied), (), False)
            continue
        if not isinstance(payload, Sealed):
            continue
        v2 = payload.version != 1
        if v2 and payload.refs.redacts is not None:
            apply(clear, payload.refs.redacts, applied)
            continue  # a redaction is never itself a target
        content = open_cached(view, applied, keys, contents)
        blobs = payload.refs.blobs
        if not v2 and isinstance(content, Attachment):  # v1: only a member knows
            blobs = (content.descriptor.content_hash,)
        modifies = content.target if isinstance(content, Edit | Reaction) else None
        clear[entry.id] = _Target(_author(applied), blobs, True, modifies)
        match content:
            case None:
                messages[entry.id] = _Target(_author(applied), blobs, True)
            case Edit(target, _):
                edits.setdefault(target, []).append((entry.id, _author(applied)))
            case Redaction(target, _):  # v1 only: v2 redactions were handled above
                apply(messages, target, applied)
            case Reaction() | ReadReceipt():
                continue
            case _:
                messages[entry.id] = _Target(_author(applied), blobs, True)
    out: list[RedactionTombstone] = []
    for target, (redaction, redactor, timestamp) in applied_by.items():
        msg = chosen[target]
        erase = {eid for eid, author in edits.get(target, ()) if author == msg.author}
        folded = {eid: target for eid in erase}
        if msg.present:
            erase.add(target)
            if msg.modifies is not None:
                folded[target] = msg.modifies
        out.append(RedactionTombstone(view.topic, redaction, target, redactor, timestamp,
                                      tuple(sorted(erase)), msg.blobs,
                                      tuple(sorted(folded.items()))))
    return out
