"""``p2pmsg rooms``, ``rooms create``, ``rooms share-history``, ``rooms relay``,
``send``, ``read`` and ``download``: clients of the running daemon.

These commands talk to the daemon's local HTTP API (``[api] enabled = true``)
through :mod:`p2pmsg.cli.api_client`; the daemon holds the store and the keys.
``read`` prints decrypted message text on purpose — it is the user's own client;
the daemon's logs never carry content. A ROOM argument is the room id (64 hex
digits) or the local name given at ``rooms create --name``. ``send --file`` streams
the file to the daemon, which encrypts it into its blob store and sends an
attachment message; ``download`` asks the daemon for an attachment (fetched from
peers if needed) and writes it to ``--out``. Both show their progress on stderr
(:class:`~p2pmsg.daemon.progress.TransferProgress`: one rewritten line on a
terminal, otherwise a plain line every few seconds and a final one), so stdout
keeps only the ``sent ...`` / ``wrote ...`` result. ``rooms relay add|remove|list``
declares (as a room admin) which nodes of which organisations relay a room: a
RELAY_ADD / RELAY_REMOVE entry in the room (docs/messaging.md, "Relays").
"""

from __future__ import annotations

import argparse
import mimetypes
import os
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from ..daemon.config import DaemonConfig
from ..daemon.progress import TransferProgress
from .api_client import ApiClient, ApiRequestError, locate_api

__all__ = ["cmd_download", "cmd_read", "cmd_rooms", "cmd_rooms_create", "cmd_rooms_relay",
           "cmd_rooms_share_history", "cmd_send", "format_message", "format_size",
           "relay_command", "share_history"]

_ATTACHMENT_KINDS = ("voice", "image", "document", "video")


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


def share_history(client: ApiClient, room_text: str, device: str) -> str:
    """Ask the daemon to approve ``device`` (another device of this node's person)
    for room ``room_text`` (id or local name); returns the line to print."""
    if not _is_id(device):
        raise ApiRequestError(400, f"DEVICE {device[:70]!r}: expected a device id "
                                   "(64 hex digits)")
    room = _room_id(client, room_text)
    answer = client.call("POST", f"/v1/rooms/{room}/history-shares",
                         {"device": device.lower()})
    if answer.get("id") is None:
        return (f"invited {device.lower()} to room {room}; it already holds every "
                "epoch key this device has (nothing to share)")
    return f"shared the history of room {room} with {device.lower()} (entry {answer['id']})"


def cmd_rooms_share_history(config: DaemonConfig, args: argparse.Namespace) -> int:
    print(share_history(locate_api(config), args.room, args.device))
    return 0


def relay_command(client: ApiClient, action: str, room_text: str, node: str | None = None,
                  org: str | None = None) -> str:
    """``rooms relay add|remove|list``: ask the daemon to declare ``node`` (of ``org``)
    a relay of the room, to stop it, or list the relays; returns the text to print."""
    for name, value in (("NODE", node), ("--org", org)):
        if value is not None and not _is_id(value):
            raise ApiRequestError(400, f"{name} {value[:70]!r}: expected a key id "
                                       "(64 hex digits)")
    if action == "add" and (node is None or org is None):
        raise ApiRequestError(400, "rooms relay add: give NODE and --org ORG")
    if action == "remove" and node is None:
        raise ApiRequestError(400, "rooms relay remove: give NODE")
    room = _room_id(client, room_text)
    base = f"/v1/rooms/{room}/relays"
    if action == "add":
        assert node is not None and org is not None
        answer = client.call("POST", base, {"node": node.lower(), "org": org.lower()})
        return f"node {node.lower()} relays room {room} (entry {answer['id']})"
    if action == "remove":
        assert node is not None
        answer = client.call("DELETE", f"{base}/{node.lower()}")
        return f"node {node.lower()} no longer relays room {room} (entry {answer['id']})"
    relays = client.call("GET", base)["relays"]
    if not relays:
        return f"room {room} has no relays"
    return "\n".join(f"{r['node']}  org {r['org']}" for r in relays)


def cmd_rooms_relay(config: DaemonConfig, args: argparse.Namespace) -> int:
    print(relay_command(locate_api(config), args.relay_action, args.room,
                        getattr(args, "node", None), getattr(args, "org", None)))
    return 0


def cmd_send(config: DaemonConfig, args: argparse.Namespace) -> int:
    client = locate_api(config)
    file: str | None = getattr(args, "file", None)
    if (args.text is None) == (file is None):
        raise ApiRequestError(400, "send: give exactly one of --text and --file")
    if file is not None:
        return _send_file(client, args, Path(file))
    room = _room_id(client, args.room)
    answer = client.call("POST", f"/v1/rooms/{room}/messages", {"kind": "text", "text": args.text})
    print(f"sent {answer['id']}")
    return 0


def _send_file(client: ApiClient, args: argparse.Namespace, path: Path) -> int:
    try:
        f = path.open("rb")
    except OSError as exc:
        raise ApiRequestError(400, f"--file {path}: {exc.strerror or exc}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ApiRequestError(400, f"--file {path}: the file is empty")
        room = _room_id(client, args.room)
        mime = args.mime or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        query = {"kind": args.kind, "mime": mime, "name": path.name}
        if args.caption:
            query["caption"] = args.caption
        shown = TransferProgress("uploading", path.name, size, sys.stderr)
        try:
            answer = client.upload(f"/v1/rooms/{room}/attachments?"
                                   f"{urllib.parse.urlencode(query)}", f, size, mime,
                                   progress=lambda done, _total: shown.update(done))
        except BaseException:
            shown.abort()
            raise
        shown.finish(size)
    print(f"sent {answer['id']} ({args.kind} {format_size(int(answer['size']))})")
    return 0


def cmd_download(config: DaemonConfig, args: argparse.Namespace) -> int:
    client = locate_api(config)
    if not _is_id(args.message):
        raise ApiRequestError(400, f"MESSAGE {args.message[:70]!r}: expected a message id "
                                   "(64 hex digits, shown by 'p2pmsg read')")
    room = _room_id(client, args.room)
    out = Path(args.out)
    if out.is_dir():
        raise ApiRequestError(400, f"--out {out}: is a directory; give a file path")
    partial = out.with_name(out.name + ".part")
    path = (f"/v1/rooms/{room}/messages/{args.message.lower()}/attachment"
            f"?wait={args.wait:g}")
    shown: TransferProgress | None = None

    def progress(done: int, total: int | None) -> None:
        nonlocal shown
        if shown is None:
            shown = TransferProgress("downloading", out.name, total, sys.stderr)
        shown.update(done)

    try:
        with partial.open("wb") as f:
            written = client.download(path, f, progress=progress)
        partial.replace(out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if shown is not None:
            shown.abort()
        raise ApiRequestError(400, f"--out {out}: {exc.strerror or exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        if shown is not None:
            shown.abort()
        raise
    if shown is not None:
        shown.finish(written)
    print(f"wrote {out} ({format_size(written)})")
    return 0


def format_size(size: int) -> str:
    """Bytes for people: ``512 B``, ``1.2 kB``, ``3.4 MB`` (decimal units)."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 999.95 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


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
    elif kind in _ATTACHMENT_KINDS:
        label = " ".join(str(content.get("name") or "").split())
        size = format_size(int(content.get("size", 0)))
        text = f"[{kind} {label} {size}]" if label else f"[{kind} {size}]"
        if content.get("caption"):
            text += f" {content['caption']}"
        text += f"  (id {msg['id']})"
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
