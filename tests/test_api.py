"""Behaviour of the local HTTP API against two real devices (tests/api_helpers.py).

Auth, validation (4xx with a JSON error naming the field), 404s, and the happy paths
end to end: what device A sends through its API is read from device B's API (its
own node, messenger and server), including edits, reactions, redactions, read
receipts, FHIR, membership and the live SSE feed with Last-Event-ID resume.
Real time (sockets); waits are bounded by trio.fail_after.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from api_helpers import Device, device_pair

from p2pmsg.api import ApiConfig, load_or_create_token
from p2pmsg.errors import KeyFileError


def client(d: Device, **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=d.url, headers=d.headers, timeout=10, **kw)


async def wait_message(c: httpx.AsyncClient, room: bytes, pred: Any) -> dict[str, Any]:
    """Poll B's history until a message satisfies ``pred`` (replication is async)."""
    with trio.fail_after(10):
        while True:
            r = await c.get(f"/v1/rooms/{room.hex()}/messages")
            assert r.status_code == 200
            for m in r.json()["messages"]:
                if pred(m):
                    return dict(m)
            await trio.sleep(0.02)


# -- auth -----------------------------------------------------------------------------

@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc", "Bearer", ""])
async def test_missing_or_wrong_token_is_401(header: str | None) -> None:
    async with device_pair() as p, httpx.AsyncClient(base_url=p.a.url) as c:
        headers = {} if header is None else {"Authorization": header}
        for method, path in (("GET", "/v1/status"), ("GET", "/v1/rooms"),
                             ("POST", f"/v1/rooms/{p.room.hex()}/messages"),
                             ("GET", "/v1/events"), ("GET", "/v1/nonexistent")):
            r = await c.request(method, path, headers=headers, json={"kind": "text",
                                                                     "text": "x"})
            assert r.status_code == 401
            assert r.headers["www-authenticate"] == "Bearer"
            assert "token" in r.json()["error"]
        # B's token does not open A's API
        r = await c.get("/v1/status", headers=p.b.headers)
        assert r.status_code == 401


def test_token_file_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "api.token"
    token = load_or_create_token(path)
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(path) == token


def test_token_file_readable_by_others_or_short_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "api.token"
    path.write_text("x" * 40)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_token(path)
    os.chmod(path, 0o600)
    path.write_text("short")
    with pytest.raises(KeyFileError, match="at least"):
        load_or_create_token(path)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.2", "example.org", "::"])
def test_non_loopback_host_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        ApiConfig(host=host)


# -- validation -----------------------------------------------------------------------

