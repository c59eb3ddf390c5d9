"""Online backup of a node's store with SQLite's backup API (safe while the node runs).

:func:`backup_store` copies ``store.db`` page by page into a new file through a
read-only connection (WAL readers never block the running daemon's writer and see
one consistent snapshot), then opens the copy as a
:class:`~p2pmsg.store.sqlite.SqliteStore` and runs its integrity check, so a
backup that returns is known to be a readable p2pmsg store.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import StoreError
from ..store.sqlite import SqliteStore

__all__ = ["backup_store"]


def backup_store(source: Path, destination: Path) -> int:
    """Copy the store at ``source`` to the new file ``destination``; returns its size.

    Raises:
        StoreError: the source is missing or unreadable, the copy failed or does not
            verify. The destination is never overwritten if it exists.
    """
    if not source.is_file():
        raise StoreError(f"{source}: no store file")
    if destination.exists():
        raise StoreError(f"{destination}: already exists; refusing to overwrite")
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    try:
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        os.chmod(tmp, 0o600)
        with SqliteStore(tmp) as copy:
            copy.integrity_check()
        os.link(tmp, destination)
    except sqlite3.Error as exc:
        raise StoreError(f"{source}: backup failed: {exc}") from exc
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)
    return destination.stat().st_size
