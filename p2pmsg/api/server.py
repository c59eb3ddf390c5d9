"""Serving the API: :func:`serve_api` runs hypercorn's trio worker plus the live feed.

``await nursery.start(serve_api, messenger, ApiConfig(...))`` returns an
:class:`ApiServer` (URLs, token) once the sockets listen; cancel the nursery to stop.
This is the one entry point the daemon (``p2pmsg run``) calls.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from ..messenger import Messenger
from .app import build_app
from .config import ApiConfig
from .events import LiveFeed
from .token import generate_token, load_or_create_token

__all__ = ["ApiServer", "serve_api"]

log = logging.getLogger("p2pmsg.api")


@dataclass(frozen=True, slots=True)
class ApiServer:
    """What :func:`serve_api` reports when it listens."""

    urls: tuple[str, ...]
    """``http://127.0.0.1:PORT`` (first) and ``http://unix:PATH`` binds, as hypercorn
    reports them."""
    token: str
    """The bearer token clients must send (keep it secret; it is not logged)."""

    @property
    def url(self) -> str:
        """The TCP base URL (``http://127.0.0.1:PORT``)."""
        return next(u for u in self.urls if not u.startswith("http://unix:"))


def _token(config: ApiConfig) -> str:
    if config.token is not None:
        return config.token
    if config.token_file is not None:
        return load_or_create_token(config.token_file)
    return generate_token()


async def serve_api(messenger: Messenger, config: ApiConfig, *,
                    task_status: trio.TaskStatus[ApiServer] = trio.TASK_STATUS_IGNORED
                    ) -> None:
    """Serve the HTTP API for ``messenger`` until cancelled.

    Reports an :class:`ApiServer` through ``task_status`` once listening. Raises
    :class:`~p2pmsg.errors.KeyFileError` for an unsafe token file and ``OSError``
    if the address is taken."""
    token = _token(config)
    feed = LiveFeed(messenger, config.event_buffer)
    app = build_app(messenger, feed, token, max_body=config.max_body,
                    keepalive=config.keepalive, static_dir=config.static_dir,
                    max_upload=config.max_upload, upload_dir=config.upload_dir)
    hc = HypercornConfig()
    host = f"[{config.host}]" if ":" in config.host else config.host
    hc.bind = [f"{host}:{config.port}"]
    if config.unix_socket is not None:
        if config.unix_socket.exists():
            config.unix_socket.unlink()
        hc.bind.append(f"unix:{config.unix_socket}")
    hc.accesslog = None  # request lines would carry ids; the app logs what matters
    hc.errorlog = logging.getLogger("p2pmsg.api.http")
    hc.graceful_timeout = 1.0
    hc.h11_max_incomplete_size = 64 * 1024
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        binds: list[str] = await nursery.start(partial(serve, app, hc))  # type: ignore[arg-type]
        if config.unix_socket is not None:
            os.chmod(config.unix_socket, 0o600)
        server = ApiServer(tuple(binds), token)
        log.info("local API listening on %s", ", ".join(binds))
        task_status.started(server)
