"""Request parsing: bytes and strings in, typed values out (pure, no I/O).

Every body, path segment and query value goes through here before the messenger
sees it: JSON is decoded with bounded size, checked against the documented schema
(:mod:`.openapi`, :func:`.schema.check`), and turned into the messaging layer's
own types (``MemberSpec``, ``Content``). Anything wrong raises :class:`ApiError`
with a 4xx status; nothing else escapes (tests/test_api_requests.py fuzzes it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..messaging import (
    Content,
    Edit,
    FhirCommunication,
    Kind,
    MemberSpec,
    Reaction,
    Redaction,
    Reply,
    RoomKind,
    RoomRole,
    Text,
)
from ..messaging.content import MAX_FHIR_JSON, MAX_LABEL, MAX_TEXT
from .errors import ApiError
from .openapi import MAX_PAGE, SCHEMAS
from .schema import check

__all__ = [
    "CreateRoomRequest",
    "MemberRequest",
    "ReadRequest",
    "RevokeRequest",
    "UploadRequest",
    "decode_json",
    "parse_change_role",
    "parse_create_room",
    "parse_event_id",
    "parse_hex",
    "parse_history_share",
    "parse_limit",
    "parse_member",
    "parse_relay",
    "parse_revoke",
    "parse_send",
    "parse_upload",
    "parse_wait",
]

_HEX_CHARS = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class MemberRequest:
    """A device to add: ``org`` None means "whichever known org certifies it"."""

    device: bytes
    org: bytes | None
    role: RoomRole

    def spec(self) -> MemberSpec | bytes:
        """What ``Messenger.add_member``/``create_room`` take."""
        return self.device if self.org is None else MemberSpec(self.device, self.org,
                                                               self.role)


@dataclass(frozen=True, slots=True)
class CreateRoomRequest:
    members: tuple[MemberRequest, ...]
    kind: RoomKind
    name: str


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """A read receipt: up to ``up_to`` (None: the last message)."""

    up_to: bytes | None


@dataclass(frozen=True, slots=True)
class RevokeRequest:
    device: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """POST /v1/rooms/{room}/attachments: how to label the file in the body."""

    kind: Kind
    mime: str
    name: str
    caption: str


ATTACHMENT_KINDS = {"voice": Kind.VOICE, "image": Kind.IMAGE, "document": Kind.DOCUMENT,
                    "video": Kind.VIDEO}
MAX_WAIT = 300.0
"""Seconds a download may wait for a fetch."""
_MIME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        "!#$&^_.+-")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_json(body: bytes, content_type: str | None, max_body: int) -> Any:
    """Decode a request body: 413 above ``max_body`` bytes, 415 unless JSON, 400 if
    the bytes are not one UTF-8 JSON value (NaN/Infinity refused)."""
    if len(body) > max_body:
        raise ApiError(413, f"request body larger than {max_body} bytes")
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "expected Content-Type: application/json")
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "body is not valid UTF-8 JSON") from exc


def _checked(value: Any, schema: str) -> dict[str, Any]:
    check(value, SCHEMAS[schema], SCHEMAS)
    assert isinstance(value, dict)
    return value


def parse_hex(text: str, what: str) -> bytes:
    """A 32-byte id from 64 hex digits (path segment or query value); 400 otherwise."""
    if len(text) != 64 or not set(text) <= _HEX_CHARS:
        raise ApiError(400, f"{what}: expected 64 hex digits (a 32-byte id)")
    return bytes.fromhex(text)


def _member(obj: Mapping[str, Any]) -> MemberRequest:
    org = obj.get("org")
    return MemberRequest(bytes.fromhex(obj["device"]),
                         None if org is None else bytes.fromhex(org),
                         RoomRole(obj.get("role", "member")))


def parse_create_room(value: Any) -> CreateRoomRequest:
    """POST /v1/rooms."""
    obj = _checked(value, "CreateRoom")
    members = tuple(_member(m) for m in obj["members"])
    if len({m.device for m in members}) != len(members):
        raise ApiError(400, "members: a device is listed twice")
    return CreateRoomRequest(members, RoomKind(obj.get("kind", "group")), obj.get("name", ""))


def parse_member(value: Any) -> MemberRequest:
    """POST /v1/rooms/{room}/members."""
    return _member(_checked(value, "MemberSpec"))


def parse_change_role(value: Any) -> RoomRole:
    """PATCH /v1/rooms/{room}/members/{device}."""
    return RoomRole(_checked(value, "ChangeRole")["role"])


def parse_revoke(value: Any) -> RevokeRequest:
    """POST /v1/admin/revocations."""
    obj = _checked(value, "Revoke")
    return RevokeRequest(bytes.fromhex(obj["device"]), obj.get("reason", ""))


def parse_relay(value: Any) -> tuple[bytes, bytes]:
    """POST /v1/rooms/{room}/relays: (node key, organisation)."""
    obj = _checked(value, "RelaySpec")
    return bytes.fromhex(obj["node"]), bytes.fromhex(obj["org"])


def parse_history_share(value: Any) -> bytes:
    """POST /v1/rooms/{room}/history-shares: the device to share the history with."""
    return bytes.fromhex(_checked(value, "ShareHistory")["device"])


def parse_send(value: Any) -> Content | ReadRequest:
    """POST /v1/rooms/{room}/messages: the content to seal, or a read receipt."""
    obj = _checked(value, "SendMessage")
    kind = obj["kind"]
    target = bytes.fromhex(obj["target"]) if "target" in obj else b""
    match kind:
        case "text":
            return Text(obj["text"])
        case "reply":
            return Reply(target, obj["text"])
        case "edit":
            return Edit(target, obj["text"])
        case "react":
            return Reaction(target, obj["key"])
        case "redact":
            return Redaction(target, obj.get("reason", ""))
        case "read":
            up_to = obj.get("up_to")
            return ReadRequest(None if up_to is None else bytes.fromhex(up_to))
        case "fhir":
            return _fhir(obj)
    raise AssertionError(f"schema admitted kind {kind!r}")  # pragma: no cover


def _fhir(obj: Mapping[str, Any]) -> FhirCommunication:
    resource = obj["resource"]
    if resource.get("resourceType") != "Communication":
        raise ApiError(400, "resource.resourceType: expected 'Communication' (FHIR R4)")
    text = json.dumps(resource, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_FHIR_JSON:
        raise ApiError(413, f"resource: larger than {MAX_FHIR_JSON} characters as JSON; "
                            "large resources belong in an attachment")
    return FhirCommunication(text, obj["fallback_text"], obj.get("profile", ""))


def parse_limit(text: str | None, default: int = 50) -> int:
    """The ``limit`` query parameter: 1..MAX_PAGE."""
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        raise ApiError(400, "limit: expected an integer")
    limit = int(text)
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, f"limit: expected 1..{MAX_PAGE}")
    return limit


def parse_event_id(text: str | None) -> int | None:
    """The ``Last-Event-ID`` header: a decimal event id, or None (absent/empty)."""
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ApiError(400, "Last-Event-ID: expected a decimal event id")
    return int(text)



def _mime(text: str) -> str:
    main, sep, sub = text.partition("/")
    if (not sep or not main or not sub or len(text) > MAX_LABEL
            or not set(main + sub) <= _MIME_CHARS):
        raise ApiError(400, "mime: expected a media type such as application/pdf")
    return text.lower()


def parse_upload(query: Mapping[str, str], content_type: str | None) -> UploadRequest:
    """The query of POST /v1/rooms/{room}/attachments: ``kind`` (voice, image,
    document (default), video), ``mime`` (default: the Content-Type header, else
    application/octet-stream), ``name`` and ``caption`` (optional labels)."""
    unknown = sorted(set(query) - {"kind", "mime", "name", "caption"})
    if unknown:
        raise ApiError(400, f"unknown query parameter {unknown[0][:40]!r}")
    kind_text = query.get("kind", "document")
    if kind_text not in ATTACHMENT_KINDS:
        raise ApiError(400, "kind: expected voice, image, document or video")
    mime_text = query.get("mime")
    if mime_text is None:
        header = (content_type or "").split(";", 1)[0].strip()
        mime_text = header or "application/octet-stream"
    name = query.get("name", "")
    caption = query.get("caption", "")
    if len(name) > MAX_LABEL or any(c in name for c in "/\\\0") or name in (".", ".."):
        raise ApiError(400, f"name: at most {MAX_LABEL} characters, no path separators")
    if len(caption) > MAX_TEXT:
        raise ApiError(400, f"caption: at most {MAX_TEXT} characters")
    return UploadRequest(ATTACHMENT_KINDS[kind_text], _mime(mime_text), name, caption)


def parse_wait(text: str | None, default: float = 30.0) -> float:
    """The ``wait`` query parameter of a download: seconds 0..MAX_WAIT."""
    if text is None:
        return default
    try:
        value = float(text) if len(text) <= 12 else -1.0
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_WAIT:  # also refuses nan
        raise ApiError(400, f"wait: expected seconds 0..{MAX_WAIT:g}")
    return value
