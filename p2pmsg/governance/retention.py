"""Retention: which payloads are due for purge (pure planner) and purging them (store I/O).

Theory of operation
-------------------
Retention deletes **payloads**, never headers: the header commits to the payload
hash, so every log still verifies after a purge (``verify_run(..., full=True)``).
Purge is **local**: it erases this node's copy and never tells a peer to delete
(other organisations' nodes apply their own policies).

:func:`plan_purge` is a pure function of candidates, a :class:`RetentionConfig` and
``now_ms``. For each candidate:

1. rooms under **legal hold** are skipped entirely;
2. only **content** payloads are purged. A payload's class is read from its clear
   frame (:func:`classify_payload`): every messaging payload is a canonical CBOR
   array ``[kind, version, ...]`` and the *room payload* kind is in the clear even
   when the content is encrypted — SEALED (38) wraps every message a person wrote,
   whatever its inner kind; ROOM_CREATE..EPOCH_KEYS (32..37) and the organisation
   control kinds (64..95) are **structure**: membership, epoch keys, certificates
   and revocations, which :func:`~p2pmsg.messaging.room.resolve_room` needs forever
   and which name only device keys and organisation ids. Structure is never purged.
   Kinds this version does not know are kept unless ``purge_unknown`` is set
   (a newer peer's structure payload must not be destroyed by an older node);
3. the limit is the room's own (``per_room``), else the author's organisation's
   (``per_author_org``), else ``default_ms``; ``None`` keeps forever;
4. age is measured from the entry's HLC physical time. An author can stamp entries
   in the future (bounded by peers' drift checks): such entries are purged later
   than they should be — a documented limit (docs/gdpr.md).

:func:`collect_candidates` reads them from a :class:`~p2pmsg.store.base.Store` and
:func:`run_purge` plans, erases (``store.erase_payload``, secure delete on
SqliteStore) and writes one audit record per room. Given a ``blobs`` store, it
also deletes the **attachment blobs** of every purged message
(:func:`attachment_roots`), provided each is registered under the same room; the
count is in :attr:`PurgePlan.blobs_deleted` and the PURGE record. The roots come
from the message's clear refs (SEALED v2: no key needed, so a **relay** purges
blobs too, exactly as a member does); for a SEALED v1 message only a node whose
epoch ``keys`` open it learns its root. Blobs no visible message names are
reached by their registration time (:mod:`.attachments`) — docs/gdpr.md.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from .. import _cbor
from ..blobs import BlobStore
from ..entry import MAX_PAYLOAD_SIZE, Entry
from ..errors import DecodeError, ValidationError
from ..hlc import physical_ms
from ..messaging.content import (
    Attachment,
    AttachmentDescriptor,
    Content,
    Edit,
    Reaction,
    ReadReceipt,
)
from ..messaging.crypto import decrypt_content
from ..messaging.kinds import CONTROL_KINDS, Kind
from ..messaging.org import OrgState
from ..messaging.payloads import Sealed, decode_room_payload
from ..store.base import Store
from .audit import AuditKind, AuditLog

__all__ = [
    "PayloadClass",
    "PurgeCandidate",
    "PurgePlan",
    "RetentionConfig",
    "attachment_of",
    "attachment_roots",
    "classify_payload",
    "collect_candidates",
    "delete_attachment",
    "device_orgs",
    "iter_entries",
    "plan_purge",
    "run_purge",
]

DAY_MS = 24 * 3600 * 1000
_STRUCTURE_ROOM_KINDS = frozenset({Kind.ROOM_CREATE, Kind.MEMBER_ADD, Kind.MEMBER_REMOVE,
                                   Kind.MEMBER_LEAVE, Kind.MEMBER_ROLE, Kind.EPOCH_KEYS,
                                   Kind.RELAY_ADD, Kind.RELAY_REMOVE})


class PayloadClass(enum.Enum):
    CONTENT = "content"
    """What a person wrote (a SEALED room payload): subject to retention and erasure."""
    STRUCTURE = "structure"
    """Membership, relays, epoch keys, certificates, revocations: needed to resolve
    state; kept."""
    UNKNOWN = "unknown"
    """Not a payload kind this version knows (or not a messaging frame at all)."""


def classify_payload(payload: bytes) -> PayloadClass:
    """The class of a room or control payload, from its clear ``[kind, version]`` head."""
    try:
        value = _cbor.loads_canonical(payload, "payload", MAX_PAYLOAD_SIZE)
    except DecodeError:
        return PayloadClass.UNKNOWN
    if type(value) is not list or len(value) < 2 or type(value[0]) is not int:
        return PayloadClass.UNKNOWN
    kind = value[0]
    if kind == Kind.SEALED:
        return PayloadClass.CONTENT
    if kind in _STRUCTURE_ROOM_KINDS or kind in CONTROL_KINDS:
        return PayloadClass.STRUCTURE
    return PayloadClass.UNKNOWN


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """How long payloads are kept on this node. Milliseconds; None = forever."""

    default_ms: int | None = None
    per_author_org: Mapping[bytes, int | None] = field(default_factory=dict)
    """Limit for payloads written by devices of an organisation (by org id)."""
    per_room: Mapping[bytes, int | None] = field(default_factory=dict)
    """Limit for one room (topic); overrides the organisation and default limits."""
    legal_holds: frozenset[bytes] = frozenset()
    """Rooms whose payloads are never purged while the hold lasts."""
    purge_unknown: bool = False

    def limit_for(self, topic: bytes, author_org: bytes | None) -> int | None:
        if topic in self.per_room:
            return self.per_room[topic]
        if author_org is not None and author_org in self.per_author_org:
            return self.per_author_org[author_org]
        return self.default_ms


@dataclass(frozen=True, slots=True)
class PurgeCandidate:
    """A stored entry whose payload is present, as the planner needs to see it."""

    entry_id: bytes
    topic: bytes
    author: bytes
    author_org: bytes | None
    timestamp_ms: int
    payload_class: PayloadClass


@dataclass(frozen=True, slots=True)
class PurgePlan:
    erase: tuple[PurgeCandidate, ...]
    held: int = 0
    """Payloads due but in a room under legal hold."""
    kept_structure: int = 0
    kept_unknown: int = 0
    blobs_deleted: int = 0
    """Attachment blobs :func:`run_purge` deleted with the payloads (0 from the planner)."""

    def erase_ids(self) -> list[bytes]:
        return [c.entry_id for c in self.erase]


def plan_purge(
    candidates: Iterable[PurgeCandidate], config: RetentionConfig, now_ms: int
) -> PurgePlan:
    """The payloads due for purge at ``now_ms`` (pure; see the module docstring)."""
    erase: list[PurgeCandidate] = []
    held = kept_structure = kept_unknown = 0
    for c in candidates:
        limit = config.limit_for(c.topic, c.author_org)
        if limit is None or now_ms - c.timestamp_ms < limit:
            continue
        if c.payload_class is PayloadClass.STRUCTURE:
            kept_structure += 1
            continue
        if c.payload_class is PayloadClass.UNKNOWN and not config.purge_unknown:
            kept_unknown += 1
            continue
        if c.topic in config.legal_holds:
            held += 1
            continue
        erase.append(c)
    return PurgePlan(tuple(erase), held, kept_structure, kept_unknown)


def device_orgs(orgs: Mapping[bytes, OrgState]) -> dict[bytes, bytes]:
    """device key -> organisation id, from the organisations' control-topic states."""
    return {device: root for root, state in orgs.items() for device in state.devices}


