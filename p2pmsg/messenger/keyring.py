"""Epoch keys this device has opened: the :class:`Keyring` interface and the in-memory one.

Why a keyring at all: every epoch key can be re-derived from the room's EPOCH_KEYS
entry and the device's private key, so caching is an optimisation — *except* for
crypto-shredding (GDPR Art. 17, :func:`p2pmsg.governance.erase_person`): once an
epoch is forgotten it must stay forgotten, so the keyring also remembers which
epochs were shredded and the messenger never re-opens them.

Two implementations; the messenger only ever calls the interface:

* :class:`MemoryKeyring` keeps keys in process memory only. Lost on restart — the
  keys themselves are re-opened from the room entries on demand, but so is the list
  of *forgotten* epochs, so a shredded epoch would be re-opened after a restart.
* :class:`FileKeyring` (what the daemon uses: ``<data_dir>/keyring.db``) keeps keys
  and the forgotten list in one file, every key sealed with XChaCha20-Poly1305
  under a key-encryption key derived from the device seed (keyed BLAKE2b with a
  personalisation string — the construction libsodium's ``crypto_kdf`` uses), with
  the epoch id as associated data. Each change rewrites the file atomically
  (temp file, fsync, rename, fsync of the directory), so ``forget`` leaves no
  ciphertext of the shredded key in the keyring file.

Keyrings also satisfy :class:`p2pmsg.governance.EpochSecretStore` (``epochs`` and
``forget``), so the same object can be handed to ``erase_person``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import nacl.bindings
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.utils

from .._cbor import dumps, loads_canonical
from ..errors import DecodeError, KeyFileError
from ..identity import Identity

__all__ = ["FileKeyring", "Keyring", "MemoryKeyring"]


@runtime_checkable
class Keyring(Protocol):
    """Where the messenger keeps opened epoch keys (epoch id -> 32-byte AEAD key)."""

    def get(self, epoch_id: bytes) -> bytes | None:
        """The key of ``epoch_id``, or None if not held."""
        ...

    def put(self, epoch_id: bytes, key: bytes) -> None:
        """Remember a key. Must ignore epochs that were forgotten (shredded)."""
        ...

    def is_forgotten(self, epoch_id: bytes) -> bool:
        """True if ``epoch_id`` was shredded: never open it again."""
        ...

    def epochs(self) -> frozenset[bytes]:
        """Ids of every epoch whose key is held."""
        ...

    def forget(self, epoch_ids: Iterable[bytes]) -> list[bytes]:
        """Destroy these epochs' keys (and refuse them from now on); held ids, sorted."""
        ...


class MemoryKeyring:
    """A :class:`Keyring` in process memory. Nothing is written to disk."""

    __slots__ = ("_forgotten", "_keys")

    def __init__(self) -> None:
        self._keys: dict[bytes, bytes] = {}
        self._forgotten: set[bytes] = set()

    def get(self, epoch_id: bytes) -> bytes | None:
        return self._keys.get(epoch_id)

    def put(self, epoch_id: bytes, key: bytes) -> None:
        if epoch_id not in self._forgotten:
            self._keys[epoch_id] = key

    def is_forgotten(self, epoch_id: bytes) -> bool:
        return epoch_id in self._forgotten

    def epochs(self) -> frozenset[bytes]:
        return frozenset(self._keys)

    def forget(self, epoch_ids: Iterable[bytes]) -> list[bytes]:
        gone: list[bytes] = []
        for epoch_id in epoch_ids:
            self._forgotten.add(epoch_id)
            if self._keys.pop(epoch_id, None) is not None:
                gone.append(epoch_id)
        return sorted(gone)

    def __repr__(self) -> str:  # never show key bytes
        return f"MemoryKeyring({len(self._keys)} epochs, {len(self._forgotten)} forgotten)"


_MAGIC = b"p2pmsg-keyring\x00\x01"  # format tag + version; anything else is refused
_KEK_PERSON = b"p2pmsg-keyring01"  # BLAKE2b personalisation: 16 bytes, this use only
_CHECK_AD = b"p2pmsg-keyring/check"
_KEY_AD = b"p2pmsg-keyring/epoch:"
_CHECK_PLAIN = b"p2pmsg keyring check value"
_MAX_FILE = 64 * 1024 * 1024  # far above any real keyring; bounds a hostile file
_NONCE = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_KEY_SIZE = 32


def _kek(identity: Identity) -> bytes:
    """The key-encryption key: keyed BLAKE2b(key=device seed, person=_KEK_PERSON)."""
    return nacl.hash.blake2b(b"", digest_size=32, key=identity.seed(), person=_KEK_PERSON,
                             encoder=nacl.encoding.RawEncoder)


def _seal(kek: bytes, plain: bytes, ad: bytes) -> bytes:
    nonce = nacl.utils.random(_NONCE)
    return nonce + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plain, ad, nonce, kek)


