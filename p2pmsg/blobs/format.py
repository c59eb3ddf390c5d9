"""The blob format: per-file encryption, fixed-size chunks, a paged manifest (pure).

Theory of operation
-------------------
An attached file is turned into content-addressed *objects*, all named by their
BLAKE2b-256 hash (32 bytes):

* **chunks** — the plaintext is cut into ``chunk_size`` pieces (default 1 MiB;
  the last one shorter; an empty file has one empty chunk). Each piece is
  encrypted on its own with XChaCha20-Poly1305 under the file's fresh random
  32-byte key, with a random 24-byte nonce, and associated data binding it to its
  place: ``"p2pmsg/blob-chunk/v1\\0" || file id (16) || file size (8, BE) ||
  chunk size (4, BE) || chunk index (8, BE)``. Chunk object = nonce || ciphertext+tag
  (plaintext length + 40 bytes).
* **pages** — the chunk hashes in order, concatenated, at most
  :data:`PAGE_HASHES` (8192) per page: one 256 KiB page covers 8 GiB of file at the
  default chunk size.
* **root** — canonical CBOR ``[1, file_id, size, chunk_size, [page hash, ...]]``.
  Its hash is the blob's address: ``AttachmentDescriptor.content_hash``.

So the descriptor (inside an E2E-encrypted room message) authenticates the root,
the root authenticates the pages, the pages authenticate every chunk: any chunk can
be verified and decrypted alone, in any order, from any peer — which is what a
resumable, multi-source fetch needs. Relays verify chunks by hash without the key.
docs/attachments.md has the byte layout and the trade-off against a Merkle tree.

Write with :class:`BlobEncryptor` (streaming) or :func:`encrypt_blob` (bytes);
read with :func:`decrypt_chunk` / :func:`decrypt_blob`; parse wire objects with
:func:`decode_root`, :func:`decode_page` and :meth:`Manifest.from_objects`. No I/O
here; the store (store.py) and the transfer machine (transfer.py) build on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import nacl.bindings
import nacl.exceptions
import nacl.utils

from .. import _cbor
from ..errors import DecodeError, Reason, ValidationError
from ..messaging.content import AttachmentDescriptor
from ..messaging.errors import DecryptionError
from .errors import BlobIncompleteError, ChunkMismatchError, FileTooLargeError

__all__ = [
    "CHUNK_OVERHEAD",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_FILE_SIZE",
    "FILE_ID_SIZE",
    "FORMAT_VERSION",
    "HASH_SIZE",
    "KEY_SIZE",
    "MAX_CHUNKS",
    "MAX_CHUNK_SIZE",
    "MAX_OBJECT_SIZE",
    "MAX_PAGES",
    "MAX_ROOT_SIZE",
    "MIN_CHUNK_SIZE",
    "PAGE_HASHES",
    "BlobEncryptor",
    "EncryptedBlob",
    "EncryptedChunk",
    "Manifest",
    "RootInfo",
    "chunk_associated_data",
    "check_descriptor",
    "decode_page",
    "decode_root",
    "decrypt_blob",
    "decrypt_chunk",
    "decrypt_stored_chunk",
    "describe",
    "encrypt_blob",
    "hash_object",
    "new_file_key",
    "verify_chunk",
]

FORMAT_VERSION = 1
HASH_SIZE = 32
FILE_ID_SIZE = 16
KEY_SIZE = 32
_NONCE_SIZE = 24
_TAG_SIZE = 16
CHUNK_OVERHEAD = _NONCE_SIZE + _TAG_SIZE
"""Bytes a chunk object adds to its plaintext (nonce + Poly1305 tag)."""
DEFAULT_CHUNK_SIZE = 1024 * 1024
"""1 MiB (was 256 KiB). Every chunk is one file and one index row on each node
that holds it: at 256 KiB, file creation and opening (~0.3-1 ms of CPU each on
the development VM) cost more per MB than all the framing, and 1 MiB chunks made
downloads ~20 % faster (docs/benchmarks.md). A cut loses at most one chunk per
request in flight; small files are one chunk whatever the size. Recorded per blob
in the root, so blobs made with another chunk size stay valid."""
MIN_CHUNK_SIZE = 64
"""Smallest chunk size accepted (tests use small chunks; production the default)."""
MAX_CHUNK_SIZE = 1024 * 1024
"""Largest chunk size: a chunk object must fit one sync frame (1 MiB + 64 KiB)."""
PAGE_HASHES = 8192
"""Chunk hashes per manifest page (a full page is 256 KiB)."""
MAX_PAGES = 1024
MAX_CHUNKS = PAGE_HASHES * MAX_PAGES
"""8,388,608 chunks: 2 TiB at the default chunk size."""
MAX_ROOT_SIZE = 64 * 1024
"""Bound on an encoded root (1024 page hashes need ~35 KiB)."""
MAX_OBJECT_SIZE = MAX_CHUNK_SIZE + CHUNK_OVERHEAD
"""Largest object of any kind (root and pages are smaller)."""
DEFAULT_MAX_FILE_SIZE = 4 * 1024**3
"""Default per-file limit (4 GiB, for video); configurable per call/store."""

_AD_DOMAIN = b"p2pmsg/blob-chunk/v1\x00"


_SODIUM_HASH_MIN = 64 << 10
"""From this size on, objects are hashed by libsodium: 1 MiB in 1.15 ms vs 1.41
with hashlib on the development VM, and it releases the GIL for the whole call
(hashlib's constructor scaled poorly across threads). Below it libsodium's
per-call overhead (~8 us) dominates."""


def hash_object(data: bytes) -> bytes:
    """The content address of an object: BLAKE2b-256 of its bytes (unkeyed, no
    salt or personalisation: the same digest from hashlib or libsodium)."""
    if type(data) is bytes and len(data) >= _SODIUM_HASH_MIN:
        return nacl.bindings.crypto_generichash_blake2b_salt_personal(
            data, digest_size=HASH_SIZE)
    return hashlib.blake2b(data, digest_size=HASH_SIZE).digest()


def new_file_key() -> bytes:
    """A fresh random 32-byte per-file key (libsodium CSPRNG). Never reuse one."""
    return nacl.utils.random(KEY_SIZE)


def _chunk_count(size: int, chunk_size: int) -> int:
    return max(1, -(-size // chunk_size))


def _check_chunk_size(chunk_size: int) -> None:
    if type(chunk_size) is not int or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be in {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")


def chunk_associated_data(file_id: bytes, size: int, chunk_size: int, index: int) -> bytes:
    """The AEAD associated data binding chunk ``index`` to its file and position."""
    return (_AD_DOMAIN + file_id + size.to_bytes(8, "big") + chunk_size.to_bytes(4, "big")
            + index.to_bytes(8, "big"))


@dataclass(frozen=True, slots=True)
class RootInfo:
    """A decoded manifest root: the file's parameters and its page hashes."""

    file_id: bytes
    size: int
    """Plaintext size of the file in bytes."""
    chunk_size: int
    page_hashes: tuple[bytes, ...]

    @property
    def chunk_count(self) -> int:
        return _chunk_count(self.size, self.chunk_size)

    def page_length(self, page: int) -> int:
        """Exact byte length of page ``page`` (32 bytes per chunk hash it lists)."""
        hashes = min(PAGE_HASHES, self.chunk_count - page * PAGE_HASHES)
        return hashes * HASH_SIZE


@dataclass(frozen=True)
class Manifest:
    """Everything needed to verify (not decrypt) every chunk of one blob.

    Build it with :class:`BlobEncryptor` or :meth:`from_objects`; ``root_hash`` is
    the blob's address. Values are checked on construction (ValueError).
    """

    file_id: bytes
    size: int
    chunk_size: int
    chunk_hashes: tuple[bytes, ...] = field(repr=False)

    def __post_init__(self) -> None:
        _check_chunk_size(self.chunk_size)
        if len(self.file_id) != FILE_ID_SIZE:
            raise ValueError("file_id must be 16 bytes")
        if type(self.size) is not int or self.size < 0:
            raise ValueError("size must be a non-negative int")
        count = _chunk_count(self.size, self.chunk_size)
        if count > MAX_CHUNKS:
            raise ValueError(f"a blob has at most {MAX_CHUNKS} chunks")
        if len(self.chunk_hashes) != count or any(len(h) != HASH_SIZE
                                                   for h in self.chunk_hashes):
            raise ValueError(f"need {count} chunk hashes of 32 bytes")
        if len(set(self.chunk_hashes)) != count:
            # Random nonces make equal chunk objects impossible in an honest blob.
            raise ValueError("chunk hashes must be unique")

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_hashes)

    def plain_size(self, index: int) -> int:
        """Plaintext bytes in chunk ``index``."""
        if not 0 <= index < self.chunk_count:
            raise IndexError(index)
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def cipher_size(self, index: int) -> int:
        """Exact byte length of chunk object ``index``."""
        return self.plain_size(index) + CHUNK_OVERHEAD

    @property
    def encrypted_size(self) -> int:
        """Total bytes of all chunk objects."""
        return self.size + CHUNK_OVERHEAD * self.chunk_count

    @cached_property
    def pages(self) -> tuple[bytes, ...]:
        """The manifest pages (concatenated chunk hashes, <= 8192 each)."""
        h = self.chunk_hashes
        return tuple(b"".join(h[i:i + PAGE_HASHES]) for i in range(0, len(h), PAGE_HASHES))

    @cached_property
    def root(self) -> bytes:
        """The encoded root object."""
        return _cbor.dumps([FORMAT_VERSION, self.file_id, self.size, self.chunk_size,
                            [hash_object(p) for p in self.pages]])

    @cached_property
    def root_hash(self) -> bytes:
        """The blob's content address (goes into ``AttachmentDescriptor.content_hash``)."""
        return hash_object(self.root)

    @cached_property
    def index_of(self) -> Mapping[bytes, int]:
        """Chunk hash -> index."""
        return {h: i for i, h in enumerate(self.chunk_hashes)}

    def metadata_objects(self) -> dict[bytes, bytes]:
        """Root and pages, keyed by hash: store or send these before the chunks."""
        out = {self.root_hash: self.root}
        out.update((hash_object(p), p) for p in self.pages)
        return out

    @property
    def stored_size(self) -> int:
        """Bytes this blob takes on disk (chunks + pages + root): what quotas count."""
        return self.encrypted_size + len(self.root) + HASH_SIZE * self.chunk_count

    @classmethod
    def from_objects(cls, root: bytes, pages: Sequence[bytes]) -> Manifest:
        """The manifest of a root object and its pages (in order). Raises DecodeError
        (or ChunkMismatchError if a page does not match the hash the root lists)."""
        info = decode_root(root)
        if len(pages) != len(info.page_hashes):
            raise DecodeError(Reason.MALFORMED, "manifest: wrong number of pages")
        hashes: list[bytes] = []
        for i, page in enumerate(pages):
            hashes.extend(decode_page(info, i, page))
        try:
            return cls(info.file_id, info.size, info.chunk_size, tuple(hashes))
        except ValueError as exc:
            raise DecodeError(Reason.MALFORMED, f"manifest: {exc}") from exc