async def test_bad_requests_get_4xx_with_a_clear_message() -> None:
    async with device_pair() as p, client(p.a) as c:
        msgs = f"/v1/rooms/{p.room.hex()}/messages"
        cases: list[tuple[str, str, dict[str, Any], int, str]] = [
            ("POST", msgs, {"content": b"{", "headers": {"content-type": "application/json"}},
             400, "not valid UTF-8 JSON"),
            ("POST", msgs, {"content": b"\xff\xfe", "headers": {
                "content-type": "application/json"}}, 400, "not valid UTF-8 JSON"),
            ("POST", msgs, {"content": b"NaN", "headers": {
                "content-type": "application/json"}}, 400, "not valid"),
            ("POST", msgs, {"content": b"{}", "headers": {"content-type": "text/plain"}},
             415, "application/json"),
            ("POST", msgs, {"json": []}, 400, "expected object"),
            ("POST", msgs, {"json": {"kind": "shout", "text": "x"}}, 400, "kind"),
            ("POST", msgs, {"json": {"kind": "text"}}, 400, "text: required"),
            ("POST", msgs, {"json": {"kind": "text", "text": ""}}, 400, "text: shorter"),
            ("POST", msgs, {"json": {"kind": "text", "text": 5}}, 400, "expected string"),
            ("POST", msgs, {"json": {"kind": "text", "text": "x", "extra": 1}}, 400,
             "unknown field 'extra'"),
            ("POST", msgs, {"json": {"kind": "text", "text": "x" * 65_537}}, 400, "longer"),
            ("POST", msgs, {"json": {"kind": "reply", "target": "12", "text": "x"}}, 400,
             "target: expected 64 hex digits"),
            ("POST", msgs, {"json": {"kind": "reply", "target": "ab" * 32, "text": "x"}}, 400,
             "target: not a message"),
            ("POST", msgs, {"json": {"kind": "fhir", "resource": {"resourceType": "Patient"},
                                     "fallback_text": "x"}}, 400, "Communication"),
            ("POST", msgs, {"content": b" " * (2 * 1024 * 1024 + 1), "headers": {
                "content-type": "application/json"}}, 413, "larger than"),
            ("GET", msgs + "?limit=0", {}, 400, "limit"),
            ("GET", msgs + "?limit=abc", {}, 400, "limit"),
            ("GET", msgs + "?before=xyz", {}, 400, "before"),
            ("GET", msgs + f"?before={'ab' * 32}", {}, 400, "before: not a message"),
            ("POST", msgs, {"json": {"kind": "read", "up_to": "ab" * 32}}, 400,
             "up_to: not a message"),
            ("GET", "/v1/rooms/not-hex/messages", {}, 400, "room: expected 64 hex"),
            ("GET", "/v1/rooms/" + "ab" * 33, {}, 400, "room: expected 64 hex"),
            ("POST", "/v1/rooms", {"json": {"members": [{"device": "ab" * 32}] * 2}}, 400,
             "listed twice"),
            ("POST", "/v1/rooms", {"json": {"members": [{"device": "ab" * 32,
                                                         "role": "boss"}]}}, 400,
             "members[0].role"),
            ("POST", "/v1/rooms", {"json": {"members": [{"device": "ab" * 32}] * 257}}, 400,
             "more than 256"),
            ("GET", "/v1/events", {"headers": {"last-event-id": "abc"}}, 400, "Last-Event-ID"),
            ("GET", "/v1/events?room=12", {}, 400, "room: expected"),
        ]
        for method, path, kw, status, fragment in cases:
            r = await c.request(method, path, **kw)
            assert r.status_code == status, (method, path, r.text)
            assert fragment in r.json()["error"], (fragment, r.json())
        # a message body never comes back in an error
        r = await c.post(msgs, json={"kind": "text", "text": "GEHEIM", "extra": "GEHEIM"})
        assert r.status_code == 400 and "GEHEIM" not in r.text


async def test_unknown_room_device_and_path_are_404() -> None:
    async with device_pair() as p, client(p.a) as c:
        unknown = "cd" * 32
        for method, path, body in (
            ("GET", f"/v1/rooms/{unknown}", None),
            ("GET", f"/v1/rooms/{unknown}/members", None),
            ("GET", f"/v1/rooms/{unknown}/messages", None),
            ("POST", f"/v1/rooms/{unknown}/messages", {"kind": "text", "text": "x"}),
            ("POST", f"/v1/rooms/{unknown}/members", {"device": p.b2.hex()}),
            ("DELETE", f"/v1/rooms/{p.room.hex()}/members/{unknown}", None),
            ("POST", f"/v1/rooms/{p.room.hex()}/members", {"device": unknown}),
            ("POST", "/v1/rooms", {"members": [{"device": unknown}]}),
            ("GET", "/v1/nothing-here", None),
        ):
            r = await c.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"]
        r = await c.put("/v1/status")
        assert r.status_code == 405


async def test_not_permitted_is_403() -> None:
    async with device_pair() as p, client(p.b) as c:
        # B is a plain member: may not add members
        r = await c.post(f"/v1/rooms/{p.room.hex()}/members", json={"device": p.b2.hex()})
        assert r.status_code == 403 and "not permitted" in r.json()["error"]


# -- attachments ----------------------------------------------------------------------

