"""Commands the node gives the sync machine (``SyncConnection.send(command)``).

Each returns the bytes to write to the transport (the same bytes ``data_to_send()``
would drain). Misuse (a command the state does not allow, an answer to a request
that was never made) raises :class:`~p2pmsg.errors.LocalProtocolError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..entry import Entry
from ..forks import ForkProof

__all__ = [
    "AddInterest",
    "Close",
    "Command",
    "EntriesApplied",
    "Offer",
    "RequestPayloads",
    "SendEntries",
    "SendForkProof",
    "SendPayloads",
]


@dataclass(frozen=True, slots=True)
class SendEntries:
    """Answer to the outstanding ``EntriesNeeded``: its entries, in seq order.

    Fewer entries than asked (or none) closes the peer's request at what was sent.
    """

    entries: Sequence[Entry]
    payloads: Mapping[bytes, bytes] = field(default_factory=dict, repr=False)
    """Payloads to send along, by entry id; entries without one travel headers-only."""


@dataclass(frozen=True, slots=True)
class EntriesApplied:
    """The batch of ``EntriesReceived``/``PayloadsReceived`` with this token is handled."""

    token: int


@dataclass(frozen=True, slots=True)
class Offer:
    """Live push of new entries (local appends, or entries received from others).

    The machine forwards only entries of topics granted to the peer (which the peer
    asked for), grouped into runs; silently ignores the rest, and ignores offers
    before the handshake is complete (reconciliation covers them).
    """

    entries: Sequence[Entry]
    payloads: Mapping[bytes, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class RequestPayloads:
    """Fetch the payloads of these (stored, header-only) entries from the peer.

    Entries of topics the peer does not grant us are skipped; ids already asked are
    not asked twice. Answers come as ``PayloadsReceived``.
    """

    entries: Sequence[Entry]


@dataclass(frozen=True, slots=True)
class SendPayloads:
    """Answer (part of) a ``PayloadsNeeded``: id -> bytes, or None = unavailable.

    ``entries`` holds the header of every id answered with bytes (the machine checks
    the topic and the payload hash before sending).
    """

    payloads: Mapping[bytes, bytes | None]
    entries: Sequence[Entry] = ()


@dataclass(frozen=True, slots=True)
class SendForkProof:
    """Pass a verified fork proof to the peer (only if its topic is granted to it)."""

    proof: ForkProof


@dataclass(frozen=True, slots=True)
class Close:
    """Close the session in order; the peer sees ``reason``. Idempotent."""

    reason: str = "closed"


@dataclass(frozen=True, slots=True)
class AddInterest:
    """Ask the peer for more topics in a running session (INTEREST message).

    Only topics the policy lets the peer hold are asked (as in ``start``); topics
    the peer already grants us, or that are asked and not answered yet, are skipped.
    Before the handshake completes the topics are held back and asked once it does.
    Answers come as ``InterestUpdated``; newly granted topics are reconciled like
    those of the HELLO (``TopicSynced`` follows). Raises LocalProtocolError for a
    bad topic id, or when the session would ask more than ``MAX_TOPICS`` topics.
    """

    topics: Sequence[bytes]


Command = (SendEntries | EntriesApplied | Offer | RequestPayloads | SendPayloads
           | SendForkProof | Close | AddInterest)
