"""HTTP API: relays declared in a room (GET/POST /v1/rooms/{room}/relays, DELETE .../{node})."""

from __future__ import annotations

import httpx
import pytest
import trio
from api_helpers import device_pair

from p2pmsg.identity import Identity

NODE, ORG = Identity.from_seed(b"\x5e" * 32).public_key, b"\x5f" * 32


async def test_admin_declares_and_removes_a_relay_over_http() -> None:
    async with device_pair() as p, \
            httpx.AsyncClient(base_url=p.a.url, headers=p.a.headers, timeout=10) as a, \
            httpx.AsyncClient(base_url=p.b.url, headers=p.b.headers, timeout=10) as b:
        base = f"/v1/rooms/{p.room.hex()}/relays"
        assert (await a.get(base)).json() == {"relays": []}
        r = await b.post(base, json={"node": NODE.hex(), "org": ORG.hex()})
        assert r.status_code == 403, r.text  # b is a plain member of the group room
        r = await a.post(base, json={"node": NODE.hex(), "org": ORG.hex()})
        assert r.status_code == 201
        entry = bytes.fromhex(r.json()["id"])
        assert (await a.get(base)).json() == {"relays": [{"node": NODE.hex(),
                                                          "org": ORG.hex()}]}
        assert p.a.messenger.relays(p.room) == {NODE: ORG}
        r = await a.post(base, json={"node": NODE.hex(), "org": ORG.hex()})
        assert r.status_code == 403 and "already a relay" in r.json()["error"]
        for bad in ({"node": NODE.hex()}, {"node": "zz", "org": ORG.hex()}, []):
            assert (await a.post(base, json=bad)).status_code == 400
        # not an Ed25519 point: no invitation can be sealed to it -> 400, nothing written
        r = await a.post(base, json={"node": "5e" * 32, "org": ORG.hex()})
        assert r.status_code == 400 and "not a valid Ed25519" in r.json()["error"]
        assert p.a.messenger.relays(p.room) == {NODE: ORG}
        # the declaration replicates: b's messenger resolves the same relays
        with trio.fail_after(20):
            while p.b.messenger.relays(p.room) != {NODE: ORG}:
                await trio.sleep(0.05)
        assert p.b.messenger.node.store.get_entry(entry) is not None
        assert (await a.delete(f"{base}/{'01' * 32}")).status_code == 404
        assert (await a.delete(f"{base}/zz")).status_code == 400
        r = await a.delete(f"{base}/{NODE.hex()}")
        assert r.status_code == 200 and (await a.get(base)).json() == {"relays": []}
        assert (await a.get(f"/v1/rooms/{'cd' * 32}/relays")).status_code == 404


async def test_rooms_relay_command_against_the_api() -> None:
    """``p2pmsg rooms relay add|list|remove`` (room by its local name)."""
    from urllib.parse import urlsplit

    from p2pmsg.cli.api_client import ApiClient, ApiRequestError
    from p2pmsg.cli.room_cmds import relay_command

    async with device_pair() as p:
        where = urlsplit(p.a.url)
        assert where.hostname is not None and where.port is not None
        api = ApiClient(where.hostname, where.port, p.a.api.token)

        def run(*args: str | None) -> str:
            return relay_command(api, *args)  # type: ignore[arg-type]

        assert await trio.to_thread.run_sync(run, "list", "Station 3") == (
            f"room {p.room.hex()} has no relays")
        line = await trio.to_thread.run_sync(run, "add", "Station 3", NODE.hex().upper(),
                                             ORG.hex())
        assert line.startswith(f"node {NODE.hex()} relays room {p.room.hex()} (entry ")
        assert p.a.messenger.relays(p.room) == {NODE: ORG}
        assert await trio.to_thread.run_sync(run, "list", p.room.hex()) == (
            f"{NODE.hex()}  org {ORG.hex()}")
        with pytest.raises(ApiRequestError) as again:
            await trio.to_thread.run_sync(run, "add", p.room.hex(), NODE.hex(), ORG.hex())
        assert again.value.status == 403
        line = await trio.to_thread.run_sync(run, "remove", p.room.hex(), NODE.hex())
        assert line.startswith(f"node {NODE.hex()} no longer relays room")
        with pytest.raises(ApiRequestError) as gone:
            await trio.to_thread.run_sync(run, "remove", p.room.hex(), NODE.hex())
        assert gone.value.status == 404
        for bad in (("add", p.room.hex(), "xyz", ORG.hex()), ("add", p.room.hex(), NODE.hex()),
                    ("add", p.room.hex(), NODE.hex(), "no"), ("remove", p.room.hex())):
            with pytest.raises(ApiRequestError) as refused:
                run(*bad)  # refused before any request
            assert refused.value.status == 400


def test_rooms_relay_command_is_wired() -> None:
    from p2pmsg.cli.main import build_parser
    from p2pmsg.cli.room_cmds import cmd_rooms_relay

    parser = build_parser()
    args = parser.parse_args(["rooms", "relay", "add", "Station 3", "ab" * 32,
                              "--org", "cd" * 32])
    assert args.handler is cmd_rooms_relay
    assert (args.relay_action, args.room, args.node, args.org) == (
        "add", "Station 3", "ab" * 32, "cd" * 32)
    args = parser.parse_args(["rooms", "relay", "remove", "Station 3", "ab" * 32])
    assert (args.relay_action, args.node) == ("remove", "ab" * 32)
    args = parser.parse_args(["rooms", "relay", "list", "Station 3"])
    assert args.relay_action == "list" and args.handler is cmd_rooms_relay
