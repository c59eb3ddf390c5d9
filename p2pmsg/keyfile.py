"""Secret key files: written 0600 and atomically, refused if readable by others.

Format (text, one line each)::

    p2pmsg-secret-key v1 plain
    <base64 of seed(32) || BLAKE2b-32bit checksum of seed>

or, with a passphrase, ``v1 argon2id`` and the base64 of
``salt(16) || SecretBox(seed)`` where the box key is Argon2id(passphrase, salt) via
libsodium (``nacl.pwhash``). The checksum/box MAC catches corruption and wrong
passphrases with a clear :class:`~p2pmsg.errors.KeyFileError`.

This module is the only place the identity layer touches the file system.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from .errors import KeyFileError
from .identity import SEED_SIZE, Identity

__all__ = ["load_identity", "save_identity"]

_MAGIC = "p2pmsg-secret-key v1"
_SALT = nacl.pwhash.argon2id.SALTBYTES


def _checksum(seed: bytes) -> bytes:
    return hashlib.blake2b(seed, digest_size=4).digest()


def save_identity(path: str | os.PathLike[str], identity: Identity,
                  passphrase: bytes | None = None) -> None:
    """Write ``identity`` to ``path`` (mode 0600, fsync'd, atomic: all or nothing).

    Refuses to overwrite an existing file: losing a key loses an identity.
    """
    target = Path(path)
    if target.exists():
        raise KeyFileError(f"{target}: already exists; refusing to overwrite a key")
    seed = identity.seed()
    if passphrase is None:
        body = f"{_MAGIC} plain\n{base64.b64encode(seed + _checksum(seed)).decode()}\n"
    else:
        salt = nacl.utils.random(_SALT)
        key = nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE, passphrase, salt,
            opslimit=nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
            memlimit=nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE,
        )
        boxed = nacl.secret.SecretBox(key).encrypt(seed)
        body = f"{_MAGIC} argon2id\n{base64.b64encode(salt + bytes(boxed)).decode()}\n"
    # A fresh, exclusively created temporary name (never follows a planted symlink),
    # then link(2) into place: unlike rename, link fails if the target appeared in the
    # meantime, so a key created concurrently is never overwritten.
    tmp = target.with_name(f".{target.name}.{nacl.utils.random(8).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            data = body.encode()
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, target)
        except FileExistsError as exc:
            raise KeyFileError(f"{target}: already exists; refusing to overwrite a key") from exc
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_identity(path: str | os.PathLike[str], passphrase: bytes | None = None) -> Identity:
    """Read a key written by :func:`save_identity`. Raises :class:`KeyFileError`."""
    source = Path(path)
    try:
        st = source.stat()
    except FileNotFoundError as exc:
        raise KeyFileError(f"{source}: no such key file") from exc
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{source}: permissions {stat.filemode(st.st_mode)} are too open; "
            f"run 'chmod 600 {source}'"
        )
    try:
        lines = source.read_text(encoding="ascii").splitlines()
    except (UnicodeDecodeError, OSError) as exc:
        raise KeyFileError(f"{source}: unreadable key file ({type(exc).__name__})") from exc
    if len(lines) != 2 or not lines[0].startswith(_MAGIC + " "):
        raise KeyFileError(f"{source}: not a p2pmsg secret key file")
    kind = lines[0][len(_MAGIC) + 1 :]
    try:
        blob = base64.b64decode(lines[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFileError(f"{source}: corrupt key file (bad base64)") from exc
    if kind == "plain":
        if passphrase is not None:
            raise KeyFileError(f"{source}: key is not passphrase-protected")
        seed, check = blob[:SEED_SIZE], blob[SEED_SIZE:]
        if len(seed) != SEED_SIZE or check != _checksum(seed):
            raise KeyFileError(f"{source}: corrupt key file (checksum mismatch)")
        return Identity.from_seed(seed)
    if kind == "argon2id":
        if passphrase is None:
            raise KeyFileError(f"{source}: key is passphrase-protected; a passphrase is needed")
        salt, boxed = blob[:_SALT], blob[_SALT:]
        if len(salt) != _SALT:
            raise KeyFileError(f"{source}: corrupt key file (too short)")
        key = nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE, passphrase, salt,
            opslimit=nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
            memlimit=nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE,
        )
        try:
            seed = nacl.secret.SecretBox(key).decrypt(boxed)
        except nacl.exceptions.CryptoError as exc:
            raise KeyFileError(f"{source}: wrong passphrase or corrupt key file") from exc
        if len(seed) != SEED_SIZE:
            raise KeyFileError(f"{source}: corrupt key file (bad seed length)")
        return Identity.from_seed(seed)
    raise KeyFileError(f"{source}: unknown key file kind {kind!r}")