def iter_entries(store: Store, topics: Iterable[bytes] | None = None) -> Iterator[Entry]:
    """Every stored entry of ``topics`` (default: all), log by log in seq order."""
    for topic in store.topics() if topics is None else topics:
        for head in store.heads(topic):
            yield from store.get_range(head.author, topic, 1, head.seq)


def collect_candidates(
    store: Store, authors: Mapping[bytes, bytes], topics: Iterable[bytes] | None = None
) -> list[PurgeCandidate]:
    """Candidates for every entry whose payload is present (``authors``: device -> org)."""
    out: list[PurgeCandidate] = []
    for entry in iter_entries(store, topics):
        payload = store.get_payload(entry.id)
        if not isinstance(payload, bytes):
            continue
        h = entry.header
        out.append(PurgeCandidate(entry.id, h.topic, h.author, authors.get(h.author),
                                  physical_ms(h.timestamp), classify_payload(payload)))
    return out


def _open(entry: Entry, payload: bytes, keys: Mapping[bytes, bytes]) -> Content | None:
    """The content of a SEALED payload if ``keys`` open it (and it checks), else None."""
    try:
        sealed = decode_room_payload(payload)
    except DecodeError:
        return None
    if not isinstance(sealed, Sealed) or sealed.epoch not in keys:
        return None
    h = entry.header
    try:
        return decrypt_content(keys[sealed.epoch], h.topic, h.author, h.seq, sealed)
    except ValidationError:  # DecryptionError, DecodeError, RefsMismatchError
        return None


