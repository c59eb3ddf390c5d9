"""Events the sync machine reports to the node (``SyncConnection.next_event()``).

Each is a small frozen dataclass. The node answers some of them with a command
(commands.py): ``EntriesNeeded`` -> ``SendEntries``; ``EntriesReceived`` and
``PayloadsReceived`` -> ``EntriesApplied(token)``; ``PayloadsNeeded`` ->
``SendPayloads``. Nothing here is ever sent to the peer as-is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..entry import Entry
from ..errors import RemoteProtocolError
from ..forks import ForkProof

__all__ = [
    "BlobData",
    "ConnectionClosed",
    "EntriesNeeded",
    "EntriesReceived",
    "Event",
    "ForkProofReceived",
    "HelloReceived",
    "InterestUpdated",
    "LogDiverged",
    "PayloadsNeeded",
    "PayloadsReceived",
    "TopicSynced",
]


@dataclass(frozen=True, slots=True)
class HelloReceived:
    """The handshake is complete (both HELLO and GRANT exchanged); session is live."""

    peer_id: bytes
    """The transport-authenticated node key of the peer (equal to its HELLO node id)."""
    version: int
    """Protocol version the peer speaks."""
    topics: frozenset[bytes]
    """Topics the peer asked for that our policy grants: we serve exactly these."""
    peer_granted: frozenset[bytes] = frozenset()
    """Topics we asked for that the peer grants us: we accept entries only of these."""


@dataclass(frozen=True, slots=True)
class InterestUpdated:
    """The topics of an established session changed (INTEREST / INTEREST_GRANT).

    Emitted when we granted the peer's INTEREST (``topics`` grew by ``served``) or
    the peer answered ours (``peer_granted`` grew by ``received``). The new topics
    are reconciled like the HELLO's; ``TopicSynced`` follows for each.
    """

    topics: frozenset[bytes]
    """Everything we serve the peer now."""
    peer_granted: frozenset[bytes]
    """Everything the peer serves us now."""
    served: frozenset[bytes] = frozenset()
    """Topics newly granted to the peer by this change."""
    received: frozenset[bytes] = frozenset()
    """Topics newly granted to us by this change."""
    denied: frozenset[bytes] = frozenset()
    """Topics of the INTEREST that our policy (``served`` side) or the peer's
    (``received`` side) did not grant."""


@dataclass(frozen=True, slots=True)
class EntriesNeeded:
    """The peer asked for entries ``start..end`` of a log we hold.

    Answer with ``SendEntries`` holding ``store.get_range(author, topic, start, end)``
    (and the payloads you have). ``end`` never exceeds our index height. At most one
    ``EntriesNeeded`` is outstanding; the next comes after you answer and the flow
    control window has drained.
    """

    topic: bytes
    author: bytes
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class EntriesReceived:
    """A chain-verified run of one log, extending our head (index or pending).

    The last signature of the run and every hash link were checked (chain
    verification), payloads present were checked against their headers. Append to
    the store, ``index.update(added)``, run ``find_bad_signatures`` lazily, then send
    ``EntriesApplied(token)`` — also when the store refused the batch — to return
    the flow-control credit.
    """

    entries: tuple[Entry, ...]
    payloads: Mapping[bytes, bytes] = field(repr=False)
    """Payloads that came with the run, keyed by entry id (headers-only runs: empty)."""
    token: int = 0
    """Pass back in ``EntriesApplied`` once the batch is handled."""
    live: bool = False
    """True for a live push (new entries), False for an answer to our request."""


@dataclass(frozen=True, slots=True)
class PayloadsNeeded:
    """The peer asked for payloads of these entries of ``topic`` (a granted topic).

    Answer with ``SendPayloads({id: bytes | None}, entries=headers)``; None (erased,
    missing, or the id is not an entry of ``topic``) is sent as "unavailable".
    """

    topic: bytes
    entry_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PayloadsReceived:
    """Payloads we requested, each verified against the header we asked with."""

    topic: bytes
    payloads: Mapping[bytes, bytes] = field(repr=False)
    unavailable: tuple[bytes, ...] = ()
    """Ids the peer does not have (erased or never fetched): not an error."""
    token: int = 0
    """Pass back in ``EntriesApplied`` once stored (returns flow-control credit)."""


@dataclass(frozen=True, slots=True)
class ForkProofReceived:
    """A verified fork proof: from the peer, or built from a conflicting entry it sent.

    Record it (``store.record_fork``), freeze the log, audit-log it.
    """

    proof: ForkProof


@dataclass(frozen=True, slots=True)
class LogDiverged:
    """The peer sent a validly signed entry at ``seq`` that does not extend our head.

    Its backlink names another entry at ``seq - 1`` than ours: the author forked
    below our head. The session stops replicating that log. The conflicting entry
    is kept here as evidence; the node may fetch the peer's ``seq - 1`` to build a
    full :class:`~p2pmsg.forks.ForkProof`.
    """

    topic: bytes
    author: bytes
    seq: int
    entry: Entry


@dataclass(frozen=True, slots=True)
class TopicSynced:
    """Initial reconciliation of ``topic`` finished and every range we requested
    during it has arrived (or been closed by the peer). Emitted once per topic."""

    topic: bytes


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The session is over; no more events follow. Audit-log ``error`` if set."""

    reason: str
    """Stable code: ``closed`` (we closed), ``peer_closed``, ``eof``, ``idle_timeout``,
    or a RemoteProtocolError reason (``frame_too_large``, ``bad_signature``, ...)."""
    error: RemoteProtocolError | None = None
    """The peer's protocol violation, if that is why the session closed."""
    detail: str = ""
    """For ``peer_closed``: the reason code the peer gave; for ``closed``: ours."""


@dataclass(frozen=True, slots=True)
class BlobData:
    """Bytes of the peer's blob-transfer stream (a BLOB frame): feed them to the
    session's :class:`p2pmsg.blobs.BlobTransfer` (``receive_data``)."""

    data: bytes = field(repr=False)


Event = (HelloReceived | EntriesNeeded | EntriesReceived | PayloadsNeeded | PayloadsReceived
         | ForkProofReceived | LogDiverged | TopicSynced | ConnectionClosed | InterestUpdated
         | BlobData)
