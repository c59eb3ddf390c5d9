"""p2pmsg-quic: the QUIC transport plugin of p2pmsg (entry point ``quic``).

Use :class:`QuicTransport` (or ``load_transport("quic", identity=...)``); tune it
with :class:`QuicSettings`. See the package README for the trust model.
"""

from ._connection import ALPN as ALPN
from ._stream import QuicPeerStream as QuicPeerStream
from .transport import QuicSettings as QuicSettings
from .transport import QuicTransport as QuicTransport
from .transport import format_address as format_address
from .transport import parse_address as parse_address

__all__ = [
    "ALPN",
    "QuicPeerStream",
    "QuicSettings",
    "QuicTransport",
    "format_address",
    "parse_address",
]
