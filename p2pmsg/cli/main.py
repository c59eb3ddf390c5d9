"""The ``p2pmsg`` command: argument parsing, dispatch, and the one-line error policy.

:func:`main` is the console-script entry point (also ``python -m p2pmsg``). Every
command either succeeds or fails with **one line** on stderr
(``p2pmsg: error: ...``) and an exit code from :mod:`p2pmsg.cli.exitcodes`; user
mistakes (bad path, bad config, key permissions, corrupt store) never print a
traceback. Set ``P2PMSG_DEBUG=1`` to get tracebacks for bug reports.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from ..daemon.config import load_config
from . import exitcodes
from .exitcodes import exit_code_for
from .governance_cmds import add_governance_commands
from .init_cmds import cmd_node_init, cmd_org_init
from .node_cmds import cmd_peers, cmd_run, cmd_status
from .room_cmds import (
    cmd_download,
    cmd_read,
    cmd_rooms,
    cmd_rooms_create,
    cmd_rooms_relay,
    cmd_rooms_share_history,
    cmd_send,
)
from .store_cmds import cmd_append, cmd_backup, cmd_log, cmd_topics, cmd_verify

__all__ = ["build_parser", "main"]

_EPILOG = """\
Configuration: one TOML file (-c, or $P2PMSG_CONFIG, default ./p2pmsg.toml);
every field can be overridden by P2PMSG_<SECTION>_<FIELD>. See docs/operations.md.
Exit codes: 0 ok, 1 other error (e.g. the API refused a request), 2 usage,
3 config, 4 key/certificate, 5 store, 6 network, 7 node running, 8 verification
failed, 10 daemon not running / API disabled or unreachable, 11 OS error.
rooms, send, read and download talk to the running daemon's local API ([api] enabled = true)."""


def _config_parent(*, suppress: bool = False) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-c", "--config", metavar="PATH",
        default=argparse.SUPPRESS if suppress else None,
        help="node configuration file (default: $P2PMSG_CONFIG or ./p2pmsg.toml)",
    )
    return parent


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= 500:
        raise argparse.ArgumentTypeError("between 1 and 500")
    return value