async def test_file_uploaded_on_a_downloads_byte_identical_on_b() -> None:
    data = os.urandom(300_000) + "Befund Müller".encode()  # > one 256 KiB chunk
    async with device_pair() as p, client(p.a) as a, client(p.b) as b:
        r = await a.post(f"/v1/rooms/{p.room.hex()}/attachments", content=data,
                         params={"kind": "document", "name": "befund müller.pdf",
                                 "caption": "Laborbefund"},
                         headers={"Content-Type": "application/pdf"})
        assert r.status_code == 201, r.text
        sent = r.json()
        assert sent["size"] == len(data) and len(sent["content_hash"]) == 64
        m = await wait_message(b, p.room, lambda m: m["id"] == sent["id"])
        assert m["kind"] == "document"
        assert m["content"] == {"content_hash": sent["content_hash"], "size": len(data),
                                "mime": "application/pdf", "name": "befund müller.pdf",
                                "caption": "Laborbefund"}
        url = f"/v1/rooms/{p.room.hex()}/messages/{sent['id']}/attachment"
        assert p.b.messenger.node.blob_store is not None
        assert not p.b.messenger.node.blob_store.roots()  # B holds nothing yet
        r = await b.get(url, params={"wait": 0})
        assert r.status_code == 409 and "not fetched" in r.json()["error"]
        r = await b.get(url, params={"wait": 10})  # fetches from A, then streams
        assert r.status_code == 200, r.text
        assert r.content == data
        assert r.headers["content-type"] == "application/pdf"
        assert r.headers["content-length"] == str(len(data))
        disposition = r.headers["content-disposition"]
        assert disposition.startswith("attachment;") and "bef" in disposition
        assert "befund%20m%C3%BCller.pdf" in disposition
        # now stored on B: wait=0 serves it without asking A
        r = await b.get(url, params={"wait": 0})
        assert r.status_code == 200 and r.content == data
        # the sender can read its own file back
        r = await a.get(url)
        assert r.status_code == 200 and r.content == data
        assert not list(p.uploads.iterdir())


async def test_attachment_bad_inputs_are_4xx() -> None:
    async with device_pair() as p, client(p.a) as a:
        up = f"/v1/rooms/{p.room.hex()}/attachments"
        for params, body, status, fragment in (
            ({"kind": "spreadsheet"}, b"x", 400, "kind"),
            ({"mime": "not a type"}, b"x", 400, "mime"),
            ({"name": "../etc/passwd"}, b"x", 400, "name"),
            ({"name": "n" * 300}, b"x", 400, "name"),
            ({"colour": "red"}, b"x", 400, "unknown query parameter"),
            ({}, b"", 400, "empty"),
            ({}, b"x" * ((1 << 20) + 1), 413, "max_upload"),
        ):
            r = await a.post(up, params=params, content=body)
            assert r.status_code == status, (params, r.text)
            assert fragment in r.json()["error"]
        # a body without Content-Length, streamed past the limit
        async def chunks() -> Any:
            for _ in range(20):
                yield b"y" * 65536
        # The server answers 413 as soon as the limit is passed and stops reading; a
        # client still writing may see the connection closed instead of the answer.
        try:
            r = await a.post(up, content=chunks())
        except (httpx.RemoteProtocolError, httpx.WriteError):
            pass
        else:
            assert r.status_code == 413
        r = await a.post(f"/v1/rooms/{'cd' * 32}/attachments", content=b"x")
        assert r.status_code == 404
        assert p.a.messenger.node.blob_store is not None
        assert not p.a.messenger.node.blob_store.roots()  # nothing refused was stored
        assert not list(p.uploads.iterdir())  # no temporary upload file left behind
        text = await a.post(f"/v1/rooms/{p.room.hex()}/messages",
                            json={"kind": "text", "text": "kein Anhang"})
        msg = text.json()["id"]
        base = f"/v1/rooms/{p.room.hex()}/messages"
        for path, params, status in (
            (f"{base}/{msg}/attachment", {}, 404),          # a text, not a file
            (f"{base}/{'ef' * 32}/attachment", {}, 404),    # unknown message
            (f"{base}/zz/attachment", {}, 400),
            (f"{base}/{msg}/attachment", {"wait": "-1"}, 400),
            (f"{base}/{msg}/attachment", {"wait": "nan"}, 400),
            (f"{base}/{msg}/attachment", {"wait": "301"}, 400),
            (f"/v1/rooms/{'cd' * 32}/messages/{msg}/attachment", {}, 404),
        ):
            r = await a.get(path, params=params)
            assert r.status_code == status, (path, params, r.text)
            assert r.json()["error"]


