"""p2pmsg-tcp: the TCP fallback transport of p2pmsg, for networks that block UDP.

An authenticated, encrypted stream over TCP, built only from libsodium parts:
an ephemeral ``crypto_kx`` (X25519) key exchange, Ed25519 node-key signatures
over the handshake transcript, and one ``crypto_secretstream_xchacha20poly1305``
per direction for the data. The wire format and the security argument are in
docs/protocol-tcp.md of the p2pmsg repository.

Start with :class:`TcpTransport` (registered as entry point ``tcp`` in the group
``p2pmsg.transports``). The sans-IO pieces — :mod:`p2pmsg_tcp.handshake` and
:mod:`p2pmsg_tcp.records` — do no I/O and can be driven by hand in tests.
"""

from __future__ import annotations

from .handshake import PROTOCOL_LABEL, ClientHandshake, HandshakeResult, ServerHandshake
from .records import MAX_RECORD_SIZE, Record, RecordDecoder, RecordEncoder
from .stream import StreamIntegrityError, TcpPeerStream
from .transport import TcpTransport, format_address, parse_address

__all__ = [
    "MAX_RECORD_SIZE",
    "PROTOCOL_LABEL",
    "ClientHandshake",
    "HandshakeResult",
    "Record",
    "RecordDecoder",
    "RecordEncoder",
    "ServerHandshake",
    "StreamIntegrityError",
    "TcpPeerStream",
    "TcpTransport",
    "format_address",
    "parse_address",
]
