"""Request validation is pure and total: any input parses or raises ApiError (4xx).

Table tests for the validator's messages, plus hypothesis fuzzing of the body
decoder and every request parser with arbitrary bytes and arbitrary JSON values.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pmsg.api import ApiError
from p2pmsg.api.openapi import SCHEMAS
from p2pmsg.api.requests import (
    ReadRequest,
    decode_json,
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
from p2pmsg.messaging import FhirCommunication, Kind, Reaction, Reply, RoomKind, RoomRole, Text

HEX = "ab" * 32
PARSERS = [parse_send, parse_create_room, parse_member, parse_revoke, parse_history_share,
           parse_relay]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["kind", "text", "target", "key", "reason", "up_to", "resource",
                         "fallback_text", "profile", "members", "device", "org", "role",
                         "node",
                         "name", "resourceType", "x"]) | st.text(max_size=8),
        inner, max_size=6),
    max_leaves=20)


def test_valid_requests_become_messaging_types() -> None:
    assert parse_history_share({"device": HEX.upper()}) == bytes.fromhex(HEX)
    assert parse_relay({"node": HEX, "org": "cd" * 32}) == (bytes.fromhex(HEX),
                                                            bytes.fromhex("cd" * 32))
    assert parse_send({"kind": "text", "text": "hi"}) == Text("hi")
    assert parse_send({"kind": "reply", "target": HEX, "text": "ok"}) == \
        Reply(bytes.fromhex(HEX), "ok")
    assert parse_send({"kind": "react", "target": HEX.upper(), "key": "+1"}) == \
        Reaction(bytes.fromhex(HEX), "+1")
    assert parse_send({"kind": "read"}) == ReadRequest(None)
    fhir = parse_send({"kind": "fhir", "resource": {"resourceType": "Communication",
                                                    "status": "completed"},
                       "fallback_text": "done"})
    assert isinstance(fhir, FhirCommunication)
    assert json.loads(fhir.resource_json) == {"resourceType": "Communication",
                                              "status": "completed"}
    room = parse_create_room({"members": [{"device": HEX, "org": HEX, "role": "admin"}],
                              "kind": "direct"})
    assert room.kind is RoomKind.DIRECT and room.members[0].role is RoomRole.ADMIN
    assert parse_member({"device": HEX}).org is None


@pytest.mark.parametrize(("value", "message"), [
    ({"kind": "text", "text": "x", "target": HEX}, "unknown field 'target'"),
    ({"kind": "react", "target": HEX}, "key: required"),
    ({"kind": "react", "target": HEX, "key": "k" * 257}, "key: longer than 256"),
    ({"kind": "text", "text": True}, "text: expected string"),
    ({"kind": None}, "kind: expected one of"),
    ({"kind": "read", "up_to": "z" * 64}, "up_to: expected 64 hex digits"),
])
def test_invalid_requests_name_the_field(value: Any, message: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_send(value)
    assert info.value.status == 400
    assert message in info.value.message


def test_scalars() -> None:
    assert parse_hex(HEX, "room") == bytes.fromhex(HEX)
    assert parse_limit(None) == 50 and parse_limit("500") == 500
    assert parse_event_id("") is None and parse_event_id("42") == 42
    for bad in ("0", "501", "-1", "1e3", "١٢"):
        with pytest.raises(ApiError):
            parse_limit(bad)
    for bad in ("", "g" * 64, HEX + "a", "٣" * 64):
        with pytest.raises(ApiError):
            parse_hex(bad, "room")


def test_every_schema_uses_only_supported_keywords() -> None:
    from p2pmsg.api.schema import _KNOWN

    def walk(schema: Any) -> set[str]:
        if not isinstance(schema, dict):
            return set()
        found = set(schema)
        for key in ("items", "additionalProperties"):
            found |= walk(schema.get(key))
        for sub in [*schema.get("properties", {}).values(), *schema.get("oneOf", [])]:
            found |= walk(sub)
        return found

    used = set().union(*(walk(s) for s in SCHEMAS.values()))
    assert used <= _KNOWN
    assert {"oneOf", "pattern", "maxItems", "additionalProperties"} <= used


@given(st.binary(max_size=300))
def test_decode_json_raises_only_api_error(body: bytes) -> None:
    try:
        decode_json(body, "application/json", 200)
    except ApiError as exc:
        assert exc.status in (400, 413)


@given(json_values)
def test_parsers_are_total(value: Any) -> None:
    for parse in PARSERS:
        try:
            parse(value)
        except ApiError as exc:
            assert 400 <= exc.status < 500


@given(st.sampled_from(["text", "reply", "edit", "react", "redact", "read", "fhir"]),
       st.dictionaries(st.sampled_from(["text", "target", "key", "reason", "up_to",
                                        "resource", "fallback_text", "profile"]),
                       st.one_of(st.text(max_size=70), st.just(HEX),
                                 st.just({"resourceType": "Communication"})), max_size=4))
def test_send_variants_are_total(kind: str, fields: dict[str, Any]) -> None:
    try:
        parse_send({"kind": kind, **fields})
    except ApiError as exc:
        assert exc.status in (400, 413)


def test_upload_query_defaults_and_labels() -> None:
    req = parse_upload({}, None)
    assert (req.kind, req.mime, req.name, req.caption) == (Kind.DOCUMENT,
                                                           "application/octet-stream", "", "")
    req = parse_upload({"kind": "image", "name": "röntgen.png", "caption": "li. Hand"},
                       "Image/PNG; charset=binary")
    assert (req.kind, req.mime, req.name, req.caption) == (Kind.IMAGE, "image/png",
                                                           "röntgen.png", "li. Hand")
    assert parse_upload({"mime": "application/pdf"}, "text/plain").mime == "application/pdf"
    for query, fragment in (({"kind": "fhir"}, "kind"), ({"mime": "pdf"}, "mime"),
                            ({"mime": "a/b c"}, "mime"), ({"name": "a/b"}, "name"),
                            ({"name": ".."}, "name"), ({"x": "1"}, "unknown")):
        with pytest.raises(ApiError, match=fragment) as info:
            parse_upload(query, None)
        assert info.value.status == 400


def test_wait_bounds() -> None:
    assert parse_wait(None) == 30.0
    assert parse_wait("0") == 0.0 and parse_wait("2.5") == 2.5 and parse_wait("300") == 300
    for bad in ("-1", "301", "nan", "inf", "", "x", "1" * 13):
        with pytest.raises(ApiError, match="wait"):
            parse_wait(bad)


@given(st.dictionaries(st.sampled_from(["kind", "mime", "name", "caption"])
                       | st.text(max_size=6), st.text(max_size=300), max_size=5),
       st.none() | st.text(max_size=80), st.none() | st.text(max_size=20))
def test_upload_and_wait_parsers_are_total(query: dict[str, str], content_type: str | None,
                                           wait: str | None) -> None:
    for call in (lambda: parse_upload(query, content_type), lambda: parse_wait(wait)):
        try:
            call()
        except ApiError as exc:
            assert 400 <= exc.status < 500
