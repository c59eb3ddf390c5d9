"""Structured log lines on stderr: ``key=value`` (default) or one JSON object per line.

Call :func:`setup_logging` once at daemon start. Library loggers (``p2pmsg.node``
etc.) keep their printf-style messages; they land in the ``msg`` field. The daemon
itself logs events with :func:`event`, whose fields become keys. Nothing logged
here ever contains keys or message content — callers pass short ids and counts.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["StructuredFormatter", "event", "setup_logging"]

_FIELDS = "p2pmsg_fields"
log = logging.getLogger("p2pmsg.daemon")


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\\\n\t'):
        return json.dumps(text)
    return text


class StructuredFormatter(logging.Formatter):
    """Formats records as ``ts=... level=... logger=... event=... k=v`` or JSON."""

    def __init__(self, fmt: str = "kv") -> None:
        super().__init__()
        self.json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        extra = getattr(record, _FIELDS, None)
        if isinstance(extra, dict):
            fields["event"] = record.getMessage()
            fields.update(extra)
        else:
            fields["msg"] = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            fields["error"] = f"{type(exc).__name__}: {exc}"
        if self.json:
            return json.dumps(fields, default=str)
        return " ".join(f"{k}={_quote(v)}" for k, v in fields.items())


def setup_logging(level: str = "info", fmt: str = "kv", stream: TextIO | None = None) -> None:
    """Route the ``p2pmsg`` loggers to ``stream`` (stderr) with structured lines."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(StructuredFormatter(fmt))
    root = logging.getLogger("p2pmsg")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    for name in ("p2pmsg_tcp", "p2pmsg_quic", "p2pmsg_mdns"):
        plugin = logging.getLogger(name)
        plugin.addHandler(handler)
        plugin.setLevel(level.upper())
        plugin.propagate = False


def event(name: str, level: int = logging.INFO, **fields: object) -> None:
    """Log one daemon event with fields: ``event("started", node="ab12..", peers=2)``."""
    log.log(level, name, extra={_FIELDS: fields})
