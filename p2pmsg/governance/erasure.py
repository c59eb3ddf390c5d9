"""Erasure of a person's data on this node (GDPR Art. 17): payloads, keys, tombstone.

Theory of operation
-------------------
A person is identified by their **device keys** (the organisation's admin resolves
person -> devices from its directory; p2pmsg never stores names of persons).
:func:`erase_person`:

1. **payloads** — erases (``store.erase_payload``: secure delete, WAL truncated on
   SqliteStore) every *content* payload authored by those devices in any topic —
   SEALED messages and unknown-kind payloads (see
   :func:`~p2pmsg.governance.retention.classify_payload`). *Structure* payloads
   (room creation, membership, epoch-key distribution, certificates) are kept: they
   hold only device keys and organisation ids, every other member's room state
   depends on them (Art. 17(3): rights of others), and deleting them would make
   the rooms unresolvable on this node. Headers stay, so every log still verifies.
2. **keys (crypto-shredding)** — asks the node's :class:`EpochSecretStore` to
   forget the epoch secrets under which the erased messages were encrypted. With
   :attr:`ShredScope.EXCLUSIVE` (default) an epoch is forgotten only if no
   remaining payload on this node still needs it (other people's messages stay
   readable); :attr:`ShredScope.ALL` forgets every such epoch (other members'
   messages of those epochs become unreadable *here*). Copies of the ciphertext
   elsewhere (backups, relays) are unreadable without a key this node no longer
   has — but devices that received the secret keep it: shredding is local.
   Forgetting a key in the keyring is not enough on a member node: the epoch
   secret is also in the room log, sealed to this node's device key inside the
   EPOCH_KEYS payload, so the device key and the store could re-derive it.
   :func:`shred_epoch_payloads` therefore also erases the EPOCH_KEYS payloads of
   shredded epochs (secure delete, like any erased payload; never re-fetched from
   peers) — except a room's *current* epoch, which the room still needs for new
   messages (the keyring forgets it; the next rekey replaces it). The room still
   resolves: an epoch entry without payload is kept in the order with no effect,
   so the shredded epoch simply disappears from this node's view of the room.
3. **tombstone** — a :class:`Tombstone` (what: erased entry ids and shredded epoch
   ids; who: the requester reference and the subject devices; when) signed by the
   node key in :attr:`~p2pmsg.identity.Domain.TOMBSTONE`; verify with
   :func:`verify_tombstone`.
4. **audit** — one ERASURE record with counts and the tombstone digest.

**Attachment blobs**: given a ``blobs`` store and epoch ``keys``, the blob of every
erased attachment message those keys open is deleted too (if registered under
the message's room), before the payload — the per-file key lives only there.
Blobs of messages this node cannot decrypt stay: the blob store records the
uploading organisation and room, not the device, so it cannot tell whose they
are; their per-file keys are gone with the erased payloads (crypto-shredding),
and the room's retention or ``BlobStore.purge_room`` removes them (docs/gdpr.md).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .. import _cbor
from ..blobs import BlobStore
from ..errors import DecodeError, Reason, ValidationError
from ..identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Domain, Identity, verify
from ..messaging.payloads import Sealed, decode_room_payload
from ..messaging.room import RoomView
from ..store.base import Store
from .audit import AuditKind, AuditLog
from .retention import PayloadClass, classify_payload, delete_attachment, iter_entries

__all__ = [
    "EpochSecretStore",
    "MemoryEpochSecrets",
    "ShredScope",
    "Tombstone",
    "decode_tombstone",
    "erase_person",
    "shred_epoch_payloads",
    "verify_tombstone",
]

TOMBSTONE_VERSION = 1
MAX_TOMBSTONE_SIZE = 16 * 1024 * 1024
MAX_REF = 256


@runtime_checkable
class EpochSecretStore(Protocol):
    """Where a node keeps epoch secrets it opened (the keys that decrypt room content).

    The node (or a device embedding the library) implements it over its key store;
    erasure calls :meth:`forget`, which must make the secrets unrecoverable from
    this node (overwrite/secure-delete in durable implementations).
    """

    def epochs(self) -> frozenset[bytes]:
        """Ids of every epoch whose secret is held."""
        ...

    def forget(self, epoch_ids: Iterable[bytes]) -> list[bytes]:
        """Destroy these epochs' secrets and refuse them from now on (held or not —
        a durable keyring remembers the ids, so they are never re-opened from the
        room log); returns the ids that were held, sorted. The tombstone lists every
        id passed (:func:`erase_person`)."""
        ...


class MemoryEpochSecrets:
    """Reference :class:`EpochSecretStore` in memory (tests, short-lived processes)."""

    def __init__(self) -> None:
        self._secrets: dict[bytes, bytes] = {}

    def put(self, epoch_id: bytes, secret: bytes) -> None:
        self._secrets[epoch_id] = secret

    def get(self, epoch_id: bytes) -> bytes | None:
        return self._secrets.get(epoch_id)

    def epochs(self) -> frozenset[bytes]:
        return frozenset(self._secrets)

    def forget(self, epoch_ids: Iterable[bytes]) -> list[bytes]:
        return sorted(e for e in set(epoch_ids) if self._secrets.pop(e, None) is not None)


class ShredScope(enum.Enum):
    EXCLUSIVE = "exclusive"
    """Forget an epoch only if no payload left on this node was encrypted under it."""
    ALL = "all"
    """Forget every epoch the erased messages used."""


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A node's signed statement that it erased a person's data."""

    node: bytes
    request_ref: str
    """The erasure request's reference (ticket id); no names of persons."""
    requested_ms: int
    executed_ms: int
    devices: tuple[bytes, ...]
    erased: tuple[bytes, ...]
    """Ids of the entries whose payloads were erased (headers kept), sorted."""
    shredded: tuple[bytes, ...]
    """Ids of the epochs whose secrets were destroyed, sorted."""
    signature: bytes = b""

    def body(self) -> bytes:
        return _cbor.dumps([TOMBSTONE_VERSION, self.node, self.request_ref, self.requested_ms,
                            self.executed_ms, list(self.devices), list(self.erased),
                            list(self.shredded)])

    def to_bytes(self) -> bytes:
        return _cbor.dumps([self.body(), self.signature])

    def digest(self) -> bytes:
        return hashlib.blake2b(self.to_bytes(), digest_size=32).digest()


