"""p2pmsg: serverless, end-to-end encrypted messaging between healthcare organisations.

Layers (bottom up): :mod:`~p2pmsg.identity` and :mod:`~p2pmsg.certs` (keys),
:mod:`~p2pmsg.entry` / :mod:`~p2pmsg.validate` / :mod:`~p2pmsg.forks` (the signed
log core), :mod:`~p2pmsg.store` (storage). See docs/architecture.md.
"""

from .certs import DeviceCertificate as DeviceCertificate
from .certs import Role as Role
from .certs import issue_certificate as issue_certificate
from .certs import person_id as person_id
from .certs import random_person_id as random_person_id
from .certs import verify_certificate as verify_certificate
from .entry import Entry as Entry
from .entry import Header as Header
from .entry import create_entry as create_entry
from .entry import decode_entry as decode_entry
from .errors import CertificateError as CertificateError
from .errors import DecodeError as DecodeError
from .errors import ForkError as ForkError
from .errors import KeyFileError as KeyFileError
from .errors import LocalProtocolError as LocalProtocolError
from .errors import P2PMsgError as P2PMsgError
from .errors import Reason as Reason
from .errors import RemoteProtocolError as RemoteProtocolError
from .errors import StoreCorruptError as StoreCorruptError
from .errors import StoreError as StoreError
from .errors import TransportError as TransportError
from .errors import ValidationError as ValidationError
from .forks import ForkProof as ForkProof
from .hlc import HybridClock as HybridClock
from .identity import Domain as Domain
from .identity import Identity as Identity
from .keyfile import load_identity as load_identity
from .keyfile import save_identity as save_identity
from .messenger import Messenger as Messenger
from .messenger import open_messenger as open_messenger
from .node import Node as Node
from .node import NodeConfig as NodeConfig
from .node import open_node as open_node
from .node import serve_node as serve_node
from .store import MemoryStore as MemoryStore
from .store import PayloadState as PayloadState
from .store import SqliteStore as SqliteStore
from .store import Store as Store

__version__ = "0.1.0"

__all__ = [
    "CertificateError",
    "DecodeError",
    "DeviceCertificate",
    "Domain",
    "Entry",
    "ForkError",
    "ForkProof",
    "Header",
    "HybridClock",
    "Identity",
    "KeyFileError",
    "LocalProtocolError",
    "MemoryStore",
    "Messenger",
    "Node",
    "NodeConfig",
    "P2PMsgError",
    "PayloadState",
    "Reason",
    "RemoteProtocolError",
    "Role",
    "SqliteStore",
    "Store",
    "StoreCorruptError",
    "StoreError",
    "TransportError",
    "ValidationError",
    "create_entry",
    "decode_entry",
    "issue_certificate",
    "load_identity",
    "open_messenger",
    "open_node",
    "person_id",
    "random_person_id",
    "save_identity",
    "serve_node",
    "verify_certificate",
]
