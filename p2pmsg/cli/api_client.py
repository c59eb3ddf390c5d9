"""A tiny client of the running daemon's local HTTP API (stdlib ``http.client`` only).

``rooms``, ``send`` and ``read`` do not open the store: the daemon owns it. They
find the API with :func:`locate_api` (config ``[api]``, the data directory's
writer lock, the URL the daemon wrote into ``status.json``, the token file) and
call ``/v1/...`` with :meth:`ApiClient.call`. Every failure is one of two errors
with a one-line message: :class:`DaemonUnavailable` (not running, API disabled,
unreachable) or :class:`ApiRequestError` (the API answered 4xx/5xx; its
``{"error"}`` message is shown). :meth:`ApiClient.upload` and
:meth:`ApiClient.download` report bytes done to an optional ``progress`` callback
(the CLI feeds :class:`p2pmsg.daemon.progress.TransferProgress`).
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..daemon.config import DaemonConfig
from ..daemon.state import is_locked, read_status
from ..errors import P2PMsgError

__all__ = ["ApiClient", "ApiRequestError", "DaemonUnavailable", "locate_api"]

_TIMEOUT = 30.0
_FILE_TIMEOUT = 330.0
"""Uploads and downloads: the daemon may wait up to 300 s for peers (``wait``)."""


Progress = Callable[[int, "int | None"], None]
"""``progress(done, total)``: bytes transferred so far and the total if known."""


class _ReportingReader:
    """A file wrapper for ``http.client``'s body: reports the bytes read so far."""

    def __init__(self, file: BinaryIO, size: int, progress: Progress) -> None:
        self._file, self._size, self._progress = file, size, progress
        self.done = 0

    def read(self, amount: int = -1, /) -> bytes:
        piece = self._file.read(amount)
        self.done += len(piece)
        self._progress(self.done, self._size)
        return piece


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
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        conn, response = self._open(method, path, data, headers, _TIMEOUT)
        try:
            raw = self._read(response, method, path)
        finally:
            conn.close()
        return self._answer(response, raw, method, path)

    def upload(self, path: str, file: BinaryIO, size: int, content_type: str, *,
               progress: Progress | None = None) -> Any:
        """POST a file as the raw body, streamed from ``file`` (``size`` bytes);
        returns the decoded JSON answer. ``progress(sent, size)`` is called after
        each block read for sending. Raises like :meth:`call`."""
        headers = {"Accept": "application/json", "Content-Type": content_type,
                   "Content-Length": str(size)}
        body: BinaryIO | _ReportingReader = (
            file if progress is None else _ReportingReader(file, size, progress))
        conn, response = self._open("POST", path, body, headers, _FILE_TIMEOUT)
        try:
            raw = self._read(response, "POST", path)
        finally:
            conn.close()
        return self._answer(response, raw, "POST", path)

    def download(self, path: str, dest: BinaryIO, *,
                 progress: Progress | None = None) -> int:
        """GET ``path`` and stream a 200 answer's body into ``dest``; returns the bytes
        written. ``progress(written, content_length_or_None)`` is called after each
        piece (only once the answer is a success). Raises like :meth:`call`, and
        :class:`DaemonUnavailable` if the body ends before its Content-Length."""
        conn, response = self._open("GET", path, None, {}, _FILE_TIMEOUT)
        try:
            if response.status >= 400:
                self._answer(response, self._read(response, "GET", path), "GET", path)
            length = response.getheader("content-length")
            total = int(length) if length is not None and length.isdigit() else None
            written = 0
            while True:
                try:
                    piece = response.read(64 * 1024)
                except (OSError, http.client.HTTPException) as exc:
                    raise DaemonUnavailable(f"the download from {self.url} broke off: "
                                            f"{type(exc).__name__}") from None
                if not piece:
                    break
                dest.write(piece)
                written += len(piece)
                if progress is not None:
                    progress(written, total)
        finally:
            conn.close()
        expected = response.getheader("content-length")
        if expected is not None and expected.isdigit() and int(expected) != written:
            raise DaemonUnavailable(f"the download ended after {written} of {expected} "
                                    "bytes; retry")
        return written

    def _unreachable(self, exc: Exception) -> DaemonUnavailable:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return DaemonUnavailable(
            f"cannot reach the local API at {self.url}: {reason} "
            "(is the daemon still starting, or was it stopped?)")

    def _open(self, method: str, path: str,
              body: bytes | BinaryIO | _ReportingReader | None,
              headers: dict[str, str], timeout: float
              ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body,
                         headers={"Authorization": f"Bearer {self.token}", **headers})
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._unreachable(exc) from None

    def _read(self, response: http.client.HTTPResponse, method: str, path: str) -> bytes:
        try:
            return response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None

    @staticmethod
    def _answer(response: http.client.HTTPResponse, raw: bytes, method: str,
                path: str) -> Any:
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if response.status >= 400:
            message = answer.get("error") if isinstance(answer, dict) else None
            shown = path.split("?", 1)[0]
            raise ApiRequestError(response.status, f"the daemon refused {method} {shown}: "
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
