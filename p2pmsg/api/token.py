"""The API's bearer token: load or create it, and compare in constant time.

A token file must be readable by its owner only (like a key file); a new one is
created with ``O_EXCL`` and mode 0600 so it is never briefly world-readable.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from ..errors import KeyFileError

__all__ = ["MIN_TOKEN_LENGTH", "check_bearer", "generate_token", "load_or_create_token"]

MIN_TOKEN_LENGTH = 32
"""Characters; a generated token has 43 (32 random bytes, URL-safe base64)."""


def generate_token() -> str:
    return secrets.token_urlsafe(32)


def load_or_create_token(path: Path) -> str:
    """The token stored at ``path``, or a new one written there (mode 0600).

    Raises :class:`~p2pmsg.errors.KeyFileError` if the file is readable by group or
    others, too short, or not one line of printable ASCII."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"token file {path} is accessible by group or others; "
                               "chmod 600 it") from None
        token = path.read_text(encoding="ascii", errors="replace").strip()
        if len(token) < MIN_TOKEN_LENGTH or not (token.isascii() and token.isprintable()
                                                 and " " not in token):
            raise KeyFileError(f"token file {path} must hold one token of at least "
                               f"{MIN_TOKEN_LENGTH} printable ASCII characters") from None
        return token
    token = generate_token()
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    return token


def check_bearer(header: str | None, token: str) -> bool:
    """True iff ``header`` is ``Bearer <token>`` (constant-time in the token)."""
    if header is None:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"),
                               token.encode("utf-8"))