def decode_root(data: bytes) -> RootInfo:
    """Parse a root object. Raises only :class:`DecodeError`."""
    value = _cbor.loads_canonical(data, "blob root", MAX_ROOT_SIZE)
    if type(value) is not list or not value or type(value[0]) is not int:
        raise DecodeError(Reason.MALFORMED, "blob root: expected [version, ...]")
    if value[0] != FORMAT_VERSION:
        raise DecodeError(Reason.UNKNOWN_VERSION, f"blob root: version {value[0]}")
    if len(value) != 5:
        raise DecodeError(Reason.MALFORMED, "blob root: expected 5 fields")
    _, file_id, size, chunk_size, pages = value
    if type(file_id) is not bytes or len(file_id) != FILE_ID_SIZE:
        raise DecodeError(Reason.MALFORMED, "blob root: file id must be 16 bytes")
    if type(chunk_size) is not int or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise DecodeError(Reason.MALFORMED, "blob root: chunk size out of range")
    if type(size) is not int or not 0 <= size < (1 << 63):
        raise DecodeError(Reason.MALFORMED, "blob root: size out of range")
    count = _chunk_count(size, chunk_size)
    if count > MAX_CHUNKS:
        raise DecodeError(Reason.TOO_LARGE, f"blob root: {count} chunks > {MAX_CHUNKS}")
    if type(pages) is not list or len(pages) != -(-count // PAGE_HASHES):
        raise DecodeError(Reason.MALFORMED, "blob root: wrong number of page hashes")
    if not all(type(p) is bytes and len(p) == HASH_SIZE for p in pages):
        raise DecodeError(Reason.MALFORMED, "blob root: page hashes are 32 bytes")
    return RootInfo(file_id, size, chunk_size, tuple(pages))


def decode_page(info: RootInfo, page: int, data: bytes) -> tuple[bytes, ...]:
    """The chunk hashes listed by page ``page`` of ``info``.

    Raises :class:`ChunkMismatchError` if ``data`` is not the page the root names
    (wrong hash or length), :class:`DecodeError` for a page index out of range.
    """
    if not 0 <= page < len(info.page_hashes):
        raise DecodeError(Reason.MALFORMED, "blob page: index out of range")
    if not isinstance(data, bytes) or len(data) != info.page_length(page):
        raise ChunkMismatchError("blob page: wrong length")
    if hash_object(data) != info.page_hashes[page]:
        raise ChunkMismatchError("blob page: does not match its hash")
    return tuple(data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE))


