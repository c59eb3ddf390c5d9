"""The data directory's run state: the single-writer lock, the pid file, the status file.

SQLite (WAL) lets several processes read a store, but a node's own log must have
one writer: two processes appending to it would sign two different entries at the
same seq — a fork of our own log. So whoever writes (``p2pmsg run``,
``p2pmsg append``) first takes :func:`writer_lock`, an exclusive ``flock`` on
``<data_dir>/lock``; a second writer gets :class:`NodeRunningError` at once. The
kernel drops the lock when the process dies, even by ``kill -9``.

The running daemon rewrites ``<data_dir>/status.json`` (atomically, every
``status.interval`` seconds) with its statistics and peers; ``p2pmsg status`` and
``p2pmsg peers`` read it. It holds public node ids and counters, nothing secret.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import P2PMsgError

__all__ = [
    "NodeRunningError",
    "is_locked",
    "pid_file",
    "read_status",
    "write_status",
    "writer_lock",
]

LOCK_NAME = "lock"
STATUS_NAME = "status.json"


class NodeRunningError(P2PMsgError):
    """Another process (usually ``p2pmsg run``) holds the data directory's writer lock."""


def _lock_path(data_dir: Path) -> Path:
    return data_dir / LOCK_NAME


@contextlib.contextmanager
def writer_lock(data_dir: Path) -> Iterator[None]:
    """Hold the exclusive writer lock of ``data_dir`` for the block.

    Raises:
        NodeRunningError: another process holds it.
        OSError: the data directory is missing or not writable.
    """
    fd = os.open(_lock_path(data_dir), os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise NodeRunningError(
                f"{data_dir}: the node is running{who}; stop it first "
                "(only one process may write a node's store)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_locked(data_dir: Path) -> int | None:
    """The pid holding the writer lock of ``data_dir``, 0 if held but unknown, else None."""
    try:
        fd = os.open(_lock_path(data_dir), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def pid_file(path: Path | None) -> Iterator[None]:
    """Write our pid to ``path`` (if given) for the block, then remove it."""
    if path is None:
        yield
        return
    _atomic_write(path, f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_status(data_dir: Path, status: dict[str, Any]) -> None:
    """Atomically replace ``<data_dir>/status.json``."""
    _atomic_write(data_dir / STATUS_NAME, json.dumps(status, sort_keys=True, indent=1) + "\n")


def read_status(data_dir: Path) -> dict[str, Any] | None:
    """The last status written by a daemon, or None if there is none or it is unreadable."""
    try:
        data = json.loads((data_dir / STATUS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
