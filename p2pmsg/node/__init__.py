"""The trio node runtime: open a node, append, read, subscribe, replicate.

Start here: :func:`open_node` (``async with``) or :func:`serve_node`
(``nursery.start``) with a :class:`NodeConfig`. docs/node.md explains the peer
manager, sessions, lazy signature checks and subscriptions.
"""

from .audit import AuditSink as AuditSink
from .audit import audited_allow_peer as audited_allow_peer
from .config import NodeConfig as NodeConfig
from .runtime import BadSignatureEvidence as BadSignatureEvidence
from .runtime import Node as Node
from .runtime import NodeStatistics as NodeStatistics
from .runtime import ObservablePolicy as ObservablePolicy
from .runtime import open_node as open_node
from .runtime import serve_node as serve_node
from .subscription import Subscription as Subscription

__all__ = [
    "AuditSink",
    "BadSignatureEvidence",
    "Node",
    "NodeConfig",
    "NodeStatistics",
    "ObservablePolicy",
    "Subscription",
    "audited_allow_peer",
    "open_node",
    "serve_node",
]
