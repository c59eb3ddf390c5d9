"""The ``Store`` protocol: what every storage backend provides.

A store holds signed entries (headers), payloads keyed by entry id, and fork
proofs. It keeps one invariant itself, cheaply: every log is contiguous — an entry
is accepted only if it extends its log (seq = height + 1 and backlink = head id).
Signature checks are the caller's job (:mod:`p2pmsg.validate`), done before
:meth:`Store.append`; the store never re-verifies signatures.

Implementations: :class:`~p2pmsg.store.memory.MemoryStore` (reference, for tests and
the simulator) and :class:`~p2pmsg.store.sqlite.SqliteStore` (default, durable).
Both pass the same test suite (tests/test_store.py).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..entry import Entry
from ..forks import ForkProof

__all__ = ["AppendResult", "LogHead", "Misbehaviour", "PayloadState", "Store"]


class PayloadState(enum.Enum):
    """Why :meth:`Store.get_payload` has no bytes to give."""

    MISSING = "missing"
    """Header known, payload never received (not fetched yet). Can be fetched."""
    ERASED = "erased"
    """Payload deliberately deleted (retention, redaction, erasure). Never re-fetched."""
    UNKNOWN = "unknown"
    """No entry with that id in this store."""


@dataclass(frozen=True, slots=True)
class LogHead:
    """The latest entry of one log: its author, seq (= height) and id."""

    author: bytes
    seq: int
    id: bytes


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an :meth:`Store.append` call did."""

    added: tuple[Entry, ...]
    """Entries newly stored, in the order given."""
    duplicates: int
    """Entries skipped because the same id was already stored (idempotent re-delivery)."""


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    """Evidence of author misbehaviour that is not a fork proof, kept by the store.

    Today the one kind is ``"bad_signature"``: an entry accepted by chain
    verification (its run's last signature was valid) whose own signature is not.
    The node freezes the entry's log from ``entry.seq`` on and reloads these
    records at start-up (:meth:`Store.misbehaviours`).
    """

    kind: str
    """Stable code of what was seen, e.g. ``"bad_signature"``."""
    entry: Entry
    """The offending entry (its header and signature as received)."""
    peer_id: bytes = b""
    """Node id of the peer that delivered it (empty if unknown)."""


@runtime_checkable
class Store(Protocol):
    """Storage for logs, payloads and fork evidence. Not thread-safe; one owner."""

    def append(
        self,
        entries: Sequence[Entry],
        payloads: Mapping[bytes, bytes] | None = None,
        *,
        payloads_verified: bool = False,
    ) -> AppendResult:
        """Atomically add verified entries (and optional payloads keyed by entry id).

        All or nothing: on any error nothing of the batch is stored. Each entry must
        extend its log, counting earlier entries of the same batch. An entry whose id
        is already stored is skipped. Payloads must match their headers: the store
        hashes each one, unless ``payloads_verified=True`` says the caller already
        ran :func:`p2pmsg.validate.verify_payload` on every payload given (as
        :mod:`p2pmsg.sync` does on receipt). Never pass it for unchecked bytes.

        When this returns, the batch is durable (for ``SqliteStore``: fsync'd; it
        survives ``kill -9`` and power loss).

        Raises:
            ForkError: an entry conflicts with a stored one at the same (author,
                topic, seq), or its log is frozen by an earlier fork. The proof is
                recorded (:meth:`forks`) before raising; the batch is not stored.
            StoreError: an entry does not extend its log (gap, wrong backlink), or a
                payload does not match its header (checked unless
                ``payloads_verified``).
        """
        ...

    def head(self, author: bytes, topic: bytes) -> Entry | None:
        """The latest entry of the (author, topic) log, or None if empty."""
        ...

    def heads(self, topic: bytes) -> list[LogHead]:
        """One :class:`LogHead` per non-empty log of ``topic``, sorted by author."""
        ...

    def topics(self) -> list[bytes]:
        """Every topic with at least one entry, sorted."""
        ...

    def get_range(self, author: bytes, topic: bytes, start: int, end: int) -> list[Entry]:
        """Entries ``start..end`` (inclusive) of a log, in seq order; missing ones omitted."""
        ...

    def get_entry(self, entry_id: bytes) -> Entry | None:
        """The entry with this id, or None."""
        ...

    def put_payload(self, entry_id: bytes, payload: bytes) -> bool:
        """Store the payload of a stored entry after checking it against the header.

        Returns False (and stores nothing) if the payload was erased — an erased
        payload is never resurrected by a later fetch — or is already present.

        Raises:
            StoreError: unknown entry, or the payload does not match the header.
        """
        ...

    def get_payload(self, entry_id: bytes) -> bytes | PayloadState:
        """The payload bytes, or why there are none (:class:`PayloadState`)."""
        ...

    def erase_payload(self, entry_id: bytes, *, folded_into: bytes | None = None) -> bool:
        """Delete a payload for good, keeping the header. True if the entry exists.

        Durable on return; for ``SqliteStore`` the bytes are overwritten on disk
        (``secure_delete``), not merely unlinked from the b-tree.

        ``folded_into``: the id of the message this entry modified (an edit or a
        reaction a redaction erases; :attr:`p2pmsg.messaging.redaction.
        RedactionTombstone.folded`). Once the payload is gone nothing else links
        the entry to that message, so the store keeps the link (:meth:`folded`) in
        the same transaction as the erasure: there is no moment, crash included,
        where the payload is gone and the link not yet kept. It is an argument of
        the erasure rather than a separate setter for that atomicity, and because a
        link is only ever meaningful for an erased entry. Local metadata (two entry
        ids, no content): never replicated, never changed once kept (the first
        link given for an entry stays); given for an entry already erased, it is
        still kept if the entry has none.

        Both stores here also count erasures in an ``erasures`` attribute (int,
        in-process): payloads erased, plus links kept for entries already erased —
        it moves whenever what :meth:`get_payload` or :meth:`folded` says of an
        erased entry changes. Optional for other stores: the messenger keeps cached
        state and plaintext only while that count stands still, and re-reads
        everything on each call from a store without it.

        Raises:
            StoreError: ``folded_into`` is given but empty (nothing is changed).
        """
        ...

    def folded(self, topic: bytes) -> dict[bytes, bytes]:
        """Erased entries of ``topic`` kept with a ``folded_into`` link
        (:meth:`erase_payload`): entry id -> id of the message it was folded into.
        The timeline leaves these out instead of listing them as unavailable
        messages (:func:`p2pmsg.messaging.timeline.decrypt_timeline`)."""
        ...

    def missing_payloads(self, topic: bytes, limit: int = 1000) -> list[bytes]:
        """Ids of entries in ``topic`` whose payload is MISSING (not erased), oldest first."""
        ...

    def record_fork(self, proof: ForkProof) -> bool:
        """Keep a (verified) fork proof and freeze its log. False if already known."""
        ...

    def forks(self) -> list[ForkProof]:
        """Every fork proof recorded, in the order recorded."""
        ...

    def is_frozen(self, author: bytes, topic: bytes) -> bool:
        """True if a fork was recorded for this log: it accepts no further entries."""
        ...

    def record_misbehaviour(self, record: Misbehaviour) -> bool:
        """Keep misbehaviour evidence durably. False (nothing stored) if a record of
        the same kind for the same log is already kept: the first one is the evidence.
        """
        ...

    def misbehaviours(self) -> list[Misbehaviour]:
        """Every misbehaviour record, in the order recorded."""
        ...

    def close(self) -> None:
        """Release resources. Idempotent."""
        ...
