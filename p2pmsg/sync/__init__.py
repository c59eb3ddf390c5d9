"""The replication protocol, sans-IO: one :class:`SyncConnection` per peer session.

Bytes, commands and ``now`` go in; bytes and events come out. No trio, sockets,
sqlite or clock reads here — the node (p2pmsg.node) drives the machine. Start at
connection.py's module docstring; docs/protocol-sync.md has the wire format.

    index = LogIndex()                 # one per node, fed with index.update(added)
    conn = SyncConnection(local_id=..., peer_id=..., index=index, policy=policy,
                          initiator=True)
    conn.start(topics, now=now)
    transport.write(conn.data_to_send())
    conn.receive_data(data, now=now); event = conn.next_event(); conn.send(command)
"""

from . import commands as commands
from . import events as events
from .commands import (
    AddInterest as AddInterest,
)
from .commands import (
    Close as Close,
)
from .commands import (
    EntriesApplied as EntriesApplied,
)
from .commands import (
    Offer as Offer,
)
from .commands import (
    RequestPayloads as RequestPayloads,
)
from .commands import (
    SendEntries as SendEntries,
)
from .commands import (
    SendForkProof as SendForkProof,
)
from .commands import (
    SendPayloads as SendPayloads,
)
from .connection import SyncConfig as SyncConfig
from .connection import SyncConnection as SyncConnection
from .connection import SyncStatistics as SyncStatistics
from .events import (
    ConnectionClosed as ConnectionClosed,
)
from .events import (
    EntriesNeeded as EntriesNeeded,
)
from .events import (
    EntriesReceived as EntriesReceived,
)
from .events import (
    ForkProofReceived as ForkProofReceived,
)
from .events import (
    HelloReceived as HelloReceived,
)
from .events import (
    InterestUpdated as InterestUpdated,
)
from .events import (
    LogDiverged as LogDiverged,
)
from .events import (
    PayloadsNeeded as PayloadsNeeded,
)
from .events import (
    PayloadsReceived as PayloadsReceived,
)
from .events import (
    TopicSynced as TopicSynced,
)
from .frames import MAX_FRAME_SIZE as MAX_FRAME_SIZE
from .index import LogIndex as LogIndex
from .messages import PROTOCOL_VERSION as PROTOCOL_VERSION
from .states import State as State

__all__ = [
    "MAX_FRAME_SIZE",
    "PROTOCOL_VERSION",
    "AddInterest",
    "Close",
    "ConnectionClosed",
    "EntriesApplied",
    "EntriesNeeded",
    "EntriesReceived",
    "ForkProofReceived",
    "HelloReceived",
    "InterestUpdated",
    "LogDiverged",
    "LogIndex",
    "Offer",
    "PayloadsNeeded",
    "PayloadsReceived",
    "RequestPayloads",
    "SendEntries",
    "SendForkProof",
    "SendPayloads",
    "State",
    "SyncConfig",
    "SyncConnection",
    "SyncStatistics",
    "TopicSynced",
    "commands",
    "events",
]
