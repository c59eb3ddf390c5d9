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
* A **SEALED v2** payload also carries clear refs (:class:`~.payloads.ClearRefs`:
  attachment blob roots, redacted entry id) for relays. Its AD uses the domain
  ``p2pmsg/room-message/v2`` and appends the canonical CBOR of
  ``[blobs, redacts]``, so the refs cannot be changed without breaking the AEAD;
  and :func:`decrypt_content` checks that they are exactly the refs of the
  decrypted content (:func:`refs_of`). A mismatch — only the author, who holds
  the epoch key, can produce one — raises :class:`RefsMismatchError` (a
  DecodeError, MALFORMED): every member treats the content as malformed (the
  timeline shows it like any content that does not decode), while the clear refs
  alone decide what relays *and* members erase (:mod:`.redaction`), so every node
  erases the same payloads and blobs.

Call :func:`new_epoch_secret` and :func:`seal_secret` (or just
:func:`p2pmsg.messaging.compose.compose_rekey`), :func:`encrypt_content` when
composing, and :func:`open_secret` / :func:`decrypt_content` when reading
(:func:`encrypt_for_entry` / :func:`decrypt_for_entry` are the raw AEAD on bytes).
Randomness comes from libsodium (``nacl.utils.random``); that is not I/O in the
sans-IO sense, and tests may pass explicit nonces and secrets.
"""

from __future__ import annotations

import hashlib

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.utils

from .. import _cbor
from ..errors import DecodeError, Reason
from ..identity import Identity
from .content import Attachment, Content, Redaction, UnknownContent, decode_content, encode_content
from .errors import DecryptionError
from .payloads import (
    AEAD_NONCE_SIZE,
    NO_REFS,
    SEALED_VERSION,
    ClearRefs,
    Sealed,
    encode_room_payload,
)

__all__ = [
    "EPOCH_SECRET_SIZE",
    "RefsMismatchError",
    "associated_data",
    "curve25519_public",
    "decrypt_content",
    "decrypt_for_entry",
    "encrypt_content",
    "encrypt_for_entry",
    "epoch_key",
    "new_epoch_secret",
    "open_sealed",
    "open_secret",
    "refs_of",
    "seal_bytes",
    "seal_secret",
]

EPOCH_SECRET_SIZE = 32
_KEY_DOMAIN = b"p2pmsg/epoch-key/v1\x00"
_AD_DOMAIN = b"p2pmsg/room-message/v1\x00"
_AD_DOMAIN_V2 = b"p2pmsg/room-message/v2\x00"


class RefsMismatchError(DecodeError):
    """A SEALED v2 payload's clear refs are not those of its decrypted content."""

    def __init__(self) -> None:
        super().__init__(Reason.MALFORMED, "sealed: clear refs disagree with the content")


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


def seal_bytes(device: bytes, data: bytes) -> bytes:
    """``data`` in a libsodium sealed box only ``device``'s private key opens
    (``len(data) + 48`` bytes)."""
    box = nacl.public.SealedBox(nacl.public.PublicKey(curve25519_public(device)))
    return bytes(box.encrypt(data))


def open_sealed(identity: Identity, sealed: bytes) -> bytes:
    """Open a sealed box addressed to ``identity``. Raises :class:`DecryptionError`."""
    box = nacl.public.SealedBox(nacl.public.PrivateKey(identity.to_curve25519_private()))
    try:
        return bytes(box.decrypt(sealed))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise DecryptionError("sealed box does not open") from exc


def seal_secret(device: bytes, secret: bytes) -> bytes:
    """``secret`` sealed so only ``device``'s private key opens it (80 bytes)."""
    return seal_bytes(device, secret)


def open_secret(identity: Identity, sealed: bytes) -> bytes:
    """Open a secret sealed to ``identity``. Raises :class:`DecryptionError`."""
    secret = open_sealed(identity, sealed)
    if len(secret) != EPOCH_SECRET_SIZE:
        raise DecryptionError("sealed epoch secret has the wrong size")
    return secret


