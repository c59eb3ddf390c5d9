"""p2pmsg-mdns: find p2pmsg nodes inside a site with mDNS / DNS-SD (python-zeroconf).

A plugin registered under the entry-point group ``p2pmsg.discovery`` as ``mdns``
(factory: :class:`MdnsDiscovery`). Start it with ``async with
MdnsDiscovery(...).running() as mdns`` (or ``await nursery.start(mdns.run)``) and feed
``mdns.hints()`` to the node's peer manager. Hints are unauthenticated; the transport
handshake proves the node id. See docs/discovery.md.
"""

from .discovery import HINT_SOURCE as HINT_SOURCE
from .discovery import DiscoveredPeer as DiscoveredPeer
from .discovery import MdnsDiscovery as MdnsDiscovery
from .discovery import MdnsStatistics as MdnsStatistics
from .discovery import ports_from_addresses as ports_from_addresses
from .probe import multicast_unavailable_reason as multicast_unavailable_reason
from .txt import SERVICE_TYPE as SERVICE_TYPE
from .txt import Advertisement as Advertisement
from .txt import encode_txt as encode_txt
from .txt import parse_txt as parse_txt

__all__ = [
    "HINT_SOURCE",
    "SERVICE_TYPE",
    "Advertisement",
    "DiscoveredPeer",
    "MdnsDiscovery",
    "MdnsStatistics",
    "encode_txt",
    "multicast_unavailable_reason",
    "parse_txt",
    "ports_from_addresses",
]
