"""The mDNS TXT schema of a p2pmsg node, encoded and strictly parsed (pure, no I/O).

A node advertises itself as an instance of :data:`SERVICE_TYPE` with these TXT keys
(all values printable ASCII; see docs/discovery.md)::

    txtvers=1                 schema version of this TXT layout
    id=<64 hex>               the node's Ed25519 public key
    org=<64 hex>              the organisation root key the node belongs to
    proto=<int>               the p2pmsg protocol version the node speaks
    transports=quic,tcp       the transport schemes the node serves, in preference order
    quic=<port> tcp=<port>    one port key per listed scheme

Everything in a TXT record is an *unauthenticated hint*: anyone on the link can
multicast any record. :func:`parse_txt` therefore checks types, sizes and syntax and
raises only :class:`~p2pmsg.errors.DecodeError` for bad input (the invariant the
hypothesis tests check); it never trusts the claimed ``id``. Identity is proven
later, by the transport handshake, when the node dials with
``expected_peer = advertisement.node_id``.

Call :func:`encode_txt` to build our own record, :func:`parse_txt` on a peer's
properties, and :func:`usable_addresses` / :func:`format_address` to turn the
addresses of a resolved service into dialable transport addresses.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from p2pmsg.errors import DecodeError, Reason
from p2pmsg.identity import PUBLIC_KEY_SIZE

__all__ = [
    "MAX_ADDRESSES",
    "MAX_TRANSPORTS",
    "MAX_TXT_BYTES",
    "MAX_TXT_KEYS",
    "SERVICE_TYPE",
    "TXT_VERSION",
    "Advertisement",
    "encode_txt",
    "format_address",
    "parse_txt",
    "usable_addresses",
]

SERVICE_TYPE = "_p2pmsg._udp.local."
"""DNS-SD service type. ``_udp`` because QUIC, the preferred transport, runs on UDP."""

TXT_VERSION = 1
"""Value of the ``txtvers`` key this implementation writes and accepts."""

MAX_TXT_BYTES = 1300
"""Upper bound on the whole TXT rdata: it must fit one mDNS packet (RFC 6763 §6.2)."""

MAX_TXT_KEYS = 32
"""More keys than this is not a p2pmsg record (ours has 5 + one per transport)."""

MAX_TRANSPORTS = 8
"""Upper bound on the schemes one advertisement may list."""

MAX_ADDRESSES = 16
"""At most this many IP addresses of one advertisement are turned into hints."""

_MAX_STRING = 255  # one TXT string is length-prefixed by a single byte
_RESERVED_KEYS = frozenset({b"txtvers", b"id", b"org", b"proto", b"transports"})
_HEX_KEY = re.compile(rb"[0-9a-f]{64}")
_SCHEME = re.compile(rb"[a-z][a-z0-9]{0,8}")  # also a key: RFC 6763 wants <= 9 chars
_DECIMAL = re.compile(rb"[1-9][0-9]{0,4}")  # bytes regex: no unicode digits, signs, "_"


@dataclass(frozen=True, slots=True)
class Advertisement:
    """What a node claims about itself in its TXT record. Unauthenticated."""

    node_id: bytes
    """Claimed 32-byte node key; dial with it as ``expected_peer``."""
    org_id: bytes
    """Claimed 32-byte organisation root key (a filter hint, not a proof)."""
    protocol_version: int
    """p2pmsg protocol version the node claims to speak (1..65535)."""
    ports: tuple[tuple[str, int], ...]
    """``(scheme, port)`` pairs in the advertiser's order of preference."""

    def __post_init__(self) -> None:
        if len(self.node_id) != PUBLIC_KEY_SIZE or len(self.org_id) != PUBLIC_KEY_SIZE:
            raise ValueError(f"node and org ids are {PUBLIC_KEY_SIZE}-byte public keys")
        if not 1 <= self.protocol_version <= 0xFFFF:
            raise ValueError("protocol_version must be in 1..65535")
        if not 1 <= len(self.ports) <= MAX_TRANSPORTS:
            raise ValueError(f"advertise 1..{MAX_TRANSPORTS} transports")
        schemes = [scheme for scheme, _ in self.ports]
        if len(set(schemes)) != len(schemes):
            raise ValueError("a transport scheme is listed twice")
        for scheme, port in self.ports:
            raw = scheme.encode("ascii", "replace")
            if not _SCHEME.fullmatch(raw) or raw in _RESERVED_KEYS:
                raise ValueError(f"invalid transport scheme {scheme!r}")
            if not 1 <= port <= 0xFFFF:
                raise ValueError(f"invalid port {port} for {scheme!r}")


def encode_txt(ad: Advertisement) -> dict[str, str]:
    """The TXT properties for ``ad``, ready for :class:`zeroconf.ServiceInfo`.

    Always parses back to ``ad`` with :func:`parse_txt`.
    """
    props = {
        "txtvers": str(TXT_VERSION),
        "id": ad.node_id.hex(),
        "org": ad.org_id.hex(),
        "proto": str(ad.protocol_version),
        "transports": ",".join(scheme for scheme, _ in ad.ports),
    }
    for scheme, port in ad.ports:
        props[scheme] = str(port)
    return props


