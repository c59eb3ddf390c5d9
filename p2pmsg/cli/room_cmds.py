"""``p2pmsg rooms``, ``rooms create``, ``send`` and ``read``: clients of the running daemon.

These commands talk to the daemon's local HTTP API (``[api] enabled = true``)
through :mod:`p2pmsg.cli.api_client`; the daemon holds the store and the keys.
``read`` prints decrypted message text on purpose — it is the user's own client;
the daemon's logs never carry content. A ROOM argument is the room id (64 hex
digits) or the local name given at ``rooms create --name``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..daemon.config import DaemonConfig
from .api_client import ApiClient, ApiRequestError, locate_api

__all__ = ["cmd_read", "cmd_rooms", "cmd_rooms_create", "cmd_send", "format_message"]


def _is_id(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def _room_id(client: ApiClient, text: str) -> str:
    if _is_id(text):
        return text.lower()
    rooms = client.call("GET", "/v1/rooms")["rooms"]
    named = [r["id"] for r in rooms if r.get("name") and r["name"] == text]
    if len(named) == 1:
        return str(named[0])
    if len(named) > 1:
        raise ApiRequestError(400, f"room {text!r}: several rooms have that name; use the id")
    raise ApiRequestError(
        400, f"room {text!r}: neither a room id (64 hex digits) nor the name of one of "
             "your rooms (see 'p2pmsg rooms')")


def _room_line(room: dict[str, Any]) -> str:
    members = room.get("members", [])
    epoch = room.get("epoch")
    parts = [str(room["id"]), str(room.get("kind", "?")), f"{len(members)} members",
             f"epoch {epoch if epoch is not None else '-'}"]
    if room.get("name"):
        parts.append(str(room["name"]))
    if room.get("replicated") is False:
        parts.append("(not replicated yet: see docs/operations.md)")
    return "  ".join(parts)


def cmd_rooms(config: DaemonConfig, args: argparse.Namespace) -> int:
    client = locate_api(config)
    rooms = client.call("GET", "/v1/rooms")["rooms"]
    for room in rooms:
        print(_room_line(room))
    if not rooms:
        print("no rooms (create one with 'p2pmsg rooms create --member DEVICE')")
    return 0


def cmd_rooms_create(config: DaemonConfig, args: argparse.Namespace) -> int:
    client = locate_api(config)
    for key in args.member:
        if not _is_id(key):
            raise ApiRequestError(400, f"--member {key[:70]!r}: expected a device id "
                                  "(64 hex digits)")
    body: dict[str, Any] = {"members": [{"device": k.lower()} for k in args.member],
                            "kind": "direct" if args.direct else "group"}
    if args.name:
        body["name"] = args.name
    room = client.call("POST", "/v1/rooms", body)
    print(_room_line(room))
    return 0


def cmd_send(config: DaemonConfig, args: argparse.Namespace) -> int:
    client = locate_api(config)
    room = _room_id(client, args.room)
    answer = client.call("POST", f"/v1/rooms/{room}/messages", {"kind": "text", "text": args.text})
    print(f"sent {answer['id']}")
    return 0


def format_message(msg: dict[str, Any]) -> str:
    """One message as one line: local time, author short id, then the content."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(msg["time_ms"]) / 1000))
    author = str(msg["author"])[:8]
    status = msg.get("status")
    content = msg.get("content") or {}
    kind = msg.get("kind")
    if status == "redacted":
        text = "[redacted]"
    elif status in ("undecryptable", "unavailable"):
        text = f"[{status}]"
    elif kind in ("text", "reply"):
        text = str(content.get("text", ""))
    elif kind == "fhir":
        text = f"[fhir] {content.get('fallback_text', '')}"
    elif kind in ("voice", "image", "document", "video"):
        text = f"[{kind}] {content.get('name') or content.get('caption') or ''}".rstrip()
    else:
        text = f"[{kind}]"
    if msg.get("edited"):
        text += " (edited)"
    text = " ".join(text.splitlines()) if "\n" in text else text
    return f"{stamp}  {author}  {text}"


def cmd_read(config: DaemonConfig, args: argparse.Namespace) -> int:
    client = locate_api(config)
    room = _room_id(client, args.room)
    answer = client.call("GET", f"/v1/rooms/{room}/messages?limit={args.limit}")
    for msg in answer["messages"]:
        print(format_message(msg))
    return 0
