"""The local HTTP+JSON API: apps in any language talk to one device's messenger.

Start here: ``await nursery.start(serve_api, messenger, ApiConfig(port=0))`` gives
an :class:`ApiServer` (URL and bearer token). docs/http-api.md explains auth,
endpoints, server-sent events and errors; docs/openapi.json is the contract
(:mod:`.openapi` builds it). Modules: :mod:`.config`, :mod:`.token` (bearer token),
:mod:`.schema` and :mod:`.requests` (validation, pure), :mod:`.views` (JSON
answers, pure), :mod:`.events` (live feed and SSE), :mod:`.attachments` (streamed
file upload and download), :mod:`.app` (routes),
:mod:`.server` (hypercorn on trio).
"""

from .app import build_app as build_app
from .config import ApiConfig as ApiConfig
from .errors import ApiError as ApiError
from .events import LiveFeed as LiveFeed
from .openapi import document as openapi_document
from .server import ApiServer as ApiServer
from .server import serve_api as serve_api
from .token import load_or_create_token as load_or_create_token

__all__ = [
    "ApiConfig",
    "ApiError",
    "ApiServer",
    "LiveFeed",
    "build_app",
    "load_or_create_token",
    "openapi_document",
    "serve_api",
]
