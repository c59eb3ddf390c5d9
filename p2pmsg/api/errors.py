"""The local API's error: an HTTP status plus a message safe to show and to log.

Raised by the request validators (:mod:`.schema`, :mod:`.requests`) and by the
route handlers (:mod:`.app`), which turn it into ``{"error": message}`` with
``status``. Messages name fields and limits, never values (a value may be message
content or a patient identifier).
"""

from __future__ import annotations

from ..errors import P2PMsgError

__all__ = ["ApiError"]


class ApiError(P2PMsgError):
    """A request the API refuses: ``status`` is the HTTP status (4xx/5xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