def associated_data(
    topic: bytes, author: bytes, seq: int, epoch: bytes, refs: ClearRefs | None = None
) -> bytes:
    """The AEAD associated data binding a ciphertext to its place in a room.

    ``refs`` None: version 1 (no clear refs); else version 2, refs bound too.
    """
    if not 1 <= seq < (1 << 64):
        raise ValueError("seq out of range")
    place = topic + author + seq.to_bytes(8, "big") + epoch
    if refs is None:
        return _AD_DOMAIN + place
    return _AD_DOMAIN_V2 + place + _cbor.dumps(refs.to_cbor())


def _ad_of(topic: bytes, author: bytes, seq: int, sealed: Sealed) -> bytes:
    refs = None if sealed.version == 1 else sealed.refs
    return associated_data(topic, author, seq, sealed.epoch, refs)


def refs_of(content: Content) -> ClearRefs | None:
    """The clear refs a SEALED v2 payload of ``content`` must carry.

    None for an :class:`~.content.UnknownContent` (a newer kind may reference
    blobs or entries this version cannot see: any refs are accepted)."""
    match content:
        case Attachment(_, descriptor, _):
            return ClearRefs(blobs=(descriptor.content_hash,))
        case Redaction(target, _):
            return ClearRefs(redacts=target)
        case UnknownContent():
            return None
    return NO_REFS


def encrypt_for_entry(  # noqa: PLR0917 - mirrors the AD order; all arguments are required
    key: bytes,
    epoch: bytes,
    topic: bytes,
    author: bytes,
    seq: int,
    plaintext: bytes,
    *,
    nonce: bytes | None = None,
    refs: ClearRefs = NO_REFS,
    version: int = SEALED_VERSION,
) -> bytes:
    """The SEALED room payload of ``plaintext`` for the entry (topic, author, seq).

    ``seq`` is the seq the entry *will* have (log head + 1): the node knows it when
    it creates the entry. ``epoch`` is the epoch id (id of the EPOCH_KEYS entry).
    Raw: ``refs`` are written as given (use :func:`encrypt_content` for a content,
    which derives them); ``version=1`` writes the old format (no refs).
    """
    nonce = nacl.utils.random(AEAD_NONCE_SIZE) if nonce is None else nonce
    if len(nonce) != AEAD_NONCE_SIZE:
        raise ValueError("nonce must be 24 bytes")
    shell = Sealed(epoch, nonce, b"", refs, version)
    ad = _ad_of(topic, author, seq, shell)
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, ad, nonce, key
    )
    return encode_room_payload(Sealed(epoch, nonce, bytes(ciphertext), refs, version))


def encrypt_content(  # noqa: PLR0917 - mirrors encrypt_for_entry
    key: bytes,
    epoch: bytes,
    topic: bytes,
    author: bytes,
    seq: int,
    content: Content,
    *,
    nonce: bytes | None = None,
) -> bytes:
    """The SEALED v2 payload of ``content``, with the clear refs it must carry."""
    refs = refs_of(content)
    if refs is None:
        raise ValueError("an unknown content cannot be written")
    return encrypt_for_entry(key, epoch, topic, author, seq, encode_content(content),
                             nonce=nonce, refs=refs)


def decrypt_for_entry(key: bytes, topic: bytes, author: bytes, seq: int, sealed: Sealed) -> bytes:
    """The plaintext of a SEALED payload found at (topic, author, seq).

    Raises :class:`DecryptionError` if the key is wrong or anything it binds differs
    (for v2 this includes the clear refs). Raw bytes: no refs-vs-content check.
    """
    ad = _ad_of(topic, author, seq, sealed)
    try:
        return bytes(
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                sealed.ciphertext, ad, sealed.nonce, key
            )
        )
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise DecryptionError() from exc


def decrypt_content(key: bytes, topic: bytes, author: bytes, seq: int, sealed: Sealed) -> Content:
    """The content of a SEALED payload found at (topic, author, seq), checked.

    Raises :class:`DecryptionError` (does not open), :class:`DecodeError` (the
    plaintext is not a content) or :class:`RefsMismatchError` (a v2 payload whose
    clear refs are not :func:`refs_of` its content; never for v1 or unknown kinds).
    """
    content = decode_content(decrypt_for_entry(key, topic, author, seq, sealed))
    if sealed.version != 1:
        expected = refs_of(content)
        if expected is not None and expected != sealed.refs:
            raise RefsMismatchError()
    return content
