"""Self-signed Ed25519 certificates made from a node key, and reading keys back out.

QUIC needs TLS 1.3, and TLS needs certificates. p2pmsg has no certificate
authority at this layer: a node *is* its Ed25519 key. So each node presents a
self-signed X.509 certificate over its own node key, and the peer pins the key
inside it (see :mod:`p2pmsg_quic._connection`). The TLS CertificateVerify message
proves possession of the private key; the certificate's signature, names and
validity dates carry no meaning and are not checked.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from p2pmsg.errors import TransportError
from p2pmsg.identity import Identity

__all__ = ["node_certificate", "peer_key_from_certificate"]

# Fixed validity window: dates are not checked (identity is the pinned key), and a
# fixed window keeps certificate building free of clock reads.
_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)


def node_certificate(identity: Identity) -> tuple[x509.Certificate, Ed25519PrivateKey]:
    """The self-signed certificate and TLS private key for ``identity``'s node key.

    The certificate's public key is exactly ``identity.public_key``; the common
    name is the key's short id (a log handle, not used for anything).
    """
    private_key = Ed25519PrivateKey.from_private_bytes(identity.seed())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"p2pmsg-{identity.short_id}")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .sign(private_key, None)
    )
    return certificate, private_key


def peer_key_from_certificate(certificate: x509.Certificate | None) -> bytes:
    """The raw 32-byte Ed25519 key in the peer's certificate.

    Raises:
        TransportError: no certificate was presented, or it holds another key type.
    """
    if certificate is None:
        raise TransportError("the peer presented no certificate")
    try:
        public_key = certificate.public_key()
    except ValueError as exc:
        raise TransportError("the peer's certificate holds an unreadable key") from exc
    if not isinstance(public_key, Ed25519PublicKey):
        raise TransportError("the peer's certificate does not hold an Ed25519 node key")
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
