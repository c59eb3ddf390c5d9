"""The API's contract: the OpenAPI 3.1 document, built here and checked in.

One source for three uses: :mod:`.requests` validates every request body and query
against these schemas (:func:`p2pmsg.api.schema.check`), the server answers
``GET /v1/openapi.json`` with :func:`document`, and ``docs/openapi.json`` is this
document written out (``python -m p2pmsg.api.openapi > docs/openapi.json``; a test
fails when they differ). Response schemas are checked against the running server
by tests/test_api_schema.py.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ..messaging.content import MAX_FHIR_JSON, MAX_LABEL, MAX_TEXT

__all__ = ["API_VERSION", "MAX_MEMBERS", "MAX_PAGE", "SCHEMAS", "document"]

API_VERSION = "1.0.0"
MAX_MEMBERS = 256
"""Members in one POST /v1/rooms."""
MAX_PAGE = 500
"""Messages in one history page."""
HEX32 = "^[0-9a-fA-F]{64}$"

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Schema], required: list[str] | None = None,
         description: str = "") -> Schema:
    s: Schema = {"type": "object", "properties": props,
                 "required": list(props) if required is None else required,
                 "additionalProperties": False}
    if description:
        s["description"] = description
    return s


def _str(max_len: int, min_len: int = 0, description: str = "") -> Schema:
    s: Schema = {"type": "string", "maxLength": max_len}
    if min_len:
        s["minLength"] = min_len
    if description:
        s["description"] = description
    return s


def _kind(name: str) -> Schema:
    return {"type": "string", "enum": [name]}


_HEX: Schema = {"type": "string", "pattern": HEX32,
                "description": "expected 64 hex digits (a 32-byte id)"}
_HEX_OR_NULL: Schema = {"type": ["string", "null"], "pattern": HEX32,
                        "description": "expected 64 hex digits or null"}
_COUNT: Schema = {"type": "integer", "minimum": 0}
_PERSON: Schema = {"type": ["string", "null"], "pattern": "^[0-9a-fA-F]{32}$",
                   "description": "pseudonymous person id (32 hex digits) the device's "
                                  "certificate names; null: a device without a person"}

SCHEMAS: dict[str, Schema] = {
    "Id": _HEX,
    "Error": _obj({"error": {"type": "string"}},
                  description="Every 4xx/5xx answer. The message names the field and "
                              "limit, never the value sent."),
    "Status": _obj({
        "api_version": {"type": "string"},
        "device": _ref("Id"),
        "person": _PERSON,
        "org": _ref("Id"),
        "orgs": {"type": "array", "items": _ref("Id")},
        "rooms": _COUNT,
        "peers": {"type": "array", "items": _ref("Id"),
                  "description": "node ids of peers with an open session"},
        "replicated_topics": _COUNT,
        "missing_topics": {"type": "array", "items": _ref("Id"),
                           "description": "rooms this device needs that the node does not "
                                          "replicate (fixed at node start; docs/api.md)"},
        "statistics": {"type": "object", "additionalProperties": {"type": "integer"}},
    }),
    "Member": _obj({
        "device": _ref("Id"),
        "person": _PERSON,
        "org": _ref("Id"),
        "role": {"type": "string", "enum": ["admin", "member"]},
        "active": {"type": "boolean",
                   "description": "certified and not revoked as replicated here"},
    }),
    "Room": _obj({
        "id": _ref("Id"),
        "kind": {"type": "string", "enum": ["direct", "group"]},
        "creator": _ref("Id"),
        "members": {"type": "array", "items": _ref("Member")},
        "epoch": {"type": ["integer", "null"], "minimum": 0},
        "joined": {"type": "boolean"},
        "name": {"type": "string", "description": "local label, not replicated"},
        "replicated": {"type": "boolean",
                       "description": "false: the node does not ask peers for this room "
                                      "(removed from its interest)"},
    }),
    "RoomList": _obj({"rooms": {"type": "array", "items": _ref("Room")}}),
    "MemberSpec": _obj({
        "device": _ref("Id"),
        "org": _ref("Id"),
        "role": {"type": "string", "enum": ["admin", "member"]},
    }, required=["device"], description="org may be left out when a known organisation "
                                         "certifies the device"),
    "CreateRoom": _obj({
        "members": {"type": "array", "items": _ref("MemberSpec"), "maxItems": MAX_MEMBERS},
        "kind": {"type": "string", "enum": ["direct", "group"]},
        "name": _str(MAX_LABEL),
    }, required=["members"]),
    "MemberList": _obj({"members": {"type": "array", "items": _ref("Member")}}),
    "ChangeRole": _obj({"role": {"type": "string", "enum": ["admin", "member"]}}),
    "EntryRef": _obj({"id": _ref("Id")},
                     description="the id of the log entry that carries the change"),
    "Sent": _obj({"id": _HEX_OR_NULL},
                 description="the new message's id (null: a read receipt in an empty room)"),
    "Message": _obj({
        "id": _ref("Id"),
        "author": _ref("Id"),
        "person": _PERSON,
        "org": _ref("Id"),
        "timestamp": {"type": "integer", "minimum": 0,
                      "description": "hybrid logical clock (ms << 16 | counter)"},
        "time_ms": {"type": "integer", "minimum": 0,
                    "description": "the timestamp's wall-clock part, ms since 1970"},
        "status": {"type": "string",
                   "enum": ["ok", "redacted", "undecryptable", "unavailable"]},
        "kind": {"type": ["string", "null"],
                 "enum": ["text", "reply", "fhir", "voice", "image", "document", "video",
                          "unknown", None]},
        "content": {"type": ["object", "null"],
                    "description": "text: {text}; reply: {target, text}; fhir: "
                                   "{resource, fallback_text, profile, fhir_version}; "
                                   "attachments: {content_hash, size, mime, name, "
                                   "caption}; unknown: {code, version}"},
        "edited": {"type": "boolean"},
        "redacted_by": _HEX_OR_NULL,
        "reactions": {"type": "object",
                      "additionalProperties": {"type": "array", "items": _ref("Id")}},
    }),
    "MessagePage": _obj({
        "messages": {"type": "array", "items": _ref("Message")},
        "read_up_to": {"type": "object", "additionalProperties": _ref("Id"),
                       "description": "device -> id of the last message it declared read"},
        "next_before": _HEX_OR_NULL,
    }),
    "SendText": _obj({"kind": _kind("text"), "text": _str(MAX_TEXT, 1)}),
    "SendReply": _obj({"kind": _kind("reply"), "target": _ref("Id"),
                       "text": _str(MAX_TEXT, 1)}),
    "SendEdit": _obj({"kind": _kind("edit"), "target": _ref("Id"),
                      "text": _str(MAX_TEXT, 1)}),
    "SendReact": _obj({"kind": _kind("react"), "target": _ref("Id"),
                       "key": _str(MAX_LABEL, 1)}),
    "SendRedact": _obj({"kind": _kind("redact"), "target": _ref("Id"),
                        "reason": _str(MAX_LABEL)}, required=["kind", "target"]),
    "SendRead": _obj({"kind": _kind("read"), "up_to": _ref("Id")}, required=["kind"]),
    "SendFhir": _obj({
        "kind": _kind("fhir"),
        "resource": {"type": "object", "description": "a FHIR R4 Communication resource "
                     f"(resourceType 'Communication'), at most {MAX_FHIR_JSON} characters "
                     "as JSON"},
        "fallback_text": _str(MAX_TEXT, 1),
        "profile": _str(MAX_LABEL),
    }, required=["kind", "resource", "fallback_text"]),
    "SendMessage": {
        "oneOf": [_ref(n) for n in ("SendText", "SendReply", "SendEdit", "SendReact",
                                    "SendRedact", "SendRead", "SendFhir")],
        "discriminator": {"propertyName": "kind", "mapping": {
            "text": "#/components/schemas/SendText",
            "reply": "#/components/schemas/SendReply",
            "edit": "#/components/schemas/SendEdit",
            "react": "#/components/schemas/SendReact",
            "redact": "#/components/schemas/SendRedact",
            "read": "#/components/schemas/SendRead",
            "fhir": "#/components/schemas/SendFhir",
        }},
    },
    "Event": _obj({"room": _ref("Id"), "message": _ref("Message")},
                  description="data of an SSE `message` event: a new or changed message"),
    "Device": _obj({
        "device": _ref("Id"),
        "person": _PERSON,
        "role": {"type": "string", "enum": ["admin", "member", "node"]},
        "name": {"type": "string"},
    }),
    "Org": _obj({"id": _ref("Id"), "devices": {"type": "array", "items": _ref("Device")}}),
    "OrgList": _obj({"orgs": {"type": "array", "items": _ref("Org")}}),
    "Uploaded": _obj({
        "id": _ref("Id"),
        "content_hash": _ref("Id"),
        "size": _COUNT,
    }, description="the attachment message's id, the blob's content hash and the "
                   "file's size in bytes"),
    "Revoke": _obj({"device": _ref("Id"), "reason": _str(MAX_LABEL)}, required=["device"]),
    "RelaySpec": _obj({"node": _ref("Id"), "org": _ref("Id")}, required=["node", "org"],
                      description="a node key of the federation list and the organisation "
                                  "it is listed under"),
    "RelayList": _obj({"relays": {"type": "array", "items": _ref("RelaySpec")}},
                      description="nodes the room declares relays (replicate its "
                                  "ciphertext; not members, no keys)"),
    "ShareHistory": _obj({"device": _ref("Id")},
                         description="another active device of this device's person"),
    "HistoryShared": _obj({"id": _HEX_OR_NULL},
                          description="the history share's control entry (null: this "
                                      "device holds no epoch key the other device lacks; "
                                      "it was invited only)"),
}


def _json(name: str) -> Schema:
    return {"content": {"application/json": {"schema": _ref(name)}}}


def _resp(code: str, description: str, name: str | None) -> tuple[str, Schema]:
    body: Schema = {"description": description}
    if name is not None:
        body.update(_json(name))
    return code, body


_ERRORS = {
    "400": "invalid JSON, a field failing its schema, or a bad query parameter",
    "401": "missing or wrong bearer token",
    "403": "the room rules do not permit this to this device",
    "404": "unknown room, device or path",
    "409": "the operation conflicts with the room's state",
    "413": "request body too large",
    "415": "body is not application/json",
    "502": "the file peers sent does not match the message",
    "503": "this node has no blob store (attachments unavailable)",
    "507": "the organisation's or room's attachment quota is used up",
}
_UPLOAD_ERR = {"409": "the room's state refuses the message",
               "413": "file larger than max_upload or the blob store's limit"}
_DOWNLOAD_ERR = {"404": "unknown room or message, or the message carries no "
                        "attachment",
                 "409": "the file is not stored here yet and could not be fetched "
                        "within `wait` seconds (fetched chunks are kept: retry)"}


def _op(op_id: str, summary: str, ok: tuple[str, str, str | None], *, errors: str = "",
        body: str | None = None, params: list[Schema] | None = None,
        content_type: str = "application/json", raw_body: str | None = None,
        error_text: dict[str, str] | None = None) -> Schema:
    code, desc, name = ok
    responses = dict([_resp(code, desc, name)])
    if content_type != "application/json":
        responses[code] = {"description": desc, "content": {content_type: {
            "schema": {"type": "string"}}}}
    for c in ["401", *errors.split()]:
        text = (error_text or {}).get(c, _ERRORS[c])
        responses[c] = {"description": text, **_json("Error")}
    op: Schema = {"operationId": op_id, "summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    if raw_body is not None:
        op["requestBody"] = {"required": True, "description": raw_body, "content": {
            "*/*": {"schema": {"type": "string", "format": "binary"}}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": _ref("Id")}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


_ROOM = _path_param("room", "the room id (its topic), 64 hex digits")
_DEVICE = _path_param("device", "a device key, 64 hex digits")
_NODE = _path_param("node", "a node key, 64 hex digits")
_BODY_ERR = "400 413 415"


def document() -> Schema:
    """The whole OpenAPI 3.1 document (a fresh dict each call)."""
    paths: Schema = {
        "/v1/status": {"get": _op("getStatus", "This device, its node and its peers",
                                  ("200", "status", "Status"))},
        "/v1/orgs": {"get": _op("listOrgs", "Known organisations and their active devices",
                                ("200", "organisations", "OrgList"))},
        "/v1/rooms": {
            "get": _op("listRooms", "Rooms this device is a member of",
                       ("200", "rooms", "RoomList")),
            "post": _op("createRoom", "Create a room with members (writes creation and "
                        "first epoch)", ("201", "the new room", "Room"),
                        errors=f"{_BODY_ERR} 403 404 409", body="CreateRoom"),
        },
        "/v1/rooms/{room}": {"get": _op("getRoom", "One room", ("200", "the room", "Room"),
                                        errors="400 404", params=[_ROOM])},
        "/v1/rooms/{room}/members": {
            "get": _op("listMembers", "Current members", ("200", "members", "MemberList"),
                       errors="400 404", params=[_ROOM]),
            "post": _op("addMember", "Add a device (room admins)",
                        ("201", "the membership entry", "EntryRef"),
                        errors=f"{_BODY_ERR} 403 404 409", body="MemberSpec",
                        params=[_ROOM]),
        },
        "/v1/rooms/{room}/members/{device}": {
            "delete": _op("removeMember", "Remove a device (room admins); this device's "
                          "own key = leave", ("200", "the membership entry", "EntryRef"),
                          errors="400 403 404 409", params=[_ROOM, _DEVICE]),
            "patch": _op("changeRole", "Make a member admin or plain member (room admins)",
                         ("200", "the membership entry", "EntryRef"),
                         errors=f"{_BODY_ERR} 403 404 409", body="ChangeRole",
                         params=[_ROOM, _DEVICE]),
        },
        "/v1/rooms/{room}/relays": {
            "get": _op("listRelays", "Nodes the room declares relays",
                       ("200", "relays", "RelayList"), errors="400 404", params=[_ROOM]),
            "post": _op("addRelay", "Declare a node of an organisation a relay of the room "
                        "(room admins): it may replicate the room's ciphertext, it is not "
                        "a member and gets no keys", ("201", "the relay entry", "EntryRef"),
                        errors=f"{_BODY_ERR} 403 404 409", body="RelaySpec",
                        params=[_ROOM]),
        },
        "/v1/rooms/{room}/relays/{node}": {
            "delete": _op("removeRelay", "Stop a node relaying the room (room admins)",
                          ("200", "the relay entry", "EntryRef"),
                          errors="400 403 404 409", params=[_ROOM, _NODE],
                          error_text={"404": "unknown room, or the node is not a relay "
                                             "of this room"}),
        },
        "/v1/rooms/{room}/messages": {
            "get": _op("listMessages", "History in display order, newest page first",
                       ("200", "a page of messages", "MessagePage"), errors="400 404",
                       params=[_ROOM,
                               _query("limit", {"type": "integer", "minimum": 1,
                                                "maximum": MAX_PAGE, "default": 50},
                                      "messages per page"),
                               _query("before", _ref("Id"),
                                      "return messages before this id (next_before of "
                                      "the previous page)")]),
            "post": _op("sendMessage", "Send a text, reply, edit, reaction, redaction, "
                        "read receipt or FHIR Communication, chosen by `kind`",
                        ("201", "sent", "Sent"), errors=f"{_BODY_ERR} 403 404 409",
                        body="SendMessage", params=[_ROOM]),
        },
        "/v1/rooms/{room}/rekey": {
            "post": _op("rekey", "Open a new epoch now (normally automatic)",
                        ("201", "the epoch entry", "EntryRef"), errors="400 403 404 409",
                        params=[_ROOM])},
        "/v1/rooms/{room}/history-shares": {
            "post": _op("shareHistory", "Approve a new device of this device's person: "
                        "invite it and seal it every epoch key of the room this device "
                        "holds and it lacks (Messenger.share_history)",
                        ("201", "shared (or only invited)", "HistoryShared"),
                        errors=f"{_BODY_ERR} 404", body="ShareHistory", params=[_ROOM],
                        error_text={"404": "unknown room, or the device is not another "
                                           "active device of this device's person"})},
        "/v1/rooms/{room}/attachments": {
            "post": _op("uploadAttachment", "Send a file as a voice, image, document or "
                        "video message: the request body is the file's bytes",
                        ("201", "sent", "Uploaded"), errors="400 403 404 409 413 503 507",
                        error_text=_UPLOAD_ERR,
                        raw_body="the file itself (any Content-Type; it is the default "
                                 "`mime`), at most ApiConfig.max_upload bytes, streamed "
                                 "to a temporary file, encrypted, then deleted",
                        params=[_ROOM,
                                _query("kind", {"type": "string", "enum": [
                                    "voice", "image", "document", "video"],
                                    "default": "document"}, "attachment kind"),
                                _query("mime", {"type": "string", "maxLength": MAX_LABEL},
                                       "media type (default: the Content-Type header)"),
                                _query("name", _str(MAX_LABEL), "file name shown to "
                                       "members (no path separators)"),
                                _query("caption", _str(MAX_TEXT), "caption text")])},
        "/v1/rooms/{room}/messages/{message}/attachment": {
            "get": _op("downloadAttachment", "The decrypted file of an attachment message, "
                       "streamed; fetched from connected peers first if not stored here "
                       "(for at most `wait` seconds)",
                       ("200", "the file (Content-Type: its mime; Content-Disposition: "
                        "attachment with its name)", None),
                       errors="400 404 409 502 503", error_text=_DOWNLOAD_ERR,
                       content_type="application/octet-stream",
                       params=[_ROOM, _path_param("message", "the message id, 64 hex "
                                                  "digits"),
                               _query("wait", {"type": "number", "minimum": 0,
                                               "maximum": 300, "default": 30},
                                      "seconds to fetch a file not stored here yet; 0 = "
                                      "answer 409 at once")])},
        "/v1/events": {
            "get": _op("events", "Server-sent events: `message` events whose data is an "
                       "Event; `id` lines allow resuming with the Last-Event-ID header; "
                       "a `reset` event means events were missed (re-read history)",
                       ("200", "text/event-stream", None), errors="400",
                       params=[_query("room", _ref("Id"), "only this room's events"),
                               {"name": "Last-Event-ID", "in": "header", "required": False,
                                "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                                "description": "resume after this event id"}],
                       content_type="text/event-stream")},
        "/v1/admin/revocations": {
            "post": _op("revokeDevice", "Revoke a device of this organisation (needs an "
                        "ADMIN device certificate, else peers ignore it)",
                        ("201", "the control entry", "EntryRef"), errors=_BODY_ERR,
                        body="Revoke")},
        "/v1/openapi.json": {
            "get": _op("openapi", "This document", ("200", "OpenAPI 3.1", None))},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "p2pmsg local API", "version": API_VERSION,
                 "description": "HTTP+JSON API of one p2pmsg device on localhost. "
                                "docs/http-api.md explains auth, SSE and errors."},
        "servers": [{"url": "http://127.0.0.1:8470"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": json.loads(json.dumps(SCHEMAS)),
        },
    }


def main() -> None:
    """Write the document to stdout (how docs/openapi.json is made)."""
    sys.stdout.write(json.dumps(document(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
