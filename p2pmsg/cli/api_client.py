"""A tiny client of the running daemon's local HTTP API (stdlib ``http.client`` only).

``rooms``, ``send`` and ``read`` do not open the store: the daemon owns it. They
find the API with :func:`locate_api` (config ``[api]``, the data directory's
writer lock, the URL the daemon wrote into ``status.json``, the token file) and
call ``/v1/...`` with :meth:`ApiClient.call`. Every failure is one of two errors
with a one-line message: :class:`DaemonUnavailable` (not running, API disabled,
unreachable) or :class:`ApiRequestError` (the API answered 4xx/5xx; its
``{"error"}`` message is shown).
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..daemon.config import DaemonConfig
from ..daemon.state import is_locked, read_status
from ..errors import P2PMsgError

__all__ = ["ApiClient", "ApiRequestError", "DaemonUnavailable", "locate_api"]

_TIMEOUT = 30.0


class DaemonUnavailable(P2PMsgError):
    """The daemon is not running, its API is disabled, or it cannot be reached."""


class ApiRequestError(P2PMsgError):
    """The API refused a request (4xx/5xx); ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ApiClient:
    """Where the API listens and the bearer token to send."""

    host: str
    port: int
    token: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; returns the decoded JSON answer.

        Raises:
            DaemonUnavailable: connection refused/reset or timed out.
            ApiRequestError: a 4xx/5xx answer (message from the API's ``error``).
        """
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=_TIMEOUT)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise DaemonUnavailable(
                f"cannot reach the local API at {self.url}: {reason} "
                "(is the daemon still starting, or was it stopped?)") from None
        finally:
            conn.close()
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if response.status >= 400:
            message = answer.get("error") if isinstance(answer, dict) else None
            raise ApiRequestError(response.status, f"the daemon refused {method} {path}: "
                                  f"{message or response.reason} (HTTP {response.status})")
        return answer


def locate_api(config: DaemonConfig) -> ApiClient:
    """The running daemon's API for ``config``.

    Raises:
        DaemonUnavailable: ``[api]`` disabled, no daemon holds the data directory,
            or the token file is missing/unreadable.
    """
    if not config.api.enabled:
        raise DaemonUnavailable(
            f"the local API is disabled in {config.path} (set [api] enabled = true "
            "and restart 'p2pmsg run')")
    if not config.data_dir.is_dir() or is_locked(config.data_dir) is None:
        raise DaemonUnavailable(
            f"the daemon is not running (nothing holds {config.data_dir}); "
            f"start it with 'p2pmsg run -c {config.path}'")
    host, port = config.api.host, config.api.port
    status = read_status(config.data_dir)
    url = status.get("api_url") if status is not None else None
    if isinstance(url, str) and url.startswith("http://"):
        parsed = urllib.parse.urlsplit(url)
        if parsed.hostname and parsed.port:
            host, port = parsed.hostname, parsed.port
    elif port == 0:
        raise DaemonUnavailable(
            "the daemon has not published its API address yet (api.port = 0); "
            "retry in a moment")
    path = config.api_token_file
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise DaemonUnavailable(f"no API token at {path}: is the daemon running with "
                                "[api] enabled?") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise DaemonUnavailable(f"cannot read the API token {path}: {reason}") from None
    return ApiClient("127.0.0.1" if host == "localhost" else host, port, token)
