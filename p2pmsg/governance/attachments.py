"""Retention of attachment blobs by their registration time (blob-store I/O).

Theory of operation
-------------------
:func:`~p2pmsg.governance.retention.run_purge` deletes the attachment of every
message it purges when it can tell which blob the message names (it can decrypt
the message, or the message carries clear attachment references). Some blobs are
named by no message this node can see or read: a blob whose message was erased
by a peer's retention before it arrived here, a blob fetched for a room whose
epoch key this node never got, a blob left by an interrupted send. Retention must
still reach them, so the blob store stamps every blob with the wall-clock time it
was registered (:meth:`~p2pmsg.blobs.BlobStore.registered_before`) and
:func:`expire_blobs` deletes blobs older than the retention limit of their
(room, organisation) — the same :class:`~p2pmsg.governance.RetentionConfig` the
payload purge uses, with the same legal holds.

The clock starts at *registration on this node*, not at the message's time: a
blob arriving late is kept for the full period after it arrived (never shorter
than the message's own retention, at most the transfer delay longer). Blobs of
an index made before registration times existed count as registered at time 0
and expire on the first run.

The daemon's purge timer and ``p2pmsg retention purge`` call it after
``run_purge``; one PURGE audit record per room touched (ids and counts only).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..blobs import BlobStore
from .audit import AuditKind, AuditLog
from .retention import RetentionConfig

__all__ = ["BlobExpiry", "expire_blobs"]


@dataclass(frozen=True, slots=True)
class BlobExpiry:
    """What one :func:`expire_blobs` run did."""

    deleted: tuple[bytes, ...]
    """Roots of the blobs deleted, oldest first."""
    held: int
    """Blobs past their limit that a legal hold kept."""
    freed: int
    """Bytes of quota freed."""


def _finite_limits(config: RetentionConfig) -> list[int]:
    limits = [config.default_ms, *config.per_author_org.values(), *config.per_room.values()]
    return [v for v in limits if v is not None]


def expire_blobs(blobs: BlobStore, config: RetentionConfig, now_ms: int, *,
                 audit: AuditLog | None = None, dry_run: bool = False) -> BlobExpiry:
    """Delete blobs registered longer ago than their room's (or org's) retention limit.

    Blobs of rooms under legal hold are kept and counted in :attr:`BlobExpiry.held`.
    With ``dry_run`` nothing is deleted or audited; the result says what would be.
    """
    limits = _finite_limits(config)
    if not limits:
        return BlobExpiry((), 0, 0)
    deleted: list[bytes] = []
    held = freed = 0
    per_room: Counter[bytes] = Counter()
    for root, org, room, registered in blobs.registered_before(now_ms - min(limits)):
        limit = config.limit_for(room, org)
        if limit is None or registered >= now_ms - limit:
            continue
        if room in config.legal_holds:
            held += 1
            continue
        if not dry_run:
            freed += blobs.delete_blob(root)
        deleted.append(root)
        per_room[room] += 1
    if audit is not None and not dry_run:
        for room in sorted(per_room):
            audit.append(AuditKind.PURGE, now_ms, topic=room.hex(), erased=0,
                         blobs=per_room[room], reason="attachment_expired")
    return BlobExpiry(tuple(deleted), held, freed)
