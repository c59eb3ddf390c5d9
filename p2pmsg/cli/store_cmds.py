"""Store-level commands: ``topics``, ``log``, ``append``, ``verify``, ``backup``.

Reading (``topics``, ``log``, ``verify``, ``backup``) works while the daemon runs
(SQLite WAL readers do not block the writer). ``append`` writes the node's own
log, so it takes the data directory's writer lock and refuses while ``p2pmsg
run`` holds it: stop the node, append, start it again (the daemon then offers
the new entries to its peers). No command prints payload content — only sizes.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import trio

from ..daemon.backup import backup_store
from ..daemon.config import DaemonConfig
from ..daemon.run import build_policy
from ..daemon.state import writer_lock
from ..daemon.verify import verify_store
from ..entry import Entry
from ..errors import Reason, StoreError, ValidationError
from ..hlc import physical_ms
from ..identity import short_id
from ..keyfile import load_identity
from ..node import NodeConfig, open_node
from ..store.base import PayloadState
from ..store.sqlite import SqliteStore

__all__ = ["cmd_append", "cmd_backup", "cmd_log", "cmd_topics", "cmd_verify"]

MAX_APPEND_BYTES = 16 * 1024 * 1024


def _open_existing(path: Path) -> SqliteStore:
    if not path.is_file():
        raise StoreError(f"{path}: no store file (create one with 'p2pmsg node init')")
    return SqliteStore(path)


def _time(timestamp: int) -> str:
    ms = physical_ms(timestamp)
    dt = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def cmd_topics(config: DaemonConfig, args: argparse.Namespace) -> int:
    with _open_existing(config.store_path) as store:
        stored = store.topics()
        names = {t.topic: t.name for t in config.topics}
        print(f"{'topic':64}  {'name':16}  logs  entries")
        for topic in sorted(set(stored) | set(names)):
            heads = store.heads(topic)
            print(f"{topic.hex()}  {names.get(topic, '') or '-':16}  {len(heads):4}  "
                  f"{sum(h.seq for h in heads)}")
    return 0


def cmd_log(config: DaemonConfig, args: argparse.Namespace) -> int:
    topic = config.topic_by_name(args.topic)
    with _open_existing(config.store_path) as store:
        entries: list[Entry] = []
        for head in store.heads(topic):
            entries.extend(store.get_range(head.author, topic, 1, head.seq))
        entries.sort(key=lambda e: (e.header.timestamp, e.id))
        if args.limit is not None:
            entries = entries[-args.limit:] if args.limit > 0 else []
        for e in entries:
            state = store.get_payload(e.id)
            payload = "erased" if state is PayloadState.ERASED else (
                "missing" if isinstance(state, PayloadState) else f"{e.header.payload_size}B")
            print(f"{e.seq:>8}  {short_id(e.author)}  {_time(e.header.timestamp)}  "
                  f"{payload:>9}  {e.id.hex()[:16]}")
    return 0


def _payload(args: argparse.Namespace) -> bytes:
    data: bytes
    if args.text is not None:
        data = str(args.text).encode("utf-8")
    elif args.file == "-":
        data = sys.stdin.buffer.read(MAX_APPEND_BYTES + 1)
    else:
        with open(args.file, "rb") as fh:
            data = bytes(fh.read(MAX_APPEND_BYTES + 1))
    if len(data) > MAX_APPEND_BYTES:
        raise ValidationError(Reason.TOO_LARGE, f"payload larger than {MAX_APPEND_BYTES} bytes")
    return data


def cmd_append(config: DaemonConfig, args: argparse.Namespace) -> int:
    topic = config.topic_by_name(args.topic)
    payload = _payload(args)
    if not config.data_dir.is_dir():
        raise StoreError(f"{config.data_dir}: no data directory (run 'p2pmsg node init')")
    with writer_lock(config.data_dir):
        identity = load_identity(config.key)
        with _open_existing(config.store_path) as store:
            node_config = NodeConfig(identity=identity, store=store,
                                     policy=build_policy(config), topics=[topic])

            async def append() -> Entry:
                async with open_node(node_config) as node:
                    return await node.append(topic, payload)

            entry = trio.run(append)
    print(f"appended seq {entry.seq} ({len(payload)} bytes) id {entry.id.hex()[:16]}")
    return 0


def cmd_verify(config: DaemonConfig | None, args: argparse.Namespace) -> int:
    path = Path(args.store) if args.store else (
        config.store_path if config is not None else Path("store.db"))
    with _open_existing(path) as store:
        store.integrity_check()
        report = verify_store(store)
    for p in report.problems:
        print(f"FAIL log author {short_id(p.author)} topic {p.topic.hex()[:16]} "
              f"from seq {p.seq}: {p.reason}")
    for author, topic, seq in report.forks:
        print(f"FORK author {short_id(author)} topic {topic.hex()[:16]} seq {seq} "
              "(proof kept; log frozen)")
    print(f"{path}: {report.topics} topics, {report.logs} logs, {report.entries} entries "
          f"verified, {report.payloads_checked} payloads checked, "
          f"{len(report.problems)} failed logs, {len(report.forks)} forks")
    if not report.ok or (args.fail_on_fork and report.forks):
        return 8
    return 0


def cmd_backup(config: DaemonConfig, args: argparse.Namespace) -> int:
    size = backup_store(config.store_path, Path(args.destination))
    print(f"backup written: {args.destination} ({size} bytes, integrity checked)")
    return 0
