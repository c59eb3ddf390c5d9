"""Redaction enforcement: erase what a room's redactions removed (store and blob I/O).

Theory of operation
-------------------
A redaction is delete-for-everyone: the redactor's node publishes a sealed
Redaction content (SEALED v2) that names its target in the clear, signed refs;
**every node holding the room** applies it — member nodes and relays alike. The
pure planner :func:`p2pmsg.messaging.redaction.plan_redactions` decides, with the
timeline's permission rule (author of the target, or room admin at the point of
application, computed from the plaintext membership by ``resolve_room``), which
payloads must go; for v2 it needs no key, so a relay reaches the same decision as
a member. :func:`erase_redactions` executes the plan on this node:

1. ``store.erase_payload`` for the target and the author's edits of it (secure
   delete and WAL truncation on SqliteStore; headers stay, so every log still
   verifies with ``verify_run(..., full=True)``). An erased entry that was no
   message (an edit, or a target that is an edit or a reaction:
   :attr:`RedactionTombstone.folded`) is erased with ``folded_into`` = the
   message it modified, so the store keeps that link durably in the same
   transaction, and the timeline still folds it into its message after a restart
   (:meth:`p2pmsg.store.base.Store.folded`);
2. ``BlobStore.delete_blob`` for the attachments the target referenced (their
   per-file key was inside the erased payload, so copies elsewhere are
   unreadable too);
3. one REDACTION audit record per redaction that erased something — ids and
   counts only, never content.

The **tombstone** is the redaction entry itself: it stays in the log, signed by the
redactor, and says who redacted what and when; the timeline shows the target as
REDACTED (``redacted_by``) from it. :class:`RedactionTombstone` is its decoded form.

**Relays** (nodes without room keys) erase the target's ciphertext and the blobs
its clear refs name; what they cannot see is which entries *edit* the target
(edits are sealed too), so they keep those ciphertexts until retention (useless
without an epoch key). For the same reason they record no ``folded_into`` links:
the clear refs say what a redaction targets, never what an edit or reaction
modifies (and a relay shows no timeline). A SEALED **v1** redaction (no clear refs) is still applied
only by nodes that can open it (docs/gdpr.md, "Redaction").

:class:`p2pmsg.messenger.Messenger` calls this automatically for every room whenever
new entries arrive (and right after its own :meth:`~p2pmsg.messenger.Messenger.redact`);
a node without a Messenger (a relay daemon) calls :func:`enforce_redactions`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..blobs import BlobStore
from ..hlc import physical_ms
from ..messaging.redaction import RedactionTombstone, plan_redactions
from ..messaging.room import RoomView
from ..store.base import Store
from .audit import AuditKind, AuditLog, Detail

__all__ = ["RedactionResult", "enforce_redactions", "erase_redactions",
           "redaction_audit_details"]


@dataclass(frozen=True, slots=True)
class RedactionResult:
    """What one redaction erased on this node."""

    tombstone: RedactionTombstone
    erased: tuple[bytes, ...]
    """Entry ids whose payloads were erased by this call."""
    blobs_deleted: int
    """Attachment blobs removed from the blob store by this call."""

    @property
    def changed(self) -> bool:
        return bool(self.erased) or self.blobs_deleted > 0


def redaction_audit_details(result: RedactionResult) -> dict[str, Detail]:
    """The REDACTION audit record's details: ids (hex) and counts, no content."""
    t = result.tombstone
    return {"topic": t.topic.hex(), "redaction": t.redaction.hex(), "target": t.target.hex(),
            "redactor": t.redactor.hex(), "redacted_ms": physical_ms(t.timestamp),
            "erased": len(result.erased), "blobs": result.blobs_deleted}


def erase_redactions(
    store: Store,
    tombstones: Iterable[RedactionTombstone],
    *,
    blobs: BlobStore | None = None,
    audit: AuditLog | None = None,
    now_ms: int = 0,
) -> list[RedactionResult]:
    """Erase every payload and blob the tombstones list; returns what changed.

    Idempotent: payloads already gone and blobs not held are skipped, and only
    redactions that erased something are returned and audited (at ``now_ms``).
    Each entry of :attr:`RedactionTombstone.folded` is erased with its message as
    ``folded_into`` (kept by the store with the erasure, atomically).
    """
    results: list[RedactionResult] = []
    for stone in tombstones:
        into = dict(stone.folded)
        erased = [eid for eid in stone.erase
                  if isinstance(store.get_payload(eid), bytes)
                  and store.erase_payload(eid, folded_into=into.get(eid))]
        deleted = 0
        if blobs is not None and stone.blobs:
            held = set(blobs.roots(room=stone.topic))
            for root in stone.blobs:
                if root in held:
                    blobs.delete_blob(root)
                    deleted += 1
        result = RedactionResult(stone, tuple(erased), deleted)
        if not result.changed:
            continue
        results.append(result)
        if audit is not None:
            audit.append(AuditKind.REDACTION, now_ms, **redaction_audit_details(result))
    return results


def enforce_redactions(
    store: Store,
    views: Iterable[RoomView],
    *,
    keys: Mapping[bytes, bytes] | None = None,
    blobs: BlobStore | None = None,
    audit: AuditLog | None = None,
    now_ms: int = 0,
) -> list[RedactionResult]:
    """Plan and erase the applied redactions of every room in ``views``.

    ``keys`` (epoch id -> AEAD key, any rooms) is None on a relay: the clear refs
    of SEALED v2 redactions suffice there. Idempotent, audited like
    :func:`erase_redactions`.
    """
    results: list[RedactionResult] = []
    for view in views:
        if not view.exists:
            continue
        plan = plan_redactions(view, keys or {})
        if plan:
            results += erase_redactions(store, plan, blobs=blobs, audit=audit, now_ms=now_ms)
    return results
