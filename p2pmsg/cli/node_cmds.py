"""``p2pmsg run``, ``status`` and ``peers``: the daemon and what it reports.

``status``/``peers`` never talk to the daemon: a running daemon rewrites
``<data_dir>/status.json`` every few seconds and holds the data directory's lock;
these commands read both (see :mod:`p2pmsg.daemon.state`).
"""

from __future__ import annotations

import argparse
import json
import time

import trio

from ..daemon.config import DaemonConfig
from ..daemon.logsetup import setup_logging
from ..daemon.run import run_daemon
from ..daemon.state import is_locked, read_status
from ..identity import short_id
from ..keyfile import load_identity
from ..store.sqlite import SqliteStore

__all__ = ["cmd_peers", "cmd_run", "cmd_status"]


def cmd_run(config: DaemonConfig, args: argparse.Namespace) -> int:
    setup_logging(args.log_level or config.log_level, config.log_format)
    return trio.run(run_daemon, config)


def _running(config: DaemonConfig) -> tuple[int | None, dict[str, object] | None]:
    pid = is_locked(config.data_dir) if config.data_dir.is_dir() else None
    return pid, (read_status(config.data_dir) if pid is not None else None)


def cmd_status(config: DaemonConfig, args: argparse.Namespace) -> int:
    pid, status = _running(config)
    if args.json:
        print(json.dumps({"running": pid is not None, "pid": pid, "status": status},
                         sort_keys=True))
        return 0
    if pid is None:
        identity = load_identity(config.key)
        print(f"node {identity.public_key.hex()} ({config.name or short_id(identity.public_key)})")
        print("state: stopped")
        if not config.store_path.is_file():
            print(f"store: none yet at {config.store_path}")
            return 0
        with SqliteStore(config.store_path) as store:
            topics = store.topics()
            entries = sum(h.seq for t in topics for h in store.heads(t))
            print(f"store: {config.store_path}: {len(topics)} topics, {entries} entries, "
                  f"{len(store.forks())} forks")
        return 0
    print(f"state: running (pid {pid or 'unknown'})")
    if status is None:
        print("status: not written yet (starting?)")
        return 0
    stats = status.get("statistics")
    stats = stats if isinstance(stats, dict) else {}
    age = time.time() - float(str(status.get("updated", 0)))
    print(f"node {status.get('node_id')} ({status.get('name') or '-'})")
    listen = status.get("listen")
    print(f"listen: {', '.join(map(str, listen)) if isinstance(listen, list) else '-'}")
    connected = status.get("connected_peers") or []
    print(f"peers connected: {len(connected) if isinstance(connected, list) else 0}")
    for key in ("sessions", "entries_appended", "entries_received", "entries_sent",
                "bytes_sent", "bytes_received", "forks", "bad_signature_logs",
                "protocol_errors"):
        print(f"{key}: {stats.get(key, 0)}")
    print(f"status age: {age:.1f}s")
    return 0


def cmd_peers(config: DaemonConfig, args: argparse.Namespace) -> int:
    pid, status = _running(config)
    connected: set[str] = set()
    raw = status.get("connected_peers") if status is not None else None
    if isinstance(raw, list):
        connected = {str(p) for p in raw}
    state = "stopped" if pid is None else "running"
    print(f"node {state}; configured peers: {len(config.peers)}, connected: {len(connected)}")
    listed: set[str] = set()
    for p in config.peers:
        hid = p.node_id.hex()
        listed.add(hid)
        mark = "connected" if hid in connected else ("-" if pid is None else "not connected")
        print(f"{hid}  {p.address}  static  {mark}")
    for hid in sorted(connected - listed):
        print(f"{hid}  -  discovered/inbound  connected")
    return 0