def _open(kek: bytes, box: bytes, ad: bytes) -> bytes:
    """Raises nacl.exceptions.CryptoError on a wrong key, wrong ``ad`` or tampering."""
    return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        box[_NONCE:], ad, box[:_NONCE], kek)


class FileKeyring:
    """A durable :class:`Keyring` in one encrypted file (the daemon's ``keyring.db``).

    ``FileKeyring(path, identity)`` creates the file (mode 0600) if missing, else
    reads and checks it. Keys are held decrypted in memory after open, like
    :class:`MemoryKeyring`; every ``put``/``forget`` that changes something rewrites
    the file atomically before returning. One process at a time: two processes
    writing the same file lose each other's changes (the daemon holds it alone).

    Raises:
        KeyFileError: the file is not a keyring, is corrupt or truncated, was written
            under another device key, or is readable by group/others.
        OSError: the directory is not writable.
    """

    __slots__ = ("_forgotten", "_kek", "_keys", "_path")

    def __init__(self, path: Path | str, identity: Identity) -> None:
        self._path = Path(path)
        self._kek = _kek(identity)
        self._keys: dict[bytes, bytes] = {}
        self._forgotten: set[bytes] = set()
        if self._path.exists():
            self._load()
        else:
            self._save()

    @property
    def path(self) -> Path:
        return self._path

    # -- Keyring -------------------------------------------------------------------

    def get(self, epoch_id: bytes) -> bytes | None:
        return self._keys.get(epoch_id)

    def put(self, epoch_id: bytes, key: bytes) -> None:
        if epoch_id in self._forgotten or self._keys.get(epoch_id) == key:
            return
        if len(key) != _KEY_SIZE:
            raise ValueError(f"an epoch key is {_KEY_SIZE} bytes, got {len(key)}")
        self._keys[epoch_id] = key
        self._save()

    def is_forgotten(self, epoch_id: bytes) -> bool:
        return epoch_id in self._forgotten

    def epochs(self) -> frozenset[bytes]:
        return frozenset(self._keys)

    def forget(self, epoch_ids: Iterable[bytes]) -> list[bytes]:
        gone: list[bytes] = []
        changed = False
        for epoch_id in epoch_ids:
            if epoch_id not in self._forgotten:
                self._forgotten.add(epoch_id)
                changed = True
            if self._keys.pop(epoch_id, None) is not None:
                gone.append(epoch_id)
        if changed:
            self._save()  # the rewritten file no longer holds the shredded boxes
        return sorted(gone)

    def __repr__(self) -> str:  # never show key bytes
        return (f"FileKeyring({self._path.name}, {len(self._keys)} epochs, "
                f"{len(self._forgotten)} forgotten)")

    # -- file ----------------------------------------------------------------------

    def _bad(self, why: str) -> KeyFileError:
        return KeyFileError(f"{self._path}: {why}")

    def _load(self) -> None:
        mode = self._path.stat().st_mode
        if mode & 0o077:
            raise self._bad(f"keyring is accessible by group/others (mode {mode & 0o777:o}); "
                            "chmod 600 it")
        data = self._path.read_bytes()
        if not data.startswith(_MAGIC):
            raise self._bad("not a p2pmsg keyring (bad header)")
        try:
            value: Any = loads_canonical(data[len(_MAGIC):], "keyring", _MAX_FILE)
        except DecodeError as exc:
            raise self._bad(f"corrupt keyring ({exc})") from exc
        if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], bytes)
                and isinstance(value[1], list) and isinstance(value[2], list)):
            raise self._bad("corrupt keyring (unexpected structure)")
        check, keys, forgotten = value
        try:
            if _open(self._kek, check, _CHECK_AD) != _CHECK_PLAIN:
                raise self._bad("corrupt keyring (bad check value)")
        except nacl.exceptions.CryptoError as exc:
            raise self._bad("keyring was written under another device key "
                            "(or its check value is corrupt)") from exc
        for item in forgotten:
            if not isinstance(item, bytes):
                raise self._bad("corrupt keyring (forgotten id is not bytes)")
            self._forgotten.add(item)
        for item in keys:
            if not (isinstance(item, list) and len(item) == 2
                    and all(isinstance(x, bytes) for x in item)):
                raise self._bad("corrupt keyring (bad key record)")
            epoch_id, box = item
            try:
                key = _open(self._kek, box, _KEY_AD + epoch_id)
            except nacl.exceptions.CryptoError as exc:
                raise self._bad("corrupt keyring (a key record fails authentication)") from exc
            if len(key) != _KEY_SIZE or epoch_id in self._forgotten or epoch_id in self._keys:
                raise self._bad("corrupt keyring (inconsistent key record)")
            self._keys[epoch_id] = key

    def _save(self) -> None:
        body = [
            _seal(self._kek, _CHECK_PLAIN, _CHECK_AD),
            [[e, _seal(self._kek, k, _KEY_AD + e)] for e, k in sorted(self._keys.items())],
            sorted(self._forgotten),
        ]
        data = _MAGIC + dumps(body)
        tmp = self._path.with_name(self._path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._path)
        dir_fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