def _keys(value: object, size: int) -> bool:
    return (type(value) is list and all(type(k) is bytes and len(k) == size for k in value)
            and value == sorted(set(value)))


def decode_tombstone(data: bytes) -> Tombstone:
    """Parse tombstone bytes (no signature check). Raises only DecodeError."""
    outer = _cbor.loads_canonical(data, "tombstone", MAX_TOMBSTONE_SIZE)
    if type(outer) is not list or len(outer) != 2 or not all(type(x) is bytes for x in outer):
        raise DecodeError(Reason.MALFORMED, "tombstone: expected [body, signature]")
    body_bytes, sig = outer
    body = _cbor.loads_canonical(body_bytes, "tombstone body", MAX_TOMBSTONE_SIZE)
    if type(body) is not list or not body or body[0] != TOMBSTONE_VERSION:
        raise DecodeError(Reason.UNKNOWN_VERSION, "tombstone: unknown version")
    if len(body) != 8:
        raise DecodeError(Reason.MALFORMED, "tombstone: expected 8 fields")
    _, node, ref, req, done, devices, erased, shredded = body
    ok = (type(node) is bytes and len(node) == PUBLIC_KEY_SIZE and type(ref) is str
          and len(ref) <= MAX_REF and type(req) is int and type(done) is int
          and 0 <= req < 1 << 64 and 0 <= done < 1 << 64
          and _keys(devices, PUBLIC_KEY_SIZE) and _keys(erased, 32) and _keys(shredded, 32)
          and len(sig) == SIGNATURE_SIZE)
    if not ok:
        raise DecodeError(Reason.MALFORMED, "tombstone: a field has the wrong type or size")
    return Tombstone(node, ref, req, done, tuple(devices), tuple(erased), tuple(shredded), sig)


def verify_tombstone(data: bytes, node_key: bytes) -> Tombstone:
    """Decode and check the node's signature. DecodeError or ValidationError."""
    stone = decode_tombstone(data)
    if stone.node != node_key:
        raise ValidationError(Reason.WRONG_ISSUER, "tombstone signed by another node")
    if not verify(node_key, Domain.TOMBSTONE, stone.body(), stone.signature):
        raise ValidationError(Reason.BAD_SIGNATURE, "tombstone signature invalid")
    return stone


