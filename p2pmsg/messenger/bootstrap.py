"""Pure helpers to set a messenger up: org control logs, planned rooms, topics (no I/O).

Why these exist
---------------
* **Org bootstrap.** An organisation's control topic only counts entries written by
  its root key or by an ADMIN device already certified there, so the *first*
  certificates must be signed into the log by the root itself.
  :func:`org_control_items` builds those root-authored entries; load them into the
  store of one of the org's nodes *before* opening it (``store.append``) and they
  replicate from there. The root key can then go back offline: an ADMIN device
  publishes later certificates and revocations through its messenger.
* **Topics at open time.** The messenger adds the topics it needs to a running
  node (``Node.add_topics``; docs/api.md, "Interest"), but :func:`messenger_topics`
  still gives the set to open a node with, and :func:`plan_room` fixes a room's
  topic before anything is opened (then
  :meth:`~p2pmsg.messenger.Messenger.create_room_from`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..certs import DeviceCertificate
from ..entry import Entry, create_entry
from ..hlc import COUNTER_BITS
from ..identity import Identity
from ..messaging import MemberSpec, RoomKind, compose_certificate, compose_room, control_topic

__all__ = ["RoomPlan", "messenger_topics", "org_control_items", "plan_room"]


def org_control_items(
    root: Identity, certs: Sequence[DeviceCertificate], *, start_ms: int
) -> list[tuple[Entry, bytes]]:
    """Root-signed entries (seq 1..n) of ``root``'s control topic publishing ``certs``.

    Timestamps are HLC values from ``start_ms`` on, one millisecond apart. Pass the
    result to ``store.append([e for e, _ in items], {e.id: p for e, p in items})``.
    """
    topic = control_topic(root.public_key)
    items: list[tuple[Entry, bytes]] = []
    previous: Entry | None = None
    for i, cert in enumerate(certs):
        if cert.org != root.public_key:
            raise ValueError("a certificate of another organisation")
        payload = compose_certificate(cert)
        entry = create_entry(
            root, topic, i + 1, None if previous is None else previous.id,
            (start_ms + i) << COUNTER_BITS, payload, [],
        )
        items.append((entry, payload))
        previous = entry
    return items


@dataclass(frozen=True, slots=True)
class RoomPlan:
    """A room composed but not yet written: its topic is already final."""

    topic: bytes
    payload: bytes
    """The ROOM_CREATE payload: appended at seq 1 of the creator's log in ``topic``."""
    creator: bytes


def plan_room(
    creator: Identity,
    creator_org: bytes,
    members: Sequence[MemberSpec],
    *,
    kind: RoomKind = RoomKind.GROUP,
    created_ms: int,
) -> RoomPlan:
    """Compose a room now, create it later with ``Messenger.create_room_from(plan)``."""
    topic, payload = compose_room(creator, creator_org, kind, members, created_ms)
    return RoomPlan(topic, payload, creator.public_key)


def messenger_topics(orgs: Iterable[bytes], rooms: Iterable[bytes] = ()) -> list[bytes]:
    """The topics a device's node must replicate: every known org's control topic
    (certificates and revocations of room members) and the rooms it takes part in."""
    return sorted({control_topic(o) for o in orgs} | set(rooms))