@dataclass(frozen=True, slots=True)
class EncryptedChunk:
    """One chunk object ready to store or send."""

    index: int
    hash: bytes
    data: bytes = field(repr=False)


class BlobEncryptor:
    """Streaming encryption of a file of known ``size`` into chunk objects.

    Feed plaintext with :meth:`update` (any piece sizes); it returns the chunk
    objects completed so far. :meth:`finish` returns the remaining chunks and the
    :class:`Manifest`. Memory use is one chunk, whatever the file size. The fresh
    per-file key is :attr:`key` (pass ``key=`` only in tests; never reuse a key).
    """

    def __init__(self, size: int, *, key: bytes | None = None, file_id: bytes | None = None,
                 chunk_size: int = DEFAULT_CHUNK_SIZE,
                 max_file_size: int = DEFAULT_MAX_FILE_SIZE) -> None:
        _check_chunk_size(chunk_size)
        if type(size) is not int or size < 0:
            raise ValueError("size must be a non-negative int")
        if size > max_file_size:
            raise FileTooLargeError(size, max_file_size)
        if _chunk_count(size, chunk_size) > MAX_CHUNKS:
            raise FileTooLargeError(size, MAX_CHUNKS * chunk_size)
        self.key = new_file_key() if key is None else key
        self.file_id = nacl.utils.random(FILE_ID_SIZE) if file_id is None else file_id
        if len(self.key) != KEY_SIZE or len(self.file_id) != FILE_ID_SIZE:
            raise ValueError("key must be 32 bytes and file_id 16 bytes")
        self.size = size
        self.chunk_size = chunk_size
        self._buf = bytearray()
        self._fed = 0
        self._hashes: list[bytes] = []

    def _seal(self, plaintext: bytes) -> EncryptedChunk:
        index = len(self._hashes)
        nonce = nacl.utils.random(_NONCE_SIZE)
        ad = chunk_associated_data(self.file_id, self.size, self.chunk_size, index)
        data = nonce + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            plaintext, ad, nonce, self.key)
        digest = hash_object(data)
        self._hashes.append(digest)
        return EncryptedChunk(index, digest, data)

    def update(self, data: bytes) -> list[EncryptedChunk]:
        """Encrypt more plaintext; returns every chunk completed by it."""
        self._fed += len(data)
        if self._fed > self.size:
            raise ValueError(f"more than the declared {self.size} bytes")
        out = []
        cs = self.chunk_size
        view = memoryview(data)
        if self._buf:  # complete the partial chunk first
            take = min(cs - len(self._buf), len(view))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) == cs:
                out.append(self._seal(bytes(self._buf)))
                self._buf.clear()
        while len(view) >= cs:  # whole chunks straight from the input (no buffering)
            out.append(self._seal(bytes(view[:cs])))
            view = view[cs:]
        self._buf += view
        return out

    def finish(self) -> tuple[list[EncryptedChunk], Manifest]:
        """The last chunk(s) and the manifest. ValueError if fewer bytes were fed."""
        if self._fed != self.size:
            raise ValueError(f"fed {self._fed} of the declared {self.size} bytes")
        out = []
        if self._buf or not self._hashes:
            out.append(self._seal(bytes(self._buf)))
            self._buf.clear()
        manifest = Manifest(self.file_id, self.size, self.chunk_size, tuple(self._hashes))
        return out, manifest