async def test_download_of_a_file_no_peer_serves_is_409() -> None:
    """B's message names a blob nobody holds (A deleted its copy): 409, not a hang."""
    async with device_pair() as p, client(p.a) as a, client(p.b) as b:
        r = await a.post(f"/v1/rooms/{p.room.hex()}/attachments", content="Röntgenbild".encode(),
                         params={"kind": "image", "mime": "image/png"})
        assert r.status_code == 201
        sent = r.json()
        await wait_message(b, p.room, lambda m: m["id"] == sent["id"])
        store = p.a.messenger.node.blob_store
        assert store is not None
        store.delete_blob(bytes.fromhex(sent["content_hash"]))
        r = await b.get(f"/v1/rooms/{p.room.hex()}/messages/{sent['id']}/attachment",
                        params={"wait": 10})
        assert r.status_code == 409 and "not available" in r.json()["error"]


# -- happy paths, end to end ----------------------------------------------------------

async def test_text_reply_edit_react_redact_read_between_two_devices() -> None:
    async with device_pair() as p, client(p.a) as a, client(p.b) as b:
        msgs = f"/v1/rooms/{p.room.hex()}/messages"
        r = await a.post(msgs, json={"kind": "text", "text": "Befund liegt vor"})
        assert r.status_code == 201
        first = r.json()["id"]
        got = await wait_message(b, p.room, lambda m: m["id"] == first)
        assert got["content"] == {"text": "Befund liegt vor"}
        assert got["author"] == p.a.identity.public_key.hex()
        assert got["org"] == p.a.org.public_key.hex()

        r = await b.post(msgs, json={"kind": "reply", "target": first, "text": "Danke"})
        reply = r.json()["id"]
        got = await wait_message(a, p.room, lambda m: m["id"] == reply)
        assert got["kind"] == "reply" and got["content"]["target"] == first

        assert (await a.post(msgs, json={"kind": "edit", "target": first,
                                         "text": "Befund liegt vor (korrigiert)"})
                ).status_code == 201
        assert (await b.post(msgs, json={"kind": "react", "target": first,
                                         "key": "👍"})).status_code == 201
        got = await wait_message(b, p.room, lambda m: m["id"] == first and m["edited"]
                                 and m["reactions"])
        assert got["content"]["text"] == "Befund liegt vor (korrigiert)"
        assert got["reactions"] == {"👍": [p.b.identity.public_key.hex()]}

        assert (await b.post(msgs, json={"kind": "read"})).status_code == 201
        with trio.fail_after(10):
            while True:
                page = (await a.get(msgs)).json()
                if page["read_up_to"].get(p.b.identity.public_key.hex()) == reply:
                    break
                await trio.sleep(0.02)

        assert (await a.post(msgs, json={"kind": "redact", "target": first,
                                         "reason": "falscher Patient"})).status_code == 201
        got = await wait_message(b, p.room, lambda m: m["id"] == first
                                 and m["status"] == "redacted")
        assert got["content"] is None


async def test_fhir_communication_round_trip() -> None:
    resource = {"resourceType": "Communication", "status": "completed",
                "payload": [{"contentString": "Rezept abholbereit"}]}
    async with device_pair() as p, client(p.a) as a, client(p.b) as b:
        r = await a.post(f"/v1/rooms/{p.room.hex()}/messages", json={
            "kind": "fhir", "resource": resource, "fallback_text": "Rezept abholbereit",
            "profile": "http://example.org/fhir/pickup"})
        assert r.status_code == 201
        got = await wait_message(b, p.room, lambda m: m["kind"] == "fhir")
        assert got["content"]["resource"] == resource
        assert got["content"]["fallback_text"] == "Rezept abholbereit"
        assert got["content"]["fhir_version"] == "4.0.1"


