"""Networking: the transport/discovery plugin interfaces and the bundled pieces.

* :mod:`p2pmsg.net.base` — :class:`Transport`, :class:`PeerStream`,
  :class:`Discovery`, :class:`PeerHint`, :class:`StreamIntegrityError` and the
  plugin registry (:func:`load_transport`, :func:`load_discovery`);
* :mod:`p2pmsg.net.memory` — the in-memory reference transport (import it
  directly; it is not re-exported here);
* :mod:`p2pmsg.net.static` — :class:`StaticDiscovery`, configured peers.

How to write a plugin and run the conformance suite on it: docs/transports.md.
"""

from .base import DISCOVERY_GROUP as DISCOVERY_GROUP
from .base import TRANSPORT_GROUP as TRANSPORT_GROUP
from .base import Discovery as Discovery
from .base import PeerHint as PeerHint
from .base import PeerStream as PeerStream
from .base import StreamHandler as StreamHandler
from .base import StreamIntegrityError as StreamIntegrityError
from .base import Transport as Transport
from .base import available_discovery as available_discovery
from .base import available_transports as available_transports
from .base import load_discovery as load_discovery
from .base import load_transport as load_transport
from .static import StaticDiscovery as StaticDiscovery

__all__ = [
    "DISCOVERY_GROUP",
    "TRANSPORT_GROUP",
    "Discovery",
    "PeerHint",
    "PeerStream",
    "StaticDiscovery",
    "StreamHandler",
    "StreamIntegrityError",
    "Transport",
    "available_discovery",
    "available_transports",
    "load_discovery",
    "load_transport",
]