@dataclass(frozen=True)
class EncryptedBlob:
    """A whole file encrypted in memory (small files, tests): manifest, key, chunks."""

    manifest: Manifest
    key: bytes = field(repr=False)
    chunks: tuple[bytes, ...] = field(repr=False)

    def objects(self) -> dict[bytes, bytes]:
        """Every object of the blob (root, pages, chunks) keyed by hash."""
        out = self.manifest.metadata_objects()
        out.update(zip(self.manifest.chunk_hashes, self.chunks, strict=True))
        return out


def encrypt_blob(plaintext: bytes, *, key: bytes | None = None, file_id: bytes | None = None,
                 chunk_size: int = DEFAULT_CHUNK_SIZE,
                 max_file_size: int = DEFAULT_MAX_FILE_SIZE) -> EncryptedBlob:
    """Encrypt ``plaintext`` in one go (see :class:`BlobEncryptor` for big files)."""
    enc = BlobEncryptor(len(plaintext), key=key, file_id=file_id, chunk_size=chunk_size,
                        max_file_size=max_file_size)
    chunks = enc.update(plaintext)
    tail, manifest = enc.finish()
    chunks += tail
    return EncryptedBlob(manifest, enc.key, tuple(c.data for c in chunks))


def verify_chunk(manifest: Manifest, index: int, data: bytes) -> None:
    """Raise :class:`ChunkMismatchError` unless ``data`` is chunk ``index``."""
    if len(data) != manifest.cipher_size(index):
        raise ChunkMismatchError("chunk has the wrong length")
    if hash_object(data) != manifest.chunk_hashes[index]:
        raise ChunkMismatchError("chunk does not match its hash")


