"""The ASGI application: routes, auth, error mapping (Starlette on anyio/trio).

Build it with :func:`build_app`; :func:`p2pmsg.api.serve_api` serves it with
hypercorn. Every ``/v1/`` request needs ``Authorization: Bearer <token>``
(:class:`_BearerAuth`, constant-time compare); static files at ``/`` need none.
Handlers parse everything with :mod:`.requests` before calling the messenger and
answer with :mod:`.views`. Library errors map to statuses in one place
(:func:`_error_response`); logs carry method, route template, status and short
ids only — never bodies.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..blobs import FileTooLargeError, QuotaExceededError
from ..errors import LocalProtocolError, ValidationError
from ..messaging import Attachment, NotPermitted, control_topic
from ..messenger import Messenger, UnknownDevice, UnknownRoom
from .attachments import decrypted_chunks, ensure_local, receive_to_temp
from .errors import ApiError
from .events import LiveFeed, sse_stream
from .openapi import API_VERSION, document
from .requests import (
    ReadRequest,
    decode_json,
    parse_change_role,
    parse_create_room,
    parse_event_id,
    parse_hex,
    parse_history_share,
    parse_limit,
    parse_member,
    parse_relay,
    parse_revoke,
    parse_send,
    parse_upload,
    parse_wait,
)
from .token import check_bearer
from .views import device_view, message_view, room_view

__all__ = ["build_app"]

log = logging.getLogger("p2pmsg.api")

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; connect-src 'self'; img-src 'self' data:; "
     b"frame-ancestors 'none'"),
]


def _json(status: int, body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})


def _error(status: int, message: str) -> JSONResponse:
    return _json(status, {"error": message})


class _BearerAuth:
    """ASGI middleware: 401 for ``/v1/`` without the right bearer token; security
    headers on every response."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        path: str = scope["path"]
        if path.startswith("/v1/") or path == "/v1":
            header = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    header = value.decode("latin-1")
                    break
            if not check_bearer(header, self.token):
                response = _error(401, "missing or wrong bearer token "
                                       "(Authorization: Bearer <token>)")
                response.headers["www-authenticate"] = "Bearer"
                await response(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)


def _error_response(exc: Exception) -> JSONResponse:
    """Library errors -> HTTP. Messages of p2pmsg errors never hold content."""
    if isinstance(exc, ApiError):
        return _error(exc.status, exc.message)
    if isinstance(exc, FileTooLargeError):
        return _error(413, f"file larger than the blob store's limit ({exc.limit} bytes)")
    if isinstance(exc, QuotaExceededError):
        return _error(507, f"attachment storage quota of this {exc.scope} exceeded")
    if isinstance(exc, UnknownRoom):
        return _error(404, "unknown room")
    if isinstance(exc, UnknownDevice):
        return _error(404, "no known organisation certifies that device")
    if isinstance(exc, NotPermitted):
        return _error(403, f"not permitted: {exc}")
    if isinstance(exc, ValidationError):
        return _error(400, str(exc))
    if isinstance(exc, LocalProtocolError):
        return _error(409, str(exc))
    raise exc


Handler = Callable[[Request], Awaitable[Response]]


def _route(path: str, handler: Handler, methods: list[str]) -> Route:
    async def endpoint(request: Request) -> Response:
        try:
            response = await handler(request)
        except (ApiError, UnknownRoom, UnknownDevice, NotPermitted, ValidationError,
                LocalProtocolError, QuotaExceededError) as exc:
            response = _error_response(exc)
        except Exception as exc:
            log.error("API %s %s failed: %s", request.method, path, type(exc).__name__)
            response = _error(500, "internal error (see the node's log)")
        if response.status_code >= 400:
            log.info("API %s %s -> %d", request.method, path, response.status_code)
        return response
    return Route(path, endpoint, methods=methods)


