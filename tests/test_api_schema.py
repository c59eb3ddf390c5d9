"""docs/openapi.json is the contract: checked in, complete, and what the server does.

Starts two real API servers (tests/api_helpers.py), calls every documented
path+method, and validates each answer against the documented response schema for
its status (jsonschema, Draft 2020-12 as OpenAPI 3.1 uses). Also: the checked-in
file equals what :mod:`p2pmsg.api.openapi` builds, and the app has no route the
document does not list.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from api_helpers import Pair, device_pair
from starlette.routing import Route

from p2pmsg.api import openapi_document
from p2pmsg.api.app import build_app
from p2pmsg.identity import Identity

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
DOC: dict[str, Any] = json.loads(DOC_PATH.read_text(encoding="utf-8"))
OPERATIONS = sorted((path, method) for path, item in DOC["paths"].items() for method in item)


def test_checked_in_document_is_current() -> None:
    assert json.loads(json.dumps(openapi_document())) == DOC, \
        "regenerate: python -c 'from p2pmsg.api.openapi import main; main()' > docs/openapi.json"


def test_document_is_valid_json_schema_for_every_component() -> None:
    for name, schema in DOC["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert name


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    class _Dummy:  # build_app only stores these
        pass
    app = build_app(_Dummy(), _Dummy(), "t" * 40)  # type: ignore[arg-type]
    routes = {(r.path, m.lower()) for r in app.app.routes  # type: ignore[attr-defined]
              if isinstance(r, Route) for m in (r.methods or ()) if m != "HEAD"}
    assert routes == set(OPERATIONS)


def conforms(path: str, method: str, response: httpx.Response) -> None:
    """The status is documented for the operation and the body fits its schema."""
    op = DOC["paths"][path][method]
    status = str(response.status_code)
    assert status in op["responses"], f"{method.upper()} {path} answered undocumented {status}"
    content = op["responses"][status].get("content", {})
    if "application/json" in content:
        assert response.headers["content-type"].startswith("application/json")
        schema = dict(content["application/json"]["schema"])
        schema["components"] = DOC["components"]
        jsonschema.validate(response.json(), schema,
                            cls=jsonschema.Draft202012Validator)
    elif "text/event-stream" in content:
        assert response.headers["content-type"].startswith("text/event-stream")


Call = Callable[[httpx.AsyncClient, Pair], Awaitable[httpx.Response]]


async def _send(c: httpx.AsyncClient, p: Pair, body: dict[str, Any]) -> httpx.Response:
    return await c.post(f"/v1/rooms/{p.room.hex()}/messages", json=body)


async def _first_message(c: httpx.AsyncClient, p: Pair) -> str:
    r = await _send(c, p, {"kind": "text", "text": "erste Nachricht"})
    assert r.status_code == 201
    return str(r.json()["id"])


async def _events(c: httpx.AsyncClient, p: Pair) -> httpx.Response:
    async with c.stream("GET", "/v1/events") as r:
        async with aclosing(r.aiter_lines()) as lines:
            async for line in lines:
                if line.startswith("event: "):
                    break
        return r


async def _download(c: httpx.AsyncClient, p: Pair) -> httpx.Response:
    r = await c.post(f"/v1/rooms/{p.room.hex()}/attachments", content=b"Befund",
                     params={"kind": "document", "mime": "text/plain"})
    assert r.status_code == 201
    return await c.get(f"/v1/rooms/{p.room.hex()}/messages/{r.json()['id']}/attachment")


RELAY_NODE, RELAY_ORG = Identity.from_seed(b"\x5e" * 32).public_key, b"\x5f" * 32

HAPPY: dict[tuple[str, str], Call] = {
    ("/v1/status", "get"): lambda c, p: c.get("/v1/status"),
    ("/v1/orgs", "get"): lambda c, p: c.get("/v1/orgs"),
    ("/v1/rooms", "get"): lambda c, p: c.get("/v1/rooms"),
    ("/v1/rooms", "post"): lambda c, p: c.post("/v1/rooms", json={
        "members": [{"device": p.b.identity.public_key.hex()}], "name": "Konsil"}),
    ("/v1/rooms/{room}", "get"): lambda c, p: c.get(f"/v1/rooms/{p.room.hex()}"),
    ("/v1/rooms/{room}/members", "get"):
        lambda c, p: c.get(f"/v1/rooms/{p.room.hex()}/members"),
    ("/v1/rooms/{room}/members", "post"): lambda c, p: c.post(
        f"/v1/rooms/{p.room.hex()}/members", json={"device": p.b2.hex(), "role": "member"}),
    ("/v1/rooms/{room}/members/{device}", "patch"): lambda c, p: c.patch(
        f"/v1/rooms/{p.room.hex()}/members/{p.b.identity.public_key.hex()}",
        json={"role": "admin"}),
    ("/v1/rooms/{room}/members/{device}", "delete"): lambda c, p: c.delete(
        f"/v1/rooms/{p.room.hex()}/members/{p.b.identity.public_key.hex()}"),
    ("/v1/rooms/{room}/relays", "get"):
        lambda c, p: c.get(f"/v1/rooms/{p.room.hex()}/relays"),
    ("/v1/rooms/{room}/relays", "post"): lambda c, p: c.post(
        f"/v1/rooms/{p.room.hex()}/relays", json={"node": RELAY_NODE.hex(),
                                                   "org": RELAY_ORG.hex()}),
    ("/v1/rooms/{room}/relays/{node}", "delete"): lambda c, p: c.delete(
        f"/v1/rooms/{p.room.hex()}/relays/{RELAY_NODE.hex()}"),
    ("/v1/rooms/{room}/messages", "get"):
        lambda c, p: c.get(f"/v1/rooms/{p.room.hex()}/messages", params={"limit": 1}),
    ("/v1/rooms/{room}/messages", "post"): lambda c, p: _send(c, p, {"kind": "text",
                                                                     "text": "hallo"}),
    ("/v1/rooms/{room}/rekey", "post"): lambda c, p: c.post(f"/v1/rooms/{p.room.hex()}/rekey"),
    ("/v1/rooms/{room}/history-shares", "post"): lambda c, p: c.post(
        f"/v1/rooms/{p.room.hex()}/history-shares", json={"device": p.a2.hex()}),
    ("/v1/rooms/{room}/attachments", "post"):
        lambda c, p: c.post(f"/v1/rooms/{p.room.hex()}/attachments", content=b"x",
                            params={"name": "x.txt"}),
    ("/v1/rooms/{room}/messages/{message}/attachment", "get"): _download,
    ("/v1/events", "get"): _events,
    ("/v1/admin/revocations", "post"): lambda c, p: c.post(
        "/v1/admin/revocations", json={"device": p.b2.hex(), "reason": "lost"}),
    ("/v1/openapi.json", "get"): lambda c, p: c.get("/v1/openapi.json"),
}

EXPECTED_STATUS: dict[tuple[str, str], int] = {}


def test_every_operation_has_a_call() -> None:
    assert set(HAPPY) == set(OPERATIONS)


async def test_every_documented_operation_answers_as_documented() -> None:
    async with device_pair() as p, \
            httpx.AsyncClient(base_url=p.a.url, headers=p.a.headers, timeout=10) as c:
        await _first_message(c, p)
        # members/{device} runs after members (b2 added); delete (B leaves) last
        for path, method in sorted(OPERATIONS, key=lambda op: (op[1] == "delete", op)):
            r = await HAPPY[(path, method)](c, p)
            expected = EXPECTED_STATUS.get((path, method), 201 if method == "post" else 200)
            assert r.status_code == expected, (path, method, r.status_code, r.text)
            conforms(path, method, r)
            # the same operation without a token: 401, in the documented shape
            anon = await c.request(method.upper(), r.request.url.path,
                                   headers={"Authorization": ""})
            assert anon.status_code == 401
            conforms(path, method, anon)


@pytest.mark.parametrize("path", ["/v1/rooms/{room}", "/v1/rooms/{room}/members",
                                  "/v1/rooms/{room}/messages"])
async def test_error_answers_conform(path: str) -> None:
    async with device_pair() as p, \
            httpx.AsyncClient(base_url=p.a.url, headers=p.a.headers, timeout=10) as c:
        for room, status in (("zz", 400), ("cd" * 32, 404)):
            r = await c.get(path.replace("{room}", room))
            assert r.status_code == status
            conforms(path, "get", r)
            assert "error" in r.json()