def decrypt_chunk(manifest: Manifest, key: bytes, index: int, data: bytes) -> bytes:
    """Verify and decrypt chunk ``index``.

    Raises :class:`ChunkMismatchError` (not this chunk) or
    :class:`~p2pmsg.messaging.errors.DecryptionError` (wrong key / wrong place).
    """
    verify_chunk(manifest, index, data)
    ad = chunk_associated_data(manifest.file_id, manifest.size, manifest.chunk_size, index)
    try:
        return bytes(nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            data[_NONCE_SIZE:], ad, data[:_NONCE_SIZE], key))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise DecryptionError("attachment chunk does not decrypt") from exc


def decrypt_stored_chunk(manifest: Manifest, key: bytes, index: int, data: bytes) -> bytes:
    """:func:`decrypt_chunk` for a chunk read back from a store that hashed it on
    arrival: same result and errors, one BLAKE2b pass fewer.

    It decrypts first — the AEAD tag (file key, associated data naming this blob
    and index) authenticates every byte, so a damaged or misplaced file fails
    here — and hashes only after a failure, to tell damage
    (:class:`ChunkMismatchError`) from a wrong key (``DecryptionError``). Not for
    bytes from the network: anyone holding the file key can make a chunk that
    decrypts yet is not the one the manifest commits to; use :func:`decrypt_chunk`.
    """
    if len(data) != manifest.cipher_size(index):
        raise ChunkMismatchError("chunk has the wrong length")
    ad = chunk_associated_data(manifest.file_id, manifest.size, manifest.chunk_size, index)
    try:
        return bytes(nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            data[_NONCE_SIZE:], ad, data[:_NONCE_SIZE], key))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        verify_chunk(manifest, index, data)
        raise DecryptionError("attachment chunk does not decrypt") from exc


def decrypt_blob(manifest: Manifest, key: bytes,
                 chunks: Iterable[bytes] | Mapping[bytes, bytes]) -> bytes:
    """The plaintext of a whole blob from its chunk objects in any order.

    Duplicates are ignored; a chunk that is not part of the blob raises
    :class:`ChunkMismatchError`; a missing one :class:`BlobIncompleteError`.
    """
    items = chunks.values() if isinstance(chunks, Mapping) else chunks
    found: dict[int, bytes] = {}
    for data in items:
        i = manifest.index_of.get(hash_object(data))
        if i is None:
            raise ChunkMismatchError("chunk is not part of this blob")
        found.setdefault(i, data)
    if len(found) != manifest.chunk_count:
        raise BlobIncompleteError(manifest.chunk_count - len(found))
    return b"".join(decrypt_chunk(manifest, key, i, found[i])
                    for i in range(manifest.chunk_count))


def describe(manifest: Manifest, key: bytes, mime: str, name: str = "") -> AttachmentDescriptor:
    """The descriptor to put in an attachment message for this blob."""
    return AttachmentDescriptor(manifest.root_hash, manifest.size, mime, key, name)


def check_descriptor(descriptor: AttachmentDescriptor, manifest: Manifest) -> None:
    """Raise :class:`ValidationError` unless ``manifest`` is the blob ``descriptor`` names."""
    if descriptor.content_hash != manifest.root_hash:
        raise ChunkMismatchError("manifest is not the one the descriptor names")
    if descriptor.size != manifest.size:
        raise ValidationError(Reason.PAYLOAD_MISMATCH, "descriptor size differs from manifest")
