"""Device certificates: an organisation root key vouches for a device or node key.

A certificate says "org root R certifies device key D, with role and display name,
from ``valid_from`` until ``valid_until`` (HLC-free wall-clock milliseconds)". It is
a canonical CBOR array signed by R in the CERTIFICATE domain. Verification is a pure
function of the certificate, the expected org root and ``now_ms``.

Issue with :func:`issue_certificate`; check with :func:`verify_certificate`.
Revocation lives in the organisation's control topic (messaging layer).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from . import _cbor
from .errors import CertificateError, DecodeError, Reason
from .identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Domain, Identity, verify

__all__ = [
    "CERT_VERSION",
    "DeviceCertificate",
    "Role",
    "decode_certificate",
    "issue_certificate",
    "verify_certificate",
]

CERT_VERSION = 1
MAX_CERT_SIZE = 1024
MAX_DISPLAY_NAME = 128  # characters
MAX_CERT_TIME = (1 << 64) - 1
"""Validity bounds are unsigned 64-bit milliseconds: CBOR major type 0, never a bignum."""


class Role(enum.Enum):
    """What a certified key may do in its organisation."""

    ADMIN = "admin"
    """May certify and revoke devices and change org policy."""
    MEMBER = "member"
    """A person's device: writes messages."""
    NODE = "node"
    """An always-on node: stores and relays, holds no room keys by default."""


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    """A signed statement by an organisation root about one device key."""

    org: bytes
    """The organisation root public key (also the organisation id)."""
    device: bytes
    """The certified Ed25519 public key."""
    role: Role
    display_name: str
    valid_from: int
    """Milliseconds since the Unix epoch, inclusive."""
    valid_until: int
    """Milliseconds since the Unix epoch, exclusive."""
    signature: bytes = b""

    def body(self) -> bytes:
        return _cbor.dumps(
            [
                CERT_VERSION,
                self.org,
                self.device,
                self.role.value,
                self.display_name,
                self.valid_from,
                self.valid_until,
            ]
        )

    def to_bytes(self) -> bytes:
        return _cbor.dumps([self.body(), self.signature])


def issue_certificate(  # noqa: PLR0917 - positional API kept; fields are distinct types
    org_root: Identity,
    device: bytes,
    role: Role,
    display_name: str,
    valid_from: int,
    valid_until: int,
) -> DeviceCertificate:
    """Sign a certificate for ``device`` with the organisation's root key."""
    if len(device) != PUBLIC_KEY_SIZE:
        raise ValueError("device key must be 32 bytes")
    if not 0 < len(display_name) <= MAX_DISPLAY_NAME:
        raise ValueError(f"display name must have 1..{MAX_DISPLAY_NAME} characters")
    if not 0 <= valid_from < valid_until <= MAX_CERT_TIME:
        raise ValueError("validity window is empty or not unsigned 64-bit milliseconds")
    unsigned = DeviceCertificate(
        org_root.public_key, device, role, display_name, valid_from, valid_until
    )
    sig = org_root.sign(Domain.CERTIFICATE, unsigned.body())
    return DeviceCertificate(
        unsigned.org, device, role, display_name, valid_from, valid_until, sig
    )


def decode_certificate(data: bytes) -> DeviceCertificate:
    """Parse certificate bytes (structure only). Raises :class:`DecodeError`."""
    outer = _cbor.loads_canonical(data, "certificate", MAX_CERT_SIZE)
    if type(outer) is not list or len(outer) != 2 or not all(type(x) is bytes for x in outer):
        raise DecodeError(Reason.MALFORMED, "certificate: expected [body, signature]")
    body_bytes, sig = outer
    body = _cbor.loads_canonical(body_bytes, "certificate body", MAX_CERT_SIZE)
    if type(body) is not list or not body:
        raise DecodeError(Reason.MALFORMED, "certificate body: expected an array")
    if type(body[0]) is not int:
        raise DecodeError(Reason.MALFORMED, "certificate: version is not an integer")
    if body[0] != CERT_VERSION:
        raise DecodeError(Reason.UNKNOWN_VERSION, f"certificate version {body[0]}")
    if len(body) != 7:
        raise DecodeError(Reason.MALFORMED, "certificate body: expected 7 fields")
    _, org, device, role, name, vfrom, vuntil = body
    ok = (
        type(org) is bytes
        and len(org) == PUBLIC_KEY_SIZE
        and type(device) is bytes
        and len(device) == PUBLIC_KEY_SIZE
        and type(name) is str
        and 0 < len(name) <= MAX_DISPLAY_NAME
        and type(vfrom) is int
        and type(vuntil) is int
        and 0 <= vfrom < vuntil <= MAX_CERT_TIME
        and len(sig) == SIGNATURE_SIZE
    )
    if not ok:
        raise DecodeError(Reason.MALFORMED, "certificate: a field has the wrong type or size")
    try:
        role_value = Role(role)
    except ValueError as exc:
        raise DecodeError(Reason.MALFORMED, "certificate: unknown role") from exc
    return DeviceCertificate(org, device, role_value, name, vfrom, vuntil, sig)


def verify_certificate(cert: DeviceCertificate, org_root: bytes, now_ms: int) -> None:
    """Raise :class:`CertificateError` unless ``cert`` is valid for ``org_root`` at ``now_ms``."""
    if cert.org != org_root:
        raise CertificateError(Reason.CERT_WRONG_ISSUER, "certificate is from another organisation")
    if not verify(cert.org, Domain.CERTIFICATE, cert.body(), cert.signature):
        raise CertificateError(Reason.BAD_SIGNATURE, "certificate signature invalid")
    if not cert.valid_from <= now_ms < cert.valid_until:
        raise CertificateError(Reason.CERT_EXPIRED, "certificate is not valid at this time")
