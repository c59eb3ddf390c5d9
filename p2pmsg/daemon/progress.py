"""Progress of the initial sync in ``p2pmsg run``: a live line on a terminal, log lines otherwise.

Theory of operation
-------------------
:func:`report_initial_sync` runs in the daemon's nursery after ``ready``. It waits
(:meth:`p2pmsg.node.Node.wait_converged`) until every configured static peer is
connected and the first reconciliation of every replicated topic with it is done,
and meanwhile reports the node's statistics (:meth:`p2pmsg.node.Node.statistics`):

* stderr is a terminal: one line rewritten in place (``\\r``) every
  ``tty_interval`` seconds, e.g.
  ``initial sync: 1/2 peers, 1,234 entries (310.2 KiB) received, 4.1 s``,
  finished by a newline; a ``p2pmsg`` log line printed meanwhile first erases it
  (a logging filter), and the next tick redraws it below;
* otherwise (systemd, files, pipes): a ``event=sync_progress`` log line every
  ``log_interval`` seconds.

Either way ``event=initial_sync_done`` is logged when converged (with the entries
and bytes received and the seconds it took). With no static peers there is nothing
to wait for and nothing is reported. :func:`format_progress` is the pure
formatting, tested on its own.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

import trio

from ..node import Node
from .logsetup import event

__all__ = ["format_bytes", "format_progress", "report_initial_sync"]


def format_bytes(n: int) -> str:
    """``1536`` -> ``1.5 KiB`` (binary units, one decimal)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_progress(connected: int, peers: int, entries: int, nbytes: int,
                    elapsed: float, *, done: bool = False) -> str:
    """The terminal progress line (no content, no ids: counts only)."""
    head = "initial sync done" if done else "initial sync"
    return (f"{head}: {connected}/{peers} peers, {entries:,} entries "
            f"({format_bytes(nbytes)}) received, {elapsed:.1f} s")


async def report_initial_sync(
    node: Node, peers: list[bytes], *, stream: TextIO | None = None,
    tty_interval: float = 0.25, log_interval: float = 5.0,
) -> None:
    """Report the initial sync with ``peers`` until converged (see module docstring)."""
    if not peers:
        return
    out = stream if stream is not None else sys.stderr
    tty = out.isatty()
    started = time.monotonic()
    wanted = set(peers)

    def line(done: bool = False) -> str:
        stats = node.statistics()
        connected = len(wanted & set(node.connected_peers()))
        return format_progress(connected, len(wanted), stats.entries_received,
                               stats.bytes_received, time.monotonic() - started, done=done)

    def clear_line(record: logging.LogRecord) -> bool:
        out.write("\r\x1b[K")  # a log line replaces the progress line; redrawn next tick
        return True

    async def ticker() -> None:
        while True:
            if tty:
                out.write("\r\x1b[K" + line())
                out.flush()
                await trio.sleep(tty_interval)
            else:
                await trio.sleep(log_interval)
                stats = node.statistics()
                event("sync_progress",
                      peers_connected=len(wanted & set(node.connected_peers())),
                      peers=len(wanted), entries_received=stats.entries_received,
                      bytes_received=stats.bytes_received)

    handlers = logging.getLogger("p2pmsg").handlers if tty else []
    for handler in handlers:
        handler.addFilter(clear_line)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await node.wait_converged(peers, node.topics)
            nursery.cancel_scope.cancel()
    finally:
        for handler in handlers:
            handler.removeFilter(clear_line)
        if tty:
            out.write("\r\x1b[K")
            out.flush()
    if tty:
        out.write(line(done=True) + "\n")
        out.flush()
    stats = node.statistics()
    event("initial_sync_done", peers=len(wanted), entries_received=stats.entries_received,
          bytes_received=stats.bytes_received, seconds=round(time.monotonic() - started, 3))