def attachment_of(
    entry: Entry, payload: bytes, keys: Mapping[bytes, bytes]
) -> AttachmentDescriptor | None:
    """The attachment descriptor of a SEALED payload, if ``keys`` (epoch id -> AEAD
    key, :func:`~p2pmsg.messaging.timeline.open_epoch_keys`) open it; else None."""
    content = _open(entry, payload, keys)
    return content.descriptor if isinstance(content, Attachment) else None


def fold_target(entry: Entry, payload: bytes, keys: Mapping[bytes, bytes]) -> bytes | None:
    """The message an edit, reaction or read receipt modifies, if ``keys`` open it:
    erased with that link (``Store.erase_payload(folded_into=)``) it stays folded
    into its message on the timeline instead of showing as an unavailable one."""
    match _open(entry, payload, keys):
        case Edit(target, _) | Reaction(target, _):
            return target
        case ReadReceipt(up_to):
            return up_to
    return None


def attachment_roots(
    entry: Entry, payload: bytes, keys: Mapping[bytes, bytes] | None = None
) -> tuple[bytes, ...]:
    """The blob roots a SEALED payload names: its clear refs (v2, no key needed),
    else (v1) the decrypted descriptor's root if ``keys`` open it."""
    try:
        sealed = decode_room_payload(payload)
    except DecodeError:
        return ()
    if not isinstance(sealed, Sealed):
        return ()
    if sealed.version != 1:
        return sealed.refs.blobs
    desc = attachment_of(entry, payload, keys) if keys else None
    return (desc.content_hash,) if desc is not None else ()


def delete_attachment(
    blobs: BlobStore, entry: Entry, payload: bytes, keys: Mapping[bytes, bytes] | None = None
) -> int:
    """Delete the blobs ``payload`` names that are registered under the entry's room;
    returns how many were deleted (0 if none: truthy as "something deleted").

    The room check stops a message from naming (and so deleting) another room's blob.
    """
    deleted = 0
    for root in attachment_roots(entry, payload, keys):
        if blobs.room_of(root) == entry.header.topic:
            blobs.delete_blob(root)
            deleted += 1
    return deleted


def run_purge(
    store: Store,
    config: RetentionConfig,
    now_ms: int,
    *,
    authors: Mapping[bytes, bytes],
    audit: AuditLog | None = None,
    blobs: BlobStore | None = None,
    keys: Mapping[bytes, bytes] | None = None,
) -> PurgePlan:
    """Plan and execute a purge on ``store``; one PURGE audit record per room touched.

    With ``blobs``, the attachment blobs of purged messages are deleted too: from
    their clear refs (SEALED v2, no key needed) or, for v1 messages, when ``keys``
    (epoch id -> AEAD key, any rooms) open them. With ``keys``, purged edits,
    reactions and read receipts are erased with a link to their message
    (:func:`fold_target`), so the timeline does not list them as messages.
    """
    plan = plan_purge(collect_candidates(store, authors), config, now_ms)
    per_topic: Counter[bytes] = Counter()
    blobs_per_topic: Counter[bytes] = Counter()
    entries = ({e.id: e for e in iter_entries(store, {c.topic for c in plan.erase})}
               if (blobs is not None or keys) and plan.erase else {})
    for c in plan.erase:
        payload = store.get_payload(c.entry_id)
        entry = entries.get(c.entry_id)
        folded = None
        if entry is not None and isinstance(payload, bytes):
            if blobs is not None:
                deleted = delete_attachment(blobs, entry, payload, keys)
                if deleted:
                    blobs_per_topic[c.topic] += deleted
            if keys:
                folded = fold_target(entry, payload, keys)
        if store.erase_payload(c.entry_id, folded_into=folded):
            per_topic[c.topic] += 1
    plan = replace(plan, blobs_deleted=sum(blobs_per_topic.values()))
    if audit is not None:
        for topic in sorted(set(per_topic) | set(blobs_per_topic)):
            extra = {"blobs": blobs_per_topic[topic]} if blobs is not None else {}
            audit.append(AuditKind.PURGE, now_ms, topic=topic.hex(), erased=per_topic[topic],
                         **extra)
        if plan.held:
            audit.append(AuditKind.LEGAL_HOLD, now_ms, held=plan.held,
                         rooms=sorted(t.hex() for t in config.legal_holds))
    return plan
