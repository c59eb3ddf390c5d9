"""End-to-end encryption of room payloads: epoch secrets, sealing, AEAD (pure).

Scheme (see docs/security.md for what it does and does not protect):

* An **epoch** is started by an EPOCH_KEYS entry: a fresh 32-byte random secret,
  sealed (libsodium sealed box, X25519 + XSalsa20-Poly1305) to every active member
  device. The epoch id is that entry's id.
* The X25519 key of a device is its **Ed25519 device key converted to Curve25519**
  (``crypto_sign_ed25519_pk_to_curve25519``): the key the organisation certifies is
  the key secrets are sealed to, so no certificate change is needed and a revoked
  certificate also revokes the encryption key. (A dedicated, rotatable X25519 key in
  a v2 certificate is the planned improvement; see docs/security.md.)
* The **epoch key** is ``BLAKE2b-256(domain || topic || secret)``: a secret copied
  into another room yields an unrelated key there.
* A message content is encrypted with XChaCha20-Poly1305 (random 24-byte nonce)
  under the epoch key, with associated data
  ``domain || topic || author || seq (8 bytes, big-endian) || epoch id``. The entry
  header commits to the *ciphertext* (payload hash), so the entry id cannot be in
  the AD; binding topic, author and seq instead means a ciphertext cannot be
  replayed in another room, under another author, or at another position.

Call :func:`new_epoch_secret` and :func:`seal_secret` (or just
:func:`p2pmsg.messaging.compose.compose_rekey`), :func:`encrypt_for_entry` when
composing, and :func:`open_secret` / :func:`decrypt_for_entry` when reading.
Randomness comes from libsodium (``nacl.utils.random``); that is not I/O in the
sans-IO sense, and tests may pass explicit nonces and secrets.
"""

from __future__ import annotations

import hashlib

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.utils

from ..identity import Identity
from .errors import DecryptionError
from .payloads import AEAD_NONCE_SIZE, Sealed, encode_room_payload

__all__ = [
    "EPOCH_SECRET_SIZE",
    "associated_data",
    "curve25519_public",
    "decrypt_for_entry",
    "encrypt_for_entry",
    "epoch_key",
    "new_epoch_secret",
    "open_secret",
    "seal_secret",
]

EPOCH_SECRET_SIZE = 32
_KEY_DOMAIN = b"p2pmsg/epoch-key/v1\x00"
_AD_DOMAIN = b"p2pmsg/room-message/v1\x00"


def new_epoch_secret() -> bytes:
    """32 fresh random bytes from libsodium's CSPRNG."""
    return nacl.utils.random(EPOCH_SECRET_SIZE)


def epoch_key(topic: bytes, secret: bytes) -> bytes:
    """The AEAD key of an epoch of room ``topic``."""
    if len(secret) != EPOCH_SECRET_SIZE:
        raise ValueError("an epoch secret is 32 bytes")
    return hashlib.blake2b(_KEY_DOMAIN + topic + secret, digest_size=32).digest()


def curve25519_public(device: bytes) -> bytes:
    """The X25519 public key of an Ed25519 device key. ValueError if it has none."""
    try:
        return bytes(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(device))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise ValueError("not a convertible Ed25519 public key") from exc


def seal_secret(device: bytes, secret: bytes) -> bytes:
    """``secret`` sealed so only ``device``'s private key opens it (80 bytes)."""
    box = nacl.public.SealedBox(nacl.public.PublicKey(curve25519_public(device)))
    return bytes(box.encrypt(secret))


def open_secret(identity: Identity, sealed: bytes) -> bytes:
    """Open a secret sealed to ``identity``. Raises :class:`DecryptionError`."""
    box = nacl.public.SealedBox(nacl.public.PrivateKey(identity.to_curve25519_private()))
    try:
        secret = bytes(box.decrypt(sealed))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise DecryptionError("sealed epoch secret does not open") from exc
    if len(secret) != EPOCH_SECRET_SIZE:
        raise DecryptionError("sealed epoch secret has the wrong size")
    return secret


def associated_data(topic: bytes, author: bytes, seq: int, epoch: bytes) -> bytes:
    """The AEAD associated data binding a ciphertext to its place in a room."""
    if not 1 <= seq < (1 << 64):
        raise ValueError("seq out of range")
    return _AD_DOMAIN + topic + author + seq.to_bytes(8, "big") + epoch


def encrypt_for_entry(  # noqa: PLR0917 - mirrors the AD order; all arguments are required
    key: bytes,
    epoch: bytes,
    topic: bytes,
    author: bytes,
    seq: int,
    plaintext: bytes,
    *,
    nonce: bytes | None = None,
) -> bytes:
    """The SEALED room payload of ``plaintext`` for the entry (topic, author, seq).

    ``seq`` is the seq the entry *will* have (log head + 1): the node knows it when
    it creates the entry. ``epoch`` is the epoch id (id of the EPOCH_KEYS entry).
    """
    nonce = nacl.utils.random(AEAD_NONCE_SIZE) if nonce is None else nonce
    if len(nonce) != AEAD_NONCE_SIZE:
        raise ValueError("nonce must be 24 bytes")
    ad = associated_data(topic, author, seq, epoch)
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, ad, nonce, key
    )
    return encode_room_payload(Sealed(epoch, nonce, bytes(ciphertext)))


def decrypt_for_entry(key: bytes, topic: bytes, author: bytes, seq: int, sealed: Sealed) -> bytes:
    """The plaintext of a SEALED payload found at (topic, author, seq).

    Raises :class:`DecryptionError` if the key is wrong or anything it binds differs.
    """
    ad = associated_data(topic, author, seq, sealed.epoch)
    try:
        return bytes(
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                sealed.ciphertext, ad, sealed.nonce, key
            )
        )
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise DecryptionError() from exc
