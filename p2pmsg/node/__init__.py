"""The trio node runtime: open a node, append, read, subscribe, replicate.

Start here: :func:`open_node` (``async with``) or :func:`serve_node`
(``nursery.start``) with a :class:`NodeConfig`. docs/node.md explains the peer
manager, sessions, lazy signature checks and subscriptions.
"""

from .config import NodeConfig as NodeConfig
from .runtime import BadSignatureEvidence as BadSignatureEvidence
from .runtime import Node as Node
from .runtime import NodeStatistics as NodeStatistics
from .runtime import open_node as open_node
from .runtime import serve_node as serve_node
from .subscription import Subscription as Subscription

__all__ = [
    "BadSignatureEvidence",
    "Node",
    "NodeConfig",
    "NodeStatistics",
    "Subscription",
    "open_node",
    "serve_node",
]
