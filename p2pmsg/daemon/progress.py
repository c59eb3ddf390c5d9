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

:class:`TransferProgress` is the same idea for the CLI's attachment transfers
(``p2pmsg send --file`` and ``p2pmsg download``), fed the bytes done by
:class:`p2pmsg.cli.api_client.ApiClient`: on a terminal one line rewritten in place,
``uploading befund.pdf 3.2/10.0 MB 32%``, ended by a newline; otherwise (pipes,
files) a plain line at most every ``plain_interval`` seconds and one final line.
:func:`format_transfer` is its pure formatting.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

import trio

from ..node import Node
from .logsetup import event

__all__ = ["TransferProgress", "format_bytes", "format_progress", "format_transfer",
           "report_initial_sync"]


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


_UNITS = (("GB", 1e9), ("MB", 1e6), ("kB", 1e3))


def format_transfer(verb: str, name: str, done: int, total: int | None) -> str:
    """``uploading befund.pdf 3.2/10.0 MB 32%`` (decimal units, both in the unit of
    ``total``); without a known total just the bytes done: ``downloading x 3.2 MB``."""
    scale = total if total else done
    unit, div = next(((u, d) for u, d in _UNITS if scale >= d), ("B", 1.0))

    def num(n: int) -> str:
        return str(n) if unit == "B" else f"{n / div:.1f}"

    if not total:
        return f"{verb} {name} {num(done)} {unit}"
    percent = min(100, done * 100 // total)
    return f"{verb} {name} {num(done)}/{num(total)} {unit} {percent}%"


class TransferProgress:
    """Progress of one upload or download (see the module docstring).

    Call :meth:`update` with the bytes done so far as often as convenient (it
    rate-limits itself), then :meth:`finish` on success or :meth:`abort` on failure
    (clears a terminal line; nothing else is printed, the caller reports the error).
    """

    def __init__(self, verb: str, name: str, total: int | None, stream: TextIO, *,
                 tty_interval: float = 0.1, plain_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.verb, self.name, self.total = verb, name, total
        self._out = stream
        self._tty = stream.isatty()
        self._interval = tty_interval if self._tty else plain_interval
        self._clock = clock
        # a plain line only once plain_interval has passed; a terminal line at once
        self._last = -float("inf") if self._tty else clock()
        self._done = 0
        self._drawn = False

    def update(self, done: int) -> None:
        """Record ``done`` bytes transferred; print if the interval has passed."""
        self._done = done
        now = self._clock()
        if now - self._last < self._interval:
            return
        self._last = now
        self._print(format_transfer(self.verb, self.name, done, self.total))

    def finish(self, done: int | None = None) -> None:
        """The final line (a terminal's line is rewritten one last time and ended)."""
        if done is not None:
            self._done = done
        self._print(format_transfer(self.verb, self.name, self._done, self.total))
        if self._tty:
            self._out.write("\n")
            self._out.flush()
        self._drawn = False

    def abort(self) -> None:
        """Erase a terminal's progress line (so an error message starts clean)."""
        if self._tty and self._drawn:
            self._out.write("\r\x1b[K")
            self._out.flush()
        self._drawn = False

    def _print(self, line: str) -> None:
        if self._tty:
            self._out.write("\r\x1b[K" + line)
            self._drawn = True
        else:
            self._out.write(line + "\n")
        self._out.flush()
