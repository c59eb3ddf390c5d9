"""Exit codes of the ``p2pmsg`` command (documented in docs/operations.md).

:func:`exit_code_for` maps an exception to its code; the CLI prints the exception
as one line on stderr and exits with it. Scripts may rely on these numbers.
"""

from __future__ import annotations

from ..daemon.config import ConfigError
from ..daemon.state import NodeRunningError
from ..errors import (
    CertificateError,
    KeyFileError,
    P2PMsgError,
    StoreError,
    TransportError,
    ValidationError,
)
from .api_client import DaemonUnavailable

__all__ = [
    "CONFIG",
    "ERROR",
    "INTERNAL",
    "INTERRUPTED",
    "KEY",
    "NODE_RUNNING",
    "NOT_AVAILABLE",
    "NOT_RUNNING",
    "OK",
    "OS",
    "STORE",
    "TRANSPORT",
    "USAGE",
    "VERIFY_FAILED",
    "NotAvailableError",
    "exit_code_for",
]

OK = 0
ERROR = 1
"""Any other p2pmsg error."""
USAGE = 2
"""Bad command line (argparse)."""
CONFIG = 3
KEY = 4
"""Key file missing, corrupt, too readable; certificate invalid."""
STORE = 5
"""Store missing, corrupt, not ours, or refused the operation."""
TRANSPORT = 6
"""Network: plugin missing, address in use, unreachable."""
NODE_RUNNING = 7
"""Another process holds the data directory (the daemon is running)."""
VERIFY_FAILED = 8
"""``verify`` found a log that does not verify (or a fork with --fail-on-fork)."""
NOT_AVAILABLE = 9
"""A reserved command that is not implemented yet (none at the moment)."""
NOT_RUNNING = 10
"""``rooms``/``send``/``read``: the daemon is not running, its API is disabled, or
it cannot be reached."""
OS = 11
"""A file-system or OS error (no such file, permission denied, disk full)."""
INTERNAL = 70
"""A bug: please report it (run with P2PMSG_DEBUG=1 for the traceback)."""
INTERRUPTED = 130


class NotAvailableError(P2PMsgError):
    """A command name that is reserved but not implemented yet."""


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an exception raised by a command."""
    table: list[tuple[type[BaseException], int]] = [
        (ConfigError, CONFIG),
        (KeyFileError, KEY),
        (CertificateError, KEY),
        (StoreError, STORE),
        (TransportError, TRANSPORT),
        (NodeRunningError, NODE_RUNNING),
        (NotAvailableError, NOT_AVAILABLE),
        (DaemonUnavailable, NOT_RUNNING),
        (ValidationError, VERIFY_FAILED),
        (P2PMsgError, ERROR),
        (OSError, OS),
        (KeyboardInterrupt, INTERRUPTED),
    ]
    for kind, code in table:
        if isinstance(exc, kind):
            return code
    return INTERNAL