def _sealed_epoch(payload: bytes) -> bytes | None:
    try:
        decoded = decode_room_payload(payload)
    except DecodeError:
        return None
    return decoded.epoch if isinstance(decoded, Sealed) else None


def erase_person(  # noqa: PLR0917 - all required, distinct roles
    store: Store,
    devices: Iterable[bytes],
    node: Identity,
    request_ref: str,
    requested_ms: int,
    now_ms: int,
    *,
    secrets: EpochSecretStore | None = None,
    shred: ShredScope = ShredScope.EXCLUSIVE,
    audit: AuditLog | None = None,
    blobs: BlobStore | None = None,
    keys: Mapping[bytes, bytes] | None = None,
) -> Tombstone:
    """Erase the content written by ``devices`` on this node; return the signed tombstone.

    With ``blobs``, the attachment blobs of the erased messages are deleted too
    (counted in the audit record): from their clear refs (SEALED v2, no key needed),
    or for v1 messages when ``keys`` (epoch id -> AEAD key) open them.
    """
    subject = tuple(sorted(set(devices)))
    if not subject or any(len(d) != PUBLIC_KEY_SIZE for d in subject):
        raise ValueError("give at least one 32-byte device key")
    if len(request_ref) > MAX_REF:
        raise ValueError(f"request reference longer than {MAX_REF} characters")
    wanted = set(subject)
    erased: list[bytes] = []
    used_epochs: set[bytes] = set()
    still_needed: set[bytes] = set()
    blobs_deleted = 0
    for entry in iter_entries(store):
        payload = store.get_payload(entry.id)
        if not isinstance(payload, bytes):
            continue
        epoch = _sealed_epoch(payload)
        if entry.author in wanted and classify_payload(payload) is not PayloadClass.STRUCTURE:
            if blobs is not None:  # clear refs (SEALED v2), or v1 opened with keys
                blobs_deleted += delete_attachment(blobs, entry, payload, keys)
            store.erase_payload(entry.id)
            erased.append(entry.id)
            if epoch is not None:
                used_epochs.add(epoch)
        elif epoch is not None:
            still_needed.add(epoch)
    to_shred = used_epochs if shred is ShredScope.ALL else used_epochs - still_needed
    shredded: list[bytes] = []
    if secrets is not None:  # every such epoch is refused from now on, held or not
        secrets.forget(to_shred)
        shredded = sorted(to_shred)
    unsigned = Tombstone(node.public_key, request_ref, requested_ms, now_ms, subject,
                         tuple(sorted(erased)), tuple(sorted(shredded)))
    stone = Tombstone(unsigned.node, request_ref, requested_ms, now_ms, subject,
                      unsigned.erased, unsigned.shredded,
                      node.sign(Domain.TOMBSTONE, unsigned.body()))
    if audit is not None:
        audit.append(AuditKind.ERASURE, now_ms, request=request_ref,
                     devices=[d.hex() for d in subject], erased=len(erased),
                     shredded=len(shredded), blobs=blobs_deleted,
                     kept_epochs=len(used_epochs - set(shredded)),
                     tombstone=stone.digest().hex())
    return stone


def shred_epoch_payloads(store: Store, views: Iterable[RoomView],
                         epoch_ids: Iterable[bytes], device: bytes) -> list[bytes]:
    """Erase the EPOCH_KEYS payloads (the sealed epoch secrets) of ``epoch_ids`` in
    the rooms of ``views`` that are sealed to ``device`` (this node's key), except
    each room's current epoch; returns the epoch ids whose payload this call
    erased. Call it with the epochs a keyring has just forgotten
    (:func:`erase_person`'s ``Tombstone.shredded``, retention's unneeded epochs) so
    the secret cannot be re-derived from the log either. Epochs not sealed to
    ``device`` are left alone: this node cannot open them anyway, and members
    syncing from it (a relay) may still need them."""
    wanted = set(epoch_ids)
    erased: list[bytes] = []
    for view in views:
        current = view.current_epoch
        for epoch in view.epochs:
            if (epoch.id in wanted and device in epoch.recipients
                    and (current is None or epoch.id != current.id)
                    and isinstance(store.get_payload(epoch.id), bytes)
                    and store.erase_payload(epoch.id)):
                erased.append(epoch.id)
    return erased