async def test_history_pagination_walks_back_without_gaps() -> None:
    async with device_pair() as p, client(p.a) as a:
        msgs = f"/v1/rooms/{p.room.hex()}/messages"
        sent = [(await a.post(msgs, json={"kind": "text", "text": f"n{i}"})).json()["id"]
                for i in range(5)]
        seen: list[str] = []
        before: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if before is not None:
                params["before"] = before
            page = (await a.get(msgs, params=params)).json()
            assert len(page["messages"]) <= 2
            seen = [m["id"] for m in page["messages"]] + seen
            before = page["next_before"]
            if before is None:
                break
        assert seen == sent


async def test_members_and_rooms() -> None:
    async with device_pair() as p, client(p.a) as a:
        base = f"/v1/rooms/{p.room.hex()}/members"
        r = await a.post(base, json={"device": p.b2.hex()})
        assert r.status_code == 201
        members = {m["device"]: m for m in (await a.get(base)).json()["members"]}
        assert members[p.b2.hex()]["org"] == p.b.org.public_key.hex()
        assert members[p.b2.hex()]["role"] == "member"
        r = await a.patch(f"{base}/{p.b2.hex()}", json={"role": "admin"})
        assert r.status_code == 200
        assert {m["device"]: m["role"] for m in (await a.get(base)).json()["members"]
                }[p.b2.hex()] == "admin"
        assert (await a.delete(f"{base}/{p.b2.hex()}")).status_code == 200
        assert p.b2.hex() not in {m["device"] for m in (await a.get(base)).json()["members"]}

        r = await a.post("/v1/rooms", json={"members": [
            {"device": p.b.identity.public_key.hex(), "org": p.b.org.public_key.hex()}],
            "kind": "direct", "name": "Direkt"})
        assert r.status_code == 201
        room = r.json()
        assert room["kind"] == "direct" and room["name"] == "Direkt"
        assert room["replicated"] is True  # added to the node's interest at creation
        listed = {x["id"]: x for x in (await a.get("/v1/rooms")).json()["rooms"]}
        assert set(listed) == {p.room.hex(), room["id"]}
        status = (await a.get("/v1/status")).json()
        assert status["missing_topics"] == []
        # ... and B's node replicates it too: it learns the room from the invitation
        # in its org's control topic and asks A for it in the running session
        topic = bytes.fromhex(room["id"])
        with trio.fail_after(30):
            while not any(r.topic == topic for r in p.b.messenger.rooms()):
                await trio.sleep(0.05)
        assert topic in p.b.messenger.node.topics
        assert status["peers"] == [p.b.identity.public_key.hex()]
        # B leaves the shared room through its own API
        async with client(p.b) as b:
            r = await b.delete(f"/v1/rooms/{p.room.hex()}/members/"
                               f"{p.b.identity.public_key.hex()}")
            assert r.status_code == 200
            rooms_b = (await b.get("/v1/rooms")).json()["rooms"]
            assert [(x["id"], x["replicated"]) for x in rooms_b] == [(room["id"], True)]


# -- live events ----------------------------------------------------------------------

