#!/usr/bin/env python3
"""Run ONE p2pmsg node from a config file and drive it over stdin/stdout.

Used by the multi-host tests (tests/netns/, docs/testing-netns.md), which start one
copy per network namespace with ``ip netns exec NS python tools/netns_node.py
CONFIG``. It is a test tool, not the daemon: no key files, no config search path,
no metrics — just a real node (SqliteStore, QUIC or TCP transport, mDNS discovery,
static peers) and a tiny control channel.

Config (JSON, or TOML if the file name ends in ``.toml``)::

    {
      "name": "a1",                      # label for logs
      "seed": "<64 hex>",                # Ed25519 seed of the node key (test keys only!)
      "org": "<64 hex>",                 # org id advertised over mDNS
      "host": "10.201.1.11", "port": 4433,
      "transport": "quic",               # or "tcp"
      "mdns": true,                      # advertise/browse on the interface of `host`
      "peers": [{"id": "<64 hex>", "address": "quic://10.201.2.11:4433"}],
      "topics": ["<64 hex>"],            # topics replicated
      "readers": ["<64 hex>", ...],      # node ids allowed to connect and read them
      "data_dir": "/tmp/x",              # optional; default: a temp dir, deleted at exit
      "quic": {"idle_timeout": 10, "keepalive_interval": 2},   # optional QuicSettings
      "reconnect_max": 2.0               # optional backoff cap (seconds)
    }

Control channel: one JSON object per line. The node first prints
``{"event": "ready", "id": ..., "addresses": [...]}``; then every request on stdin
gets exactly one response line ``{"ok": true|false, "op": ..., ...}``:

* ``{"op": "append", "topic": hex, "payload": str}`` -> ``{"id": hex}``
* ``{"op": "status", "topic": hex}`` -> ``{"count", "ids" (read order), "heads"
  ({author hex: seq}), "peers" (connected node ids), "mdns_peers", "stats"}``
* ``{"op": "wait", "topic": hex, "count": n, "timeout": s}`` -> ``{"count"}``
  (``ok`` false on timeout)
* ``{"op": "exit"}`` -> ``{}``, then the node stops. EOF on stdin also stops it.

Logs go to stderr (never keys or payloads). Exit status 0 on a clean stop.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import tomllib
from contextlib import AsyncExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import trio

from p2pmsg.identity import Identity
from p2pmsg.net.base import Discovery, PeerHint, Transport
from p2pmsg.node import Node, NodeConfig, open_node
from p2pmsg.policy import TopicPolicy
from p2pmsg.store.sqlite import SqliteStore

__all__ = ["main", "run_node"]

log = logging.getLogger("netns_node")


def load_config(path: Path) -> dict[str, Any]:
    """Read the JSON (or ``.toml``) node config."""
    raw = path.read_bytes()
    if path.suffix == ".toml":
        return tomllib.loads(raw.decode())
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("config must be a JSON object")
    return data


def _key(text: str) -> bytes:
    value = bytes.fromhex(text)
    if len(value) != 32:
        raise ValueError(f"expected 64 hex digits, got {len(text)}")
    return value


def build_transport(cfg: dict[str, Any], identity: Identity, policy: TopicPolicy) -> Transport:
    """The configured transport, bound to ``host:port``."""
    kind = cfg.get("transport", "quic")
    host, port = str(cfg["host"]), int(cfg["port"])
    if kind == "quic":
        from p2pmsg_quic import QuicSettings, QuicTransport

        settings = QuicSettings(**cfg.get("quic", {}))
        return QuicTransport(
            identity=identity, host=host, port=port, settings=settings,
            allow_peer=policy.allow_peer,
        )
    if kind == "tcp":
        from p2pmsg_tcp import TcpTransport

        return TcpTransport(identity, host=host, port=port, allow_peer=policy.allow_peer)
    raise ValueError(f"unknown transport {kind!r}")


class Control:
    """Executes control requests against the running node."""

    def __init__(self, node: Node, mdns: Any) -> None:
        self.node = node
        self.mdns = mdns

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "append":
            entry = await self.node.append(
                bytes.fromhex(request["topic"]), str(request["payload"]).encode()
            )
            return {"id": entry.id.hex()}
        if op == "status":
            return self.status(bytes.fromhex(request["topic"]))
        if op == "wait":
            topic, count = bytes.fromhex(request["topic"]), int(request["count"])
            with trio.move_on_after(float(request.get("timeout", 10))):
                await self.node.wait_for_entries(topic, count)
            have = len(self.node.read(topic))
            return {"ok": have >= count, "count": have}
        raise ValueError(f"unknown op {op!r}")

    def status(self, topic: bytes) -> dict[str, Any]:
        entries = self.node.read(topic)
        heads = {h.author.hex(): h.seq for h in self.node.config.store.heads(topic)}
        mdns_peers = (
            [] if self.mdns is None
            else [p.advertisement.node_id.hex() for p in self.mdns.peers()]
        )
        return {
            "count": len(entries),
            "ids": [e.id.hex() for e in entries],
            "heads": heads,
            "peers": sorted(p.hex() for p in self.node.connected_peers()),
            "mdns_peers": sorted(mdns_peers),
            "stats": asdict(self.node.statistics()),
        }


def _emit(message: dict[str, Any]) -> None:
    # Blocking write is fine: the parent always reads our stdout promptly.
    sys.stdout.write(json.dumps(message, sort_keys=True) + "\n")
    sys.stdout.flush()


async def _serve_control(control: Control) -> None:
    """Read requests from stdin until ``exit`` or EOF."""
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    buffer = b""
    while True:
        while b"\n" not in buffer:
            chunk = await stdin.receive_some(65536)
            if not chunk:
                log.info("stdin closed: stopping")
                return
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            op = request.get("op")
            if op == "exit":
                _emit({"ok": True, "op": "exit"})
                return
            reply: dict[str, Any] = {"ok": True, "op": op}
            reply.update(await control.handle(request))
        except Exception as exc:  # one bad request must not kill the node
            reply = {"ok": False, "op": None, "error": f"{type(exc).__name__}: {exc}"}
        _emit(reply)


async def run_node(cfg: dict[str, Any]) -> None:
    """Build the node described by ``cfg``, announce it, serve the control channel."""
    identity = Identity.from_seed(_key(cfg["seed"]))
    topics = [_key(t) for t in cfg.get("topics", [])]
    readers = [_key(r) for r in cfg.get("readers", [])]
    policy = TopicPolicy({t: readers for t in topics})
    peers = [
        PeerHint(_key(p["id"]), str(p["address"]), source="static")
        for p in cfg.get("peers", [])
    ]
    owned_dir = cfg.get("data_dir") is None
    data_dir = Path(cfg["data_dir"]) if not owned_dir else Path(tempfile.mkdtemp("-p2pmsg"))
    transport = build_transport(cfg, identity, policy)
    store = SqliteStore(data_dir / "node.sqlite3")
    try:
        async with AsyncExitStack() as stack:
            discovery: list[Discovery] = []
            mdns = None
            if cfg.get("mdns"):
                from p2pmsg_mdns import MdnsDiscovery

                mdns = MdnsDiscovery(
                    node_id=identity.public_key,
                    org_id=_key(cfg["org"]),
                    ports={transport.scheme: int(cfg["port"])},
                    interfaces=[str(cfg["host"])],
                )
                discovery.append(mdns)  # the node starts it (Discovery.run)
            config = NodeConfig(
                identity=identity, store=store, transports=[transport],
                discovery=discovery, peers=peers, policy=policy, topics=topics,
                reconnect_max=float(cfg.get("reconnect_max", 30.0)),
                name=str(cfg.get("name", "")),
            )
            node = await stack.enter_async_context(open_node(config))
            _emit({
                "event": "ready", "name": config.name, "id": identity.public_key.hex(),
                "addresses": transport.addresses(),
            })
            await _serve_control(Control(node, mdns))
    finally:
        store.close()
        if owned_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="node config (.json or .toml)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    trio.run(run_node, load_config(args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