def _bad(reason: Reason, message: str) -> DecodeError:
    return DecodeError(reason, f"mDNS TXT: {message}")


def _required(props: Mapping[bytes, bytes | None], key: bytes) -> bytes:
    value = props.get(key)
    if value is None:  # absent, or present as a boolean attribute without "="
        raise _bad(Reason.MALFORMED, f"missing value for {key.decode()!r}")
    return value


def _decimal(value: bytes, what: str) -> int:
    if not _DECIMAL.fullmatch(value):
        raise _bad(Reason.MALFORMED, f"{what} is not a decimal number")
    number = int(value)
    if number > 0xFFFF:
        raise _bad(Reason.MALFORMED, f"{what} out of range")
    return number


def _key_bytes(value: bytes, what: str) -> bytes:
    if not _HEX_KEY.fullmatch(value):
        raise _bad(Reason.MALFORMED, f"{what} is not {PUBLIC_KEY_SIZE * 2} lowercase hex digits")
    return bytes.fromhex(value.decode("ascii"))


def parse_txt(properties: Mapping[bytes, bytes | None]) -> Advertisement:
    """Strictly parse a peer's TXT properties (as ``ServiceInfo.properties`` gives them).

    Unknown keys are ignored (room for later schema additions) but count towards
    the size limits.

    Raises:
        DecodeError: with ``Reason.TOO_LARGE`` (size limits), ``UNKNOWN_VERSION``
            (``txtvers`` is not ours) or ``MALFORMED`` (anything else). Nothing else
            escapes for any input, including wrongly typed keys or values.
    """
    if not isinstance(properties, Mapping):
        raise _bad(Reason.MALFORMED, "properties are not a mapping")
    if len(properties) > MAX_TXT_KEYS:
        raise _bad(Reason.TOO_LARGE, f"more than {MAX_TXT_KEYS} keys")
    total = 0
    for key, value in properties.items():
        if type(key) is not bytes or (value is not None and type(value) is not bytes):
            raise _bad(Reason.MALFORMED, "keys and values must be bytes")
        size = len(key) + (0 if value is None else 1 + len(value))
        if size > _MAX_STRING:
            raise _bad(Reason.TOO_LARGE, "one TXT string exceeds 255 bytes")
        total += 1 + size
    if total > MAX_TXT_BYTES:
        raise _bad(Reason.TOO_LARGE, f"TXT record exceeds {MAX_TXT_BYTES} bytes")

    if _required(properties, b"txtvers") != str(TXT_VERSION).encode():
        raise _bad(Reason.UNKNOWN_VERSION, "unsupported txtvers")
    node_id = _key_bytes(_required(properties, b"id"), "id")
    org_id = _key_bytes(_required(properties, b"org"), "org")
    protocol_version = _decimal(_required(properties, b"proto"), "proto")

    schemes = _required(properties, b"transports").split(b",")
    if len(schemes) > MAX_TRANSPORTS:
        raise _bad(Reason.TOO_LARGE, f"more than {MAX_TRANSPORTS} transports")
    if len(set(schemes)) != len(schemes):
        raise _bad(Reason.MALFORMED, "a transport is listed twice")
    ports: list[tuple[str, int]] = []
    for scheme in schemes:
        if not _SCHEME.fullmatch(scheme) or scheme in _RESERVED_KEYS:
            raise _bad(Reason.MALFORMED, "invalid transport scheme")
        name = scheme.decode("ascii")
        ports.append((name, _decimal(_required(properties, scheme), f"port of {name!r}")))
    return Advertisement(node_id, org_id, protocol_version, tuple(ports))


def usable_addresses(addresses: Iterable[str]) -> list[str]:
    """The addresses worth dialing, in order, without duplicates, at most :data:`MAX_ADDRESSES`.

    Drops anything that is not an IP literal, and unspecified, multicast, broadcast
    or reserved addresses (a hostile record could point them anywhere; these at
    least are never a unicast peer). IPv6 scope ids (``fe80::1%eth0``) are kept.
    """
    result: list[str] = []
    for text in addresses:
        if len(result) >= MAX_ADDRESSES:
            break
        if not isinstance(text, str) or len(text) > 64:
            continue
        host, _, scope = text.partition("%")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue
        if ip.is_unspecified or ip.is_multicast or (ip.is_reserved and not ip.is_loopback):
            continue
        if isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address("255.255.255.255"):
            continue
        if scope and (isinstance(ip, ipaddress.IPv4Address) or not scope.isascii()):
            continue
        normal = f"{ip}%{scope}" if scope else str(ip)
        if normal not in result:
            result.append(normal)
    return result


def format_address(scheme: str, ip: str, port: int) -> str:
    """A transport address ``scheme://host:port`` (IPv6 hosts in brackets).

    The form follows :class:`p2pmsg.net.base.PeerHint` (``scheme://...``).
    """
    host = f"[{ip}]" if ":" in ip else ip
    return f"{scheme}://{host}:{port}"