class _Api:
    """The handlers, bound to one messenger and feed."""

    def __init__(self, messenger: Messenger, feed: LiveFeed, *, max_body: int,
                 keepalive: float, max_upload: int, upload_dir: Path | None) -> None:
        self.m = messenger
        self.feed = feed
        self.max_body = max_body
        self.keepalive = keepalive
        self.max_upload = max_upload
        self.upload_dir = upload_dir

    async def _body(self, request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            raise ApiError(413, f"request body larger than {self.max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise ApiError(413, f"request body larger than {self.max_body} bytes")
            chunks.append(chunk)
        return decode_json(b"".join(chunks), request.headers.get("content-type"),
                           self.max_body)

    def _room_id(self, request: Request) -> bytes:
        return parse_hex(request.path_params["room"], "room")

    def _room_json(self, topic: bytes) -> dict[str, Any]:
        return room_view(self.m.room(topic), topic in self.m.node.topics)

    async def status(self, request: Request) -> Response:
        stats = dataclasses.asdict(self.m.node.statistics())
        return _json(200, {
            "api_version": API_VERSION,
            "device": self.m.device.hex(),
            "person": None if (person := self.m.person) is None else person.hex(),
            "org": self.m.org.hex(),
            "orgs": [o.hex() for o in self.m.orgs],
            "rooms": len(self.m.rooms()),
            "peers": sorted(p.hex() for p in self.m.node.connected_peers()),
            "replicated_topics": len(self.m.node.topics),
            "missing_topics": [t.hex() for t in self.m.missing_topics()],
            "statistics": {k: v for k, v in stats.items()
                           if isinstance(v, int) and not isinstance(v, bool)},
        })

    async def orgs(self, request: Request) -> Response:
        now = self.m.node.config.wall_clock()
        return _json(200, {"orgs": [
            {"id": org.hex(), "devices": device_view(state.active_devices(now))}
            for org, state in sorted(self.m.org_states().items())]})

    async def list_rooms(self, request: Request) -> Response:
        topics = set(self.m.node.topics)
        return _json(200, {"rooms": [room_view(r, r.topic in topics) for r in self.m.rooms()]})

    async def create_room(self, request: Request) -> Response:
        req = parse_create_room(await self._body(request))
        room = await self.m.create_room([m.spec() for m in req.members], kind=req.kind,
                                        name=req.name)
        self.feed.watch(room.topic)
        log.info("API created room with %d members", len(req.members))
        return _json(201, self._room_json(room.topic))

    async def get_room(self, request: Request) -> Response:
        return _json(200, self._room_json(self._room_id(request)))

    async def list_members(self, request: Request) -> Response:
        return _json(200, {"members": self._room_json(self._room_id(request))["members"]})

    async def add_member(self, request: Request) -> Response:
        topic = self._room_id(request)
        req = parse_member(await self._body(request))
        self.m.room(topic)  # 404 before anything else
        entry = await self.m.add_member(topic, req.spec(), req.role)
        return _json(201, {"id": entry.hex()})

    async def remove_member(self, request: Request) -> Response:
        topic = self._room_id(request)
        device = parse_hex(request.path_params["device"], "device")
        room = self.m.room(topic)
        if device not in room.members:
            raise ApiError(404, "that device is not a member of this room")
        if device == self.m.device:
            entry = await self.m.leave(topic)
        else:
            entry = await self.m.remove_member(topic, device)
        return _json(200, {"id": entry.hex()})

    async def change_role(self, request: Request) -> Response:
        topic = self._room_id(request)
        device = parse_hex(request.path_params["device"], "device")
        role = parse_change_role(await self._body(request))
        if device not in self.m.room(topic).members:
            raise ApiError(404, "that device is not a member of this room")
        entry = await self.m.change_role(topic, device, role)
        return _json(200, {"id": entry.hex()})

    async def list_relays(self, request: Request) -> Response:
        relays = self.m.relays(self._room_id(request))
        return _json(200, {"relays": [{"node": node.hex(), "org": org.hex()}
                                      for node, org in sorted(relays.items())]})

    async def add_relay(self, request: Request) -> Response:
        topic = self._room_id(request)
        node, org = parse_relay(await self._body(request))
        self.m.room(topic)  # 404 before anything else
        entry = await self.m.add_relay(topic, node, org)
        log.info("API declared a relay of a room")
        return _json(201, {"id": entry.hex()})

    async def remove_relay(self, request: Request) -> Response:
        topic = self._room_id(request)
        node = parse_hex(request.path_params["node"], "node")
        if node not in self.m.relays(topic):
            raise ApiError(404, "that node is not a relay of this room")
        entry = await self.m.remove_relay(topic, node)
        return _json(200, {"id": entry.hex()})

    async def list_messages(self, request: Request) -> Response:
        topic = self._room_id(request)
        limit = parse_limit(request.query_params.get("limit"))
        before_text = request.query_params.get("before")
        timeline = self.m.timeline(topic)
        messages = timeline.messages
        end = len(messages)
        if before_text is not None:
            before = parse_hex(before_text, "before")
            if before not in timeline.by_id:
                raise ApiError(400, "before: not a message of this room")
            end = next(i for i in range(end - 1, -1, -1) if messages[i].id == before)
        start = max(0, end - limit)
        page = messages[start:end]
        return _json(200, {
            "messages": [message_view(m) for m in page],
            "read_up_to": {d.hex(): i.hex() for d, i in sorted(timeline.read_up_to.items())},
            "next_before": page[0].id.hex() if start > 0 and page else None,
        })

    async def send_message(self, request: Request) -> Response:
        topic = self._room_id(request)
        req = parse_send(await self._body(request))
        self.m.room(topic)
        if isinstance(req, ReadRequest):
            if req.up_to is not None and req.up_to not in self.m.timeline(topic).by_id:
                raise ApiError(400, "up_to: not a message of this room")
            sent = await self.m.mark_read(topic, req.up_to)
            return _json(201 if sent is not None else 200,
                         {"id": None if sent is None else sent.hex()})
        target = getattr(req, "target", None)
        if target is not None and target not in self.m.timeline(topic).by_id:
            raise ApiError(400, "target: not a message of this room")
        sent_id = await self.m.send(topic, req)
        return _json(201, {"id": sent_id.hex()})

    async def rekey(self, request: Request) -> Response:
        topic = self._room_id(request)
        self.m.room(topic)
        return _json(201, {"id": (await self.m.rekey(topic)).hex()})

    async def share_history(self, request: Request) -> Response:
        topic = self._room_id(request)
        device = parse_history_share(await self._body(request))
        self.m.room(topic)  # 404 for an unknown room first
        try:
            entry = await self.m.share_history(topic, device)
        except UnknownDevice:
            raise ApiError(404, "device: not another active device of this device's "
                                "person") from None
        log.info("API shared a room's history with another device of this person")
        return _json(201, {"id": None if entry is None else entry.hex()})

    async def revoke(self, request: Request) -> Response:
        req = parse_revoke(await self._body(request))
        if req.device == self.m.device:
            raise ApiError(409, "a device cannot revoke itself through its own API")
        entry = await self.m.revoke_device(req.device, req.reason)
        log.info("API revoked a device of this organisation")
        return _json(201, {"id": entry.hex()})

    async def upload(self, request: Request) -> Response:
        topic = self._room_id(request)
        req = parse_upload(request.query_params, request.headers.get("content-type"))
        self.m.room(topic)  # 404 before the body is read
        if self.m.node.blob_store is None:
            raise ApiError(503, "this node has no blob store (NodeConfig.blob_store): "
                                "attachments are unavailable")
        path = await receive_to_temp(request, self.max_upload, self.upload_dir)
        try:
            sent = await self.m.send_file(topic, path, kind=req.kind, mime=req.mime,
                                          name=req.name, caption=req.caption)
        finally:
            path.unlink(missing_ok=True)
        sent_message = self.m.timeline(topic).by_id.get(sent)
        content = None if sent_message is None else sent_message.content
        if not isinstance(content, Attachment):  # pragma: no cover - just sent it
            raise ApiError(500, "the sent attachment is not in the timeline")
        d = content.descriptor
        log.info("API sent an attachment of %d bytes", d.size)
        return _json(201, {"id": sent.hex(), "content_hash": d.content_hash.hex(),
                           "size": d.size})

    async def download(self, request: Request) -> Response:
        topic = self._room_id(request)
        msg_id = parse_hex(request.path_params["message"], "message")
        wait = parse_wait(request.query_params.get("wait"))
        message = self.m.timeline(topic).by_id.get(msg_id)
        if message is None:
            raise ApiError(404, "unknown message in this room")
        content = message.content
        if not isinstance(content, Attachment):
            raise ApiError(404, "that message carries no attachment (or it was redacted "
                                "or cannot be decrypted)")
        d = content.descriptor
        manifest = await ensure_local(self.m.node, d, topic, self.m.org, wait)
        return StreamingResponse(
            decrypted_chunks(self.m.node, manifest, d.file_key),
            media_type=d.mime or "application/octet-stream",
            headers={"cache-control": "no-store", "content-length": str(d.size),
                     "content-disposition": _disposition(d.name),
                     "content-security-policy": "sandbox"})

    async def events(self, request: Request) -> Response:
        room_text = request.query_params.get("room")
        room = None if room_text is None else parse_hex(room_text, "room")
        if room is not None and room in {control_topic(o) for o in self.m.orgs}:
            raise ApiError(400, "room: that is an organisation's control topic")
        last = parse_event_id(request.headers.get("last-event-id"))
        return StreamingResponse(
            sse_stream(self.feed, room, last, self.keepalive),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    async def openapi(self, request: Request) -> Response:
        return _json(200, document())


def _disposition(name: str) -> str:
    """``attachment`` (never rendered inline in the API's origin) with the name
    percent-encoded (RFC 6266 ``filename*``) and an ASCII fallback."""
    if not name:
        return "attachment"
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;'
                       else "_" for c in name)
    return f'attachment; filename="{fallback}"; filename*=UTF-8\'\'{quote(name, safe="")}'


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "no such path", 405: "method not allowed"}.get(exc.status_code,
                                                                   str(exc.detail))
    return _error(exc.status_code, message)


def build_app(messenger: Messenger, feed: LiveFeed, token: str, *, max_body: int = 2 << 20,
              keepalive: float = 15.0, static_dir: Path | None = None,
              max_upload: int = 512 << 20, upload_dir: Path | None = None) -> ASGIApp:
    """The API as an ASGI app (auth included). ``feed`` must be running
    (``nursery.start(feed.run)``) for ``/v1/events`` to deliver anything."""
    api = _Api(messenger, feed, max_body=max_body, keepalive=keepalive,
               max_upload=max_upload, upload_dir=upload_dir)
    routes: list[Route | Mount] = [
        _route("/v1/status", api.status, ["GET"]),
        _route("/v1/orgs", api.orgs, ["GET"]),
        _route("/v1/rooms", api.list_rooms, ["GET"]),
        _route("/v1/rooms", api.create_room, ["POST"]),
        _route("/v1/rooms/{room}", api.get_room, ["GET"]),
        _route("/v1/rooms/{room}/members", api.list_members, ["GET"]),
        _route("/v1/rooms/{room}/members", api.add_member, ["POST"]),
        _route("/v1/rooms/{room}/members/{device}", api.remove_member, ["DELETE"]),
        _route("/v1/rooms/{room}/members/{device}", api.change_role, ["PATCH"]),
        _route("/v1/rooms/{room}/relays", api.list_relays, ["GET"]),
        _route("/v1/rooms/{room}/relays", api.add_relay, ["POST"]),
        _route("/v1/rooms/{room}/relays/{node}", api.remove_relay, ["DELETE"]),
        _route("/v1/rooms/{room}/messages", api.list_messages, ["GET"]),
        _route("/v1/rooms/{room}/messages", api.send_message, ["POST"]),
        _route("/v1/rooms/{room}/rekey", api.rekey, ["POST"]),
        _route("/v1/rooms/{room}/history-shares", api.share_history, ["POST"]),
        _route("/v1/rooms/{room}/attachments", api.upload, ["POST"]),
        _route("/v1/rooms/{room}/messages/{message}/attachment", api.download, ["GET"]),
        _route("/v1/events", api.events, ["GET"]),
        _route("/v1/admin/revocations", api.revoke, ["POST"]),
        _route("/v1/openapi.json", api.openapi, ["GET"]),
    ]
    if static_dir is not None:
        routes.append(Mount("/", app=StaticFiles(directory=static_dir, html=True)))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    return _BearerAuth(app, token)

