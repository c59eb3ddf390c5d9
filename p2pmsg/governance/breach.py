"""Breach triage (GDPR Art. 33): what could a device or a node read? (pure)

:func:`device_exposure` answers "device X was lost/compromised — which rooms and key
epochs did it have access to?" from resolved room views: a device could decrypt
exactly the epochs whose EPOCH_KEYS entry sealed a secret to it (it may have kept
those secrets), and it could read the room's structure (membership) for as long as
it was a member. Epoch ids, indexes and HLC start times let the DPO bound the
affected period; the message count per epoch sizes the incident without revealing
content.

:func:`node_exposure` answers the same for a peer *node*: the topics the governance
policy lets it replicate (ciphertext plus plaintext structure); it holds no epoch
secrets unless one of its own devices was a recipient.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..messaging.payloads import Sealed
from ..messaging.room import RoomView
from ..policy import Policy

__all__ = ["EpochAccess", "RoomExposure", "device_exposure", "node_exposure"]


@dataclass(frozen=True, slots=True)
class EpochAccess:
    epoch: bytes
    """Id of the EPOCH_KEYS entry that started the epoch."""
    index: int
    started: int
    """HLC timestamp of the epoch's start."""
    messages: int
    """SEALED entries encrypted under this epoch known to this node."""


@dataclass(frozen=True, slots=True)
class RoomExposure:
    topic: bytes
    member_now: bool
    epochs: tuple[EpochAccess, ...]

    @property
    def messages(self) -> int:
        return sum(e.messages for e in self.epochs)


def device_exposure(device: bytes, views: Iterable[RoomView]) -> list[RoomExposure]:
    """Rooms where ``device`` is a member or received an epoch key, with those epochs."""
    out: list[RoomExposure] = []
    for view in views:
        counts: dict[bytes, int] = {}
        for applied in view.applied:
            if isinstance(applied.payload, Sealed):
                counts[applied.payload.epoch] = counts.get(applied.payload.epoch, 0) + 1
        epochs = tuple(EpochAccess(e.id, e.index, e.timestamp, counts.get(e.id, 0))
                       for e in view.epochs if device in e.recipients)
        member = device in view.members
        if epochs or member:
            out.append(RoomExposure(view.topic, member, epochs))
    return sorted(out, key=lambda r: r.topic)


def node_exposure(policy: Policy, node_key: bytes, topics: Iterable[bytes]) -> list[bytes]:
    """The topics among ``topics`` that ``node_key`` may replicate under ``policy`` now."""
    return sorted(t for t in topics if policy.may_read(node_key, t))
