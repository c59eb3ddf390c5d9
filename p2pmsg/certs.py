"""Device certificates: an organisation root key vouches for a device or node key.

A certificate says "org root R certifies device key D, with role and display name,
from ``valid_from`` until ``valid_until`` (HLC-free wall-clock milliseconds)". It is
a canonical CBOR array signed by R in the CERTIFICATE domain. Verification is a pure
function of the certificate, the expected org root and ``now_ms``.

Issue with :func:`issue_certificate`; check with :func:`verify_certificate`.
Revocation lives in the organisation's control topic (messaging layer).

**Persons.** A person may have several devices. Version 2 certificates add a
``person`` field: an opaque 16-byte *pseudonymous* person id, the same on every
certificate of that person's devices. Certificates are published in control topics
that every listed organisation replicates and reads, so the id must never be a
staff number, login or name: derive it with :func:`person_id` (keyed BLAKE2b under
the org root's secret, so outsiders cannot test guesses of internal handles) or
draw a random one with :func:`random_person_id` and keep the mapping inside the
organisation. A certificate without a person is encoded as version 1 (7 fields,
exactly as before); a certificate with a person as version 2 (8 fields). Both
decode and verify; other versions are ``UNKNOWN_VERSION``.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass

import nacl.encoding
import nacl.hash
import nacl.utils

from . import _cbor
from .errors import CertificateError, DecodeError, Reason
from .identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Domain, Identity, verify

__all__ = [
    "CERT_VERSION",
    "PERSON_ID_SIZE",
    "DeviceCertificate",
    "Role",
    "decode_certificate",
    "issue_certificate",
    "person_id",
    "random_person_id",
    "verify_certificate",
]

CERT_VERSION = 2
"""The newest certificate version: 2 carries a person id; 1 (no person) still decodes."""
CERT_VERSION_NO_PERSON = 1
PERSON_ID_SIZE = 16
MAX_PERSON_HANDLE = 256  # characters
_PERSON_PERSONAL = b"p2pmsg-person-id"  # BLAKE2b personalisation (16 bytes): this use only
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
    person: bytes | None = None
    """Pseudonymous person id (:data:`PERSON_ID_SIZE` bytes) or None (device only)."""

    @property
    def version(self) -> int:
        """2 if the certificate names a person, else 1 (the encoding follows)."""
        return CERT_VERSION_NO_PERSON if self.person is None else CERT_VERSION

    def body(self) -> bytes:
        fields: list[object] = [
            self.version,
            self.org,
            self.device,
            self.role.value,
            self.display_name,
            self.valid_from,
            self.valid_until,
        ]
        if self.person is not None:
            fields.append(self.person)
        return _cbor.dumps(fields)

    def to_bytes(self) -> bytes:
        return _cbor.dumps([self.body(), self.signature])


def issue_certificate(  # noqa: PLR0917 - positional API kept; fields are distinct types
    org_root: Identity,
    device: bytes,
    role: Role,
    display_name: str,
    valid_from: int,
    valid_until: int,
    *,
    person: bytes | None = None,
) -> DeviceCertificate:
    """Sign a certificate for ``device`` with the organisation's root key.

    ``person`` (16 bytes, from :func:`person_id` or :func:`random_person_id`) makes it
    a version-2 certificate attributing the device to that person."""
    if len(device) != PUBLIC_KEY_SIZE:
        raise ValueError("device key must be 32 bytes")
    if person is not None and (type(person) is not bytes or len(person) != PERSON_ID_SIZE):
        raise ValueError(f"person id must be {PERSON_ID_SIZE} bytes")
    if not 0 < len(display_name) <= MAX_DISPLAY_NAME:
        raise ValueError(f"display name must have 1..{MAX_DISPLAY_NAME} characters")
    if not 0 <= valid_from < valid_until <= MAX_CERT_TIME:
        raise ValueError("validity window is empty or not unsigned 64-bit milliseconds")
    unsigned = DeviceCertificate(
        org_root.public_key, device, role, display_name, valid_from, valid_until,
        person=person,
    )
    sig = org_root.sign(Domain.CERTIFICATE, unsigned.body())
    return DeviceCertificate(
        unsigned.org, device, role, display_name, valid_from, valid_until, sig, person
    )


def person_id(org_root: Identity, handle: str) -> bytes:
    """The pseudonymous person id of ``handle`` (an org-internal name: staff number,
    login) in this organisation: BLAKE2b-128 of the NFC-normalised UTF-8 handle, keyed
    with the org root's secret seed, personalisation ``p2pmsg-person-id``.

    Deterministic (re-issuing a certificate for a new device of the same person gives
    the same id without a lookup table), and unlinkable to the handle for anyone
    without the root secret, who can read the id in the control topic."""
    norm = unicodedata.normalize("NFC", handle)
    if not 0 < len(norm) <= MAX_PERSON_HANDLE:
        raise ValueError(f"person handle must have 1..{MAX_PERSON_HANDLE} characters")
    return nacl.hash.blake2b(norm.encode(), digest_size=PERSON_ID_SIZE, key=org_root.seed(),
                             person=_PERSON_PERSONAL, encoder=nacl.encoding.RawEncoder)


def random_person_id() -> bytes:
    """A fresh random person id (keep the person -> id mapping inside the organisation)."""
    return nacl.utils.random(PERSON_ID_SIZE)


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
    if body[0] not in (CERT_VERSION_NO_PERSON, CERT_VERSION):
        raise DecodeError(Reason.UNKNOWN_VERSION, f"certificate version {body[0]}")
    want = 7 if body[0] == CERT_VERSION_NO_PERSON else 8
    if len(body) != want:
        raise DecodeError(Reason.MALFORMED, f"certificate body: expected {want} fields")
    _, org, device, role, name, vfrom, vuntil, *rest = body
    person: bytes | None = rest[0] if rest else None
    ok = (
        (not rest or (type(person) is bytes and len(person) == PERSON_ID_SIZE))
        and type(org) is bytes
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
    return DeviceCertificate(org, device, role_value, name, vfrom, vuntil, sig, person)


def verify_certificate(cert: DeviceCertificate, org_root: bytes, now_ms: int) -> None:
    """Raise :class:`CertificateError` unless ``cert`` is valid for ``org_root`` at ``now_ms``."""
    if cert.org != org_root:
        raise CertificateError(Reason.CERT_WRONG_ISSUER, "certificate is from another organisation")
    if not verify(cert.org, Domain.CERTIFICATE, cert.body(), cert.signature):
        raise CertificateError(Reason.BAD_SIGNATURE, "certificate signature invalid")
    if not cert.valid_from <= now_ms < cert.valid_until:
        raise CertificateError(Reason.CERT_EXPIRED, "certificate is not valid at this time")
