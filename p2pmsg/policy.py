"""Who may connect, and who may read which topic: the replication policy.

The node asks :meth:`Policy.allow_peer` once per connection, right after the
transport has authenticated the peer's node key (before any sync byte flows), and
the sync machine asks :meth:`Policy.may_read` for every topic a peer asks for; a
topic the policy denies is never offered to, nor accepted from, that peer.

Two implementations:

* :class:`TopicPolicy` — the default. Every topic lists its readers explicitly
  (need-to-know); unknown peers and unlisted topics are denied.
* :class:`AllowAllPolicy` — lets everybody read everything. Explicit opt-in for
  tests and demos only.

Policies are pure (no I/O) so the sans-IO sync machine may call them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

__all__ = ["AllowAllPolicy", "Policy", "TopicPolicy"]


@runtime_checkable
class Policy(Protocol):
    """The two questions a node asks before it replicates anything."""

    def allow_peer(self, peer_id: bytes) -> bool:
        """True if the peer (its authenticated node key) may hold a session at all."""
        ...

    def may_read(self, peer_id: bytes, topic: bytes) -> bool:
        """True if ``peer_id`` may receive (and send us) the logs of ``topic``."""
        ...


class TopicPolicy:
    """Explicit readers per topic; everything not listed is denied.

    ``readers`` maps a topic id to the node keys that may replicate it. A peer is
    allowed to connect if it reads at least one topic or is listed in ``peers``
    (for example a relay that is added to topics later).
    """

    __slots__ = ("_extra_peers", "_readers")

    def __init__(
        self,
        readers: Mapping[bytes, Iterable[bytes]] | None = None,
        peers: Iterable[bytes] = (),
    ) -> None:
        self._readers: dict[bytes, set[bytes]] = {
            topic: set(ids) for topic, ids in (readers or {}).items()
        }
        self._extra_peers: set[bytes] = set(peers)

    def grant(self, topic: bytes, peer_id: bytes) -> None:
        """Let ``peer_id`` read ``topic`` from now on (new sessions see the change)."""
        self._readers.setdefault(topic, set()).add(peer_id)

    def revoke(self, topic: bytes, peer_id: bytes) -> None:
        """Stop offering ``topic`` to ``peer_id`` in new sessions."""
        self._readers.get(topic, set()).discard(peer_id)

    def readers(self, topic: bytes) -> frozenset[bytes]:
        """The node keys allowed to read ``topic``."""
        return frozenset(self._readers.get(topic, ()))

    def allow_peer(self, peer_id: bytes) -> bool:
        if peer_id in self._extra_peers:
            return True
        return any(peer_id in ids for ids in self._readers.values())

    def may_read(self, peer_id: bytes, topic: bytes) -> bool:
        return peer_id in self._readers.get(topic, ())


class AllowAllPolicy:
    """Every peer may connect and read every topic. Tests and demos only."""

    __slots__ = ()

    def allow_peer(self, peer_id: bytes) -> bool:
        return True

    def may_read(self, peer_id: bytes, topic: bytes) -> bool:
        return True