async def read_events(c: httpx.AsyncClient, n: int, headers: dict[str, str] | None = None,
                      params: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """The first ``n`` (id, event, data) of an SSE stream."""
    out: list[tuple[str, str, str]] = []
    fields: dict[str, str] = {}
    async with c.stream("GET", "/v1/events", headers=headers, params=params) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        async with aclosing(r.aiter_lines()) as lines:
            async for line in lines:
                if line == "":
                    if "event" in fields:
                        out.append((fields.get("id", ""), fields["event"], fields.get("data", "")))
                    fields = {}
                    if len(out) == n:
                        return out
                elif not line.startswith(":"):
                    key, _, value = line.partition(": ")
                    fields[key] = value
    return out


async def test_sse_delivers_messages_from_the_other_device_and_resumes() -> None:
    async with device_pair() as p, client(p.a) as a, client(p.b) as b:
        msgs = f"/v1/rooms/{p.room.hex()}/messages"
        got: list[tuple[str, str, str]] = []

        async def listen() -> None:
            got.extend(await read_events(b, 3, params={"room": p.room.hex()}))

        with trio.fail_after(10):
            async with trio.open_nursery() as n:
                n.start_soon(listen)
                await trio.sleep(0.2)  # the stream is open
                ids = [(await a.post(msgs, json={"kind": "text", "text": f"live {i}"})
                        ).json()["id"] for i in range(2)]
        assert got[0][1] == "ready"
        events = [(i, json.loads(d)) for i, e, d in got[1:] if e == "message"]
        assert [e["message"]["id"] for _, e in events] == ids
        assert all(e["room"] == p.room.hex() for _, e in events)
        assert events[0][1]["message"]["content"] == {"text": "live 0"}

        # resume after the first: exactly the second again
        first_id = events[0][0]
        with trio.fail_after(10):
            resumed = await read_events(b, 2, headers={"last-event-id": first_id})
        assert resumed[0][1] == "ready"
        assert json.loads(resumed[1][2])["message"]["id"] == ids[1]
        # an id from another server run: reset
        with trio.fail_after(10):
            reset = await read_events(b, 1, headers={"last-event-id": "999999"})
        assert reset[0][1] == "reset"


async def test_no_message_content_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    marker = "PATIENT-MARKER-7f3a"
    async with device_pair() as p, client(p.a) as a, client(p.b) as b:
        msgs = f"/v1/rooms/{p.room.hex()}/messages"
        r = await a.post(msgs, json={"kind": "text", "text": marker})
        await wait_message(b, p.room, lambda m: m["id"] == r.json()["id"])
        await a.post(msgs, json={"kind": "text", "text": marker, "bad": marker})
        await a.post(msgs, content=marker.encode(), headers={"content-type": "application/json"})
    assert caplog.records, "nothing was logged at all: the check would be vacuous"
    assert marker not in caplog.text


async def test_unix_socket_listener_needs_the_token_too(tmp_path: Path) -> None:
    from p2pmsg.api import serve_api

    sock = tmp_path / "api.sock"
    async with device_pair() as p, trio.open_nursery() as nursery:
        server = await nursery.start(serve_api, p.a.messenger,
                                     ApiConfig(port=0, unix_socket=sock, token="t" * 40))
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert f"http://unix:{sock}" in server.urls
        assert server.url.startswith("http://127.0.0.1:")
        transport = httpx.AsyncHTTPTransport(uds=str(sock))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            assert (await c.get("/v1/status")).status_code == 401
            r = await c.get("/v1/status", headers={"Authorization": "Bearer " + "t" * 40})
            assert r.status_code == 200
            assert r.json()["device"] == p.a.identity.public_key.hex()
        nursery.cancel_scope.cancel()


async def test_history_share_through_the_api_and_the_cli() -> None:
    """A's person gets a third device (a3) after the room's epochs were written:
    POST /v1/rooms/{room}/history-shares (and ``p2pmsg rooms share-history``, the
    CLI's client of it) hands it the room's epoch keys; only A's person may get them."""
    from urllib.parse import urlsplit

    from p2pmsg import Identity, Role, issue_certificate
    from p2pmsg.cli.api_client import ApiClient, ApiRequestError
    from p2pmsg.cli.room_cmds import share_history
    from p2pmsg.messenger.history import open_history_share

    async with device_pair() as p, client(p.a) as a:
        m = p.a.messenger
        assert m.person is not None
        a3 = Identity.generate()
        await m.publish_certificate(issue_certificate(
            p.a.org, a3.public_key, Role.MEMBER, "a3", 0, 2**50, person=m.person))
        assert a3.public_key in m.my_devices()
        url = f"/v1/rooms/{p.room.hex()}/history-shares"
        r = await a.post(url, json={"device": a3.public_key.hex()})
        assert r.status_code == 201, r.text
        entry = m.node.store.get_entry(bytes.fromhex(r.json()["id"]))
        assert entry is not None
        payload = m.node.payload(entry)
        assert payload is not None
        opened = open_history_share(a3, payload)
        assert opened is not None and opened[0] == p.room
        epochs = {e.id for e in m._room_state(p.room).view.epochs}
        assert set(opened[1]) == epochs and epochs  # every epoch A holds
        # a2 was a recipient of every epoch already: invited only
        r = await a.post(url, json={"device": p.a2.hex()})
        assert (r.status_code, r.json()) == (201, {"id": None})
        # B is in the room but is not A's person; bad bodies are 400
        for body, status in (({"device": p.b.identity.public_key.hex()}, 404),
                             ({"device": "zz"}, 400), ({}, 400)):
            r = await a.post(url, json=body)
            assert r.status_code == status, (body, r.text)
        r = await a.post(f"/v1/rooms/{'cd' * 32}/history-shares",
                         json={"device": a3.public_key.hex()})
        assert r.status_code == 404 and r.json()["error"] == "unknown room"

        # the CLI command, against the same API (room by its local name)
        where = urlsplit(p.a.url)
        assert where.hostname is not None and where.port is not None
        api = ApiClient(where.hostname, where.port, p.a.api.token)
        line = await trio.to_thread.run_sync(share_history, api, "Station 3",
                                             a3.public_key.hex().upper())
        assert line.startswith(f"shared the history of room {p.room.hex()} with "
                               f"{a3.public_key.hex()} (entry ")
        line = await trio.to_thread.run_sync(share_history, api, p.room.hex(), p.a2.hex())
        assert line.startswith(f"invited {p.a2.hex()}") and "nothing to share" in line
        with pytest.raises(ApiRequestError) as refused:
            await trio.to_thread.run_sync(share_history, api, p.room.hex(),
                                          p.b.identity.public_key.hex())
        assert refused.value.status == 404 and "same" not in str(refused.value) \
            and "person" in str(refused.value)
        with pytest.raises(ApiRequestError) as bad:
            share_history(api, p.room.hex(), "xyz")  # refused before any request
        assert bad.value.status == 400


def test_share_history_command_is_wired() -> None:
    from p2pmsg.cli.main import build_parser
    from p2pmsg.cli.room_cmds import cmd_rooms_share_history

    args = build_parser().parse_args(["rooms", "share-history", "Station 3", "ab" * 32])
    assert args.handler is cmd_rooms_share_history
    assert (args.room, args.device) == ("Station 3", "ab" * 32)


async def test_handlers_look_messages_up_by_id_not_by_scanning() -> None:
    """Targets, receipts, pages and attachments are found through the timeline's
    ``by_id`` index: the handlers work with ``Messenger.messages`` unavailable."""
    async with device_pair() as p, client(p.a) as a:
        msgs = f"/v1/rooms/{p.room.hex()}/messages"

        def no_scan(room: object) -> None:
            raise AssertionError("an API handler scanned Messenger.messages")

        p.a.messenger.messages = no_scan  # type: ignore[method-assign]
        first = (await a.post(msgs, json={"kind": "text", "text": "eins"})).json()["id"]
        for body in ({"kind": "reply", "target": first, "text": "zwei"},
                     {"kind": "react", "target": first, "key": "ok"},
                     {"kind": "read", "up_to": first}):
            r = await a.post(msgs, json=body)
            assert r.status_code == 201, r.text
        page = (await a.get(msgs, params={"limit": 1})).json()
        older = (await a.get(msgs, params={"limit": 5, "before": page["messages"][0]["id"]}
                             )).json()
        assert [m["id"] for m in older["messages"]] == [first]
        up = await a.post(f"/v1/rooms/{p.room.hex()}/attachments", content=b"Befund",
                          params={"kind": "document", "mime": "text/plain"})
        assert up.status_code == 201, up.text
        got = await a.get(f"{msgs}/{up.json()['id']}/attachment")
        assert (got.status_code, got.content) == (200, b"Befund")
