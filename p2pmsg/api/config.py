"""Settings of the local API server (:func:`p2pmsg.api.serve_api`)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ApiConfig"]


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """Where and how the API listens.

    Only loopback addresses are accepted for ``host``: the API is for apps on the
    same machine (put a reverse proxy with TLS in front for anything else).
    """

    host: str = "127.0.0.1"
    port: int = 8470
    """TCP port; 0 picks a free one (read the URL from ``serve_api``'s start value)."""
    token: str | None = None
    """The bearer token; None = read ``token_file`` or generate one."""
    token_file: Path | None = None
    """Read the token from here (must not be readable by group/others); if missing,
    a new token is generated and written with mode 0600."""
    unix_socket: Path | None = None
    """Also listen on this Unix socket (chmod 0600 after binding)."""
    static_dir: Path | None = None
    """Serve these files at ``/`` without auth (e.g. examples/ward-chat)."""
    max_body: int = 2 * 1024 * 1024
    """Bytes of a request body (a FHIR resource may be up to 512 Ki characters)."""
    max_upload: int = 512 * 1024 * 1024
    """Bytes of one uploaded attachment (streamed to a temporary file, not held in
    memory); the node's blob store has its own per-file limit too."""
    upload_dir: Path | None = None
    """Where uploads are buffered before encryption (None: the system temp dir).
    The temporary file is mode 0600 and deleted as soon as it is encrypted."""
    event_buffer: int = 1024
    """Events kept for Last-Event-ID resumption."""
    keepalive: float = 15.0
    """Seconds between SSE keep-alive comments."""

    def __post_init__(self) -> None:
        host = "127.0.0.1" if self.host == "localhost" else self.host
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"ApiConfig.host must be a loopback address, not {self.host!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError("ApiConfig.port must be 0..65535")
        if self.max_upload < 1:
            raise ValueError("ApiConfig: max_upload >= 1")
        if self.max_body < 1024 or self.event_buffer < 1 or self.keepalive <= 0:
            raise ValueError("ApiConfig: max_body >= 1024, event_buffer >= 1, keepalive > 0")
