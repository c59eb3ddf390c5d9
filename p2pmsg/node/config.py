"""What a node needs to run: :class:`NodeConfig`.

Pass one to :func:`p2pmsg.open_node` or :func:`p2pmsg.serve_node`. Everything that
does I/O (store, transports, discovery) is built by the caller and handed in, so a
test or the simulator can substitute in-memory versions and a mock clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..blobs.store import BlobStore
from ..blobs.transfer import TransferConfig
from ..identity import Identity
from ..net.base import Discovery, PeerHint, Transport
from ..policy import Policy, TopicPolicy
from ..store.base import Store
from ..store.memory import MemoryStore
from ..sync import SyncConfig
from .audit import AuditSink

__all__ = ["NodeConfig", "system_wall_ms"]


def system_wall_ms() -> int:
    """Wall-clock milliseconds since the epoch: the default HLC input."""
    return time.time_ns() // 1_000_000


@dataclass
class NodeConfig:
    """Everything a node is built from. Only ``identity`` is required."""

    identity: Identity
    """This node's key; its public key is the node id peers authenticate."""
    store: Store = field(default_factory=MemoryStore)
    """Where logs live. The node owns it for its lifetime but does not close it."""
    transports: Sequence[Transport] = ()
    """Transports to serve on and dial with (matched to addresses by ``scheme``)."""
    discovery: Sequence[Discovery] = ()
    """Sources of peer hints (mDNS, static lists). The node starts each (``source.run``)."""
    peers: Sequence[PeerHint] = ()
    """Configured peers, dialed and kept connected for the node's lifetime."""
    policy: Policy = field(default_factory=TopicPolicy)
    """Who may connect and read which topic. Default: nobody (explicit readers only)."""
    topics: Sequence[bytes] = ()
    """Topics this node wants to replicate from peers."""
    sync: SyncConfig | None = None
    """Tunables of the sync machine (flow control, timers), or None for defaults."""
    wall_clock: Callable[[], int] = system_wall_ms
    """Milliseconds since the epoch, fed to the hybrid logical clock.

    The simulator passes a function of ``trio.current_time()`` so HLC timestamps
    follow virtual time."""
    reconnect_initial: float = 0.5
    """First reconnect delay in seconds; doubled per failure (with ±50 % jitter)."""
    reconnect_max: float = 30.0
    """Upper bound of the reconnect delay."""
    subscriber_buffer: int = 1024
    """Entries buffered per subscriber before it is dropped as too slow."""
    seed: int | None = None
    """Seed of the node's private RNG (reconnect jitter); None = from the OS."""
    name: str = ""
    """A label for logs (defaults to the short node id)."""
    audit: AuditSink | None = None
    """Where to record connections, refusals, protocol errors, forks and bad
    signatures (short ids only, no content): a
    :class:`p2pmsg.governance.audit.AuditLog` or None (docs/node.md, "Audit")."""
    blob_store: BlobStore | None = None
    """Where attachments live (usually ``BlobStore(<data dir>/blobs)``), or None: the
    node then serves and fetches no blob. The node does not close it."""
    blob_transfer: TransferConfig | None = None
    """Tunables of the per-session blob machine (window), or None for defaults."""