def _add_room_commands(sub: Any, cfg: argparse.ArgumentParser) -> None:
    p = sub.add_parser("rooms", parents=[cfg],
                       help="rooms this device is in (via the running daemon's API)")
    p.set_defaults(handler=cmd_rooms, needs_config=True)
    rooms_sub = p.add_subparsers(dest="rooms_command", metavar="ACTION")
    c = rooms_sub.add_parser("create", parents=[_config_parent(suppress=True)],
                             help="create a room with member devices")
    c.add_argument("--member", action="append", required=True, metavar="DEVICE",
                   help="a member's device id (64 hex digits); repeat for more")
    c.add_argument("--name", default="", help="a local label for the room (not replicated)")
    c.add_argument("--direct", action="store_true", help="a direct (1:1) room")
    c.set_defaults(handler=cmd_rooms_create)
    c = rooms_sub.add_parser(
        "share-history", parents=[_config_parent(suppress=True)],
        help="approve another device of this node's person: invite it to a room and "
             "give it the room's earlier epoch keys")
    c.add_argument("room", metavar="ROOM", help="room id (64 hex digits) or its local name")
    c.add_argument("device", metavar="DEVICE",
                   help="the other device's id (64 hex digits), certified for the same "
                        "person")
    c.set_defaults(handler=cmd_rooms_share_history)
    c = rooms_sub.add_parser(
        "relay", parents=[_config_parent(suppress=True)],
        help="declare (room admins) which organisations' nodes relay a room: they "
             "replicate its ciphertext, are not members and get no keys")
    relay_sub = c.add_subparsers(dest="relay_action", metavar="ACTION", required=True)
    for action, text in (("add", "make NODE (of --org ORG) a relay of ROOM"),
                         ("remove", "stop NODE relaying ROOM"),
                         ("list", "the relays ROOM declares")):
        r = relay_sub.add_parser(action, parents=[_config_parent(suppress=True)], help=text)
        r.add_argument("room", metavar="ROOM", help="room id (64 hex digits) or its local name")
        if action != "list":
            r.add_argument("node", metavar="NODE", help="the node's key (64 hex digits)")
        if action == "add":
            r.add_argument("--org", required=True, metavar="ORG",
                           help="the organisation the federation list names the node under")
        r.set_defaults(handler=cmd_rooms_relay)
    p = sub.add_parser("send", parents=[cfg],
                       help="send a text or a file to a room (via the daemon)")
    p.add_argument("room", metavar="ROOM", help="room id (64 hex digits) or its local name")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="the message text")
    what.add_argument("--file", metavar="PATH", help="send this file as an attachment")
    p.add_argument("--kind", choices=["voice", "image", "document", "video"],
                   default="document", help="attachment kind for --file (default document)")
    p.add_argument("--mime", default=None,
                   help="media type for --file (default: guessed from the file name)")
    p.add_argument("--caption", default="", help="caption for --file")
    p.set_defaults(handler=cmd_send, needs_config=True)
    p = sub.add_parser("download", parents=[cfg],
                       help="save a message's attachment (via the daemon; fetched from "
                            "peers if needed)")
    p.add_argument("room", metavar="ROOM", help="room id (64 hex digits) or its local name")
    p.add_argument("message", metavar="MESSAGE_ID", help="the message id ('p2pmsg read')")
    p.add_argument("--out", required=True, metavar="PATH", help="write the file here")
    p.add_argument("--wait", type=float, default=60.0,
                   help="seconds the daemon may spend fetching it from peers (0..300, "
                        "default 60)")
    p.set_defaults(handler=cmd_download, needs_config=True)
    p = sub.add_parser("read", parents=[cfg],
                       help="print a room's decrypted messages (via the daemon)")
    p.add_argument("room", metavar="ROOM", help="room id (64 hex digits) or its local name")
    p.add_argument("-n", "--limit", type=_limit, default=50,
                   help="the last N messages (1..500, default 50)")
    p.set_defaults(handler=cmd_read, needs_config=True)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (used by :func:`main` and by the docs test)."""
    parser = argparse.ArgumentParser(
        prog="p2pmsg",
        description="p2pmsg: serverless messaging between healthcare organisations "
                    "(signed append-only logs, replicated peer to peer).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cfg = _config_parent()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    org = sub.add_parser("org", help="organisation keys")
    org_sub = org.add_subparsers(dest="org_command", metavar="ACTION", required=True)
    p = org_sub.add_parser("init", help="create an organisation root key and id in DIR")
    p.add_argument("directory", metavar="DIR")
    p.set_defaults(handler=cmd_org_init, needs_config=False)

    node = sub.add_parser("node", help="node set-up")
    node_sub = node.add_subparsers(dest="node_command", metavar="ACTION", required=True)
    p = node_sub.add_parser(
        "init", help="create a node in DIR: key, certificate, config file, data directory")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--org", required=True, metavar="ORG",
                   help="organisation directory (from 'org init') or its org.key file")
    p.add_argument("--name", default="", help="display name of the node (default: node-<id>)")
    p.add_argument("--tcp-listen", metavar="HOST:PORT",
                   help="enable the TCP transport on this address")
    p.add_argument("--metrics", default="127.0.0.1:9464", metavar="HOST:PORT",
                   help="metrics endpoint (default 127.0.0.1:9464)")
    p.add_argument("--no-metrics", action="store_true", help="disable the metrics endpoint")
    p.add_argument("--api-port", type=int, metavar="PORT",
                   help="enable the local HTTP API on 127.0.0.1:PORT (0 = any free port)")
    p.add_argument("--valid-days", type=int, default=365,
                   help="certificate validity in days (default 365)")
    p.add_argument("--person", metavar="HANDLE",
                   help="attribute the node to a person (one of several devices): HANDLE is "
                        "an org-internal name such as a staff number; only the pseudonymous "
                        "person id derived from it and the org key is published")
    p.set_defaults(handler=cmd_node_init, needs_config=False)

    p = sub.add_parser("run", parents=[cfg], help="run the node headless until SIGTERM/SIGINT")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   help="override log.level")
    p.set_defaults(handler=cmd_run, needs_config=True)

    p = sub.add_parser("status", parents=[cfg], help="is the node running; counters")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_status, needs_config=True)

    p = sub.add_parser("peers", parents=[cfg], help="configured and connected peers")
    p.set_defaults(handler=cmd_peers, needs_config=True)

    p = sub.add_parser("topics", parents=[cfg], help="topics in the store: logs and entries")
    p.set_defaults(handler=cmd_topics, needs_config=True)

    p = sub.add_parser("log", parents=[cfg],
                       help="a topic's entries: seq, author short id, time (no content)")
    p.add_argument("topic", help="configured topic name or 64 hex digits")
    p.add_argument("-n", "--limit", type=int, help="show only the last N entries")
    p.set_defaults(handler=cmd_log, needs_config=True)

    p = sub.add_parser("append", parents=[cfg],
                       help="append a payload to a topic (low level; node must be stopped)")
    p.add_argument("topic", help="configured topic name or 64 hex digits")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="payload as UTF-8 text")
    src.add_argument("--file", metavar="PATH", help="payload file ('-' = stdin)")
    p.set_defaults(handler=cmd_append, needs_config=True)

    p = sub.add_parser("verify", parents=[cfg],
                       help="verify a store offline: every log, every signature; report forks")
    p.add_argument("store", nargs="?", help="store file (default: the config's data_dir/store.db)")
    p.add_argument("--fail-on-fork", action="store_true", help="exit 8 if any fork is recorded")
    p.set_defaults(handler=cmd_verify, needs_config=None)

    p = sub.add_parser("backup", parents=[cfg],
                       help="online backup of the store (safe while the node runs)")
    p.add_argument("destination", metavar="FILE", help="new file to write (must not exist)")
    p.set_defaults(handler=cmd_backup, needs_config=True)

    add_governance_commands(sub, cfg)

    _add_room_commands(sub, cfg)
    return parser


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        text = f"{where}{exc.strerror}"
    elif isinstance(exc, KeyboardInterrupt):
        text = "interrupted"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _leaf(exc: BaseException) -> BaseException:
    """The single real error inside (possibly nested) exception groups from nurseries."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``p2pmsg`` command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.needs_config is False:
            return int(args.handler(args))
        path = args.config or os.environ.get("P2PMSG_CONFIG") or "p2pmsg.toml"
        if args.needs_config is None and not args.config and not os.path.exists(path):
            config = None
        else:
            config = load_config(path)
        return int(args.handler(config, args))
    except BaseException as raw:
        exc = _leaf(raw)
        if isinstance(exc, SystemExit):
            raise
        code = exit_code_for(exc)
        if code == exitcodes.INTERNAL or os.environ.get("P2PMSG_DEBUG"):
            if os.environ.get("P2PMSG_DEBUG"):
                traceback.print_exception(raw)
            else:
                print(f"p2pmsg: internal error: {type(exc).__name__}: {_one_line(exc)} "
                      "(set P2PMSG_DEBUG=1 for details and please report it)", file=sys.stderr)
                return code
        print(f"p2pmsg: error: {_one_line(exc)}", file=sys.stderr)
        return code
