"""Ed25519 identities and domain-separated signatures (pure, no I/O).

Every signature p2pmsg makes covers ``domain || message`` where ``domain`` is one of
the fixed :class:`Domain` prefixes. A signature made for one purpose (say, a log
entry) therefore never verifies as another (a certificate), even over equal bytes.

Call :meth:`Identity.generate` for a new key, :func:`p2pmsg.keyfile.save_identity`
to keep it, and :func:`verify` to check a signature made by someone else.
"""

from __future__ import annotations

import enum
import hashlib

import nacl.exceptions
import nacl.signing

__all__ = [
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "Domain",
    "Identity",
    "short_id",
    "verify",
]

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32


class Domain(bytes, enum.Enum):
    """Signature domains. Each ends in NUL so no domain is a prefix of another."""

    ENTRY = b"p2pmsg/entry/v1\x00"
    CERTIFICATE = b"p2pmsg/device-cert/v1\x00"
    HANDSHAKE = b"p2pmsg/handshake/v1\x00"
    FEDERATION = b"p2pmsg/federation-list/v1\x00"
    KEY_BUNDLE = b"p2pmsg/key-bundle/v1\x00"
    AUDIT = b"p2pmsg/audit-record/v1\x00"
    TOMBSTONE = b"p2pmsg/erasure-tombstone/v1\x00"
    AUDIT_CHECKPOINT = b"p2pmsg/audit-checkpoint/v1\x00"


class Identity:
    """A secret Ed25519 signing key and its public key.

    The public key (32 bytes) *is* the id of a node, device or organisation root.
    ``repr()`` never shows the secret.
    """

    __slots__ = ("_signing_key", "public_key")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key
        self.public_key: bytes = bytes(signing_key.verify_key)

    @classmethod
    def generate(cls) -> Identity:
        """A fresh key from the operating system's CSPRNG (via libsodium)."""
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The key for a 32-byte seed (test vectors, key files)."""
        if len(seed) != SEED_SIZE:
            raise ValueError(f"an Ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
        return cls(nacl.signing.SigningKey(seed))

    def seed(self) -> bytes:
        """The 32-byte secret seed. Handle with care: never log it."""
        return bytes(self._signing_key)

    def sign(self, domain: Domain, message: bytes) -> bytes:
        """The 64-byte signature of ``domain || message``."""
        return self._signing_key.sign(domain.value + message).signature

    def to_curve25519_private(self) -> bytes:
        """The X25519 secret matching this key (for sealed boxes to this identity)."""
        return bytes(self._signing_key.to_curve25519_private_key())

    @property
    def short_id(self) -> str:
        return short_id(self.public_key)

    def __repr__(self) -> str:
        return f"Identity({self.short_id})"


def verify(public_key: bytes, domain: Domain, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is ``public_key``'s valid signature of ``domain || message``.

    Never raises for bad input: a malformed key or signature simply does not verify.
    """
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(domain.value + message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    except nacl.exceptions.CryptoError:
        return False
    return True


def short_id(public_key: bytes) -> str:
    """A short printable fingerprint for logs: 12 hex digits of BLAKE2b(key).

    Hashing first means logs show a stable handle without the raw key bytes.
    """
    return hashlib.blake2b(public_key, digest_size=6).hexdigest()
