"""Start ``tools/netns_node.py`` inside namespaces and talk to it from trio.

:func:`node_configs` builds the JSON configs for the hosts of a
:class:`~netns_harness.Topology` (keys generated here, so the test knows every node
id); :func:`run_nodes` starts one process per config with
``ip netns exec NS python tools/netns_node.py CONFIG``, waits for each ``ready``
line and yields :class:`NodeProcess` handles. On exit — normal, failing or
cancelled — every process is asked to exit and then killed, no matter what.
Each node's stderr goes to ``<workdir>/<name>.log``; :meth:`NodeProcess.log_tail`
shows it in assertion messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from netns_harness import Topology

from p2pmsg.identity import Identity

__all__ = [
    "NODE_SCRIPT",
    "TRANSPORT",
    "NodeProcess",
    "node_configs",
    "run_nodes",
    "wait_until_converged",
]

NODE_SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "netns_node.py"
PORT = 4433
TRANSPORT = os.environ.get("P2PMSG_NETNS_TRANSPORT", "quic")
"""Transport the nodes use; ``P2PMSG_NETNS_TRANSPORT=tcp`` runs the suite over TCP."""


def node_configs(
    topology: Topology,
    roles: Iterable[str],
    topic: bytes,
    *,
    mdns: bool,
    cross_site: bool,
    transport: str = TRANSPORT,
    quic: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Configs for ``roles``: every node reads ``topic`` and admits all the others.

    ``mdns``: discover same-site nodes by mDNS (no static peers inside a site).
    ``cross_site``: list the other site's nodes as static peers.
    """
    roles = list(roles)
    ids = {role: Identity.generate() for role in roles}
    org = Identity.generate().public_key.hex()
    configs = []
    for role in roles:
        host = topology.hosts[role]
        peers = [
            {"id": ids[o].public_key.hex(),
             "address": f"{transport}://{topology.hosts[o].ip}:{PORT}"}
            for o in roles
            if cross_site and topology.hosts[o].site != host.site
        ]
        configs.append({
            "name": role,
            "ns": host.ns,
            "seed": ids[role].seed().hex(),
            "org": org,
            "host": host.ip,
            "port": PORT,
            "transport": transport,
            "mdns": mdns,
            "peers": peers,
            "topics": [topic.hex()],
            "readers": [ids[o].public_key.hex() for o in roles if o != role],
            "quic": quic or {"idle_timeout": 10.0, "keepalive_interval": 1.0},
            "reconnect_max": 1.0,
        })
    return configs


class NodeProcess:
    """One running node: send control requests, read its log."""

    def __init__(self, name: str, process: trio.Process, log_path: Path) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path
        self.id = ""
        self.addresses: list[str] = []
        self._buffer = b""
        self._lock = trio.Lock()

    async def _read_line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some(65536)
            if not chunk:
                raise RuntimeError(f"node {self.name} exited:\n{self.log_tail()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    async def wait_ready(self) -> None:
        message = await self._read_line()
        if message.get("event") != "ready":
            raise RuntimeError(f"node {self.name} sent {message!r} instead of ready")
        self.id = message["id"]
        self.addresses = message["addresses"]

    async def request(self, **request: Any) -> dict[str, Any]:
        """Send one control request and return the node's answer."""
        assert self.process.stdin is not None
        async with self._lock:
            await self.process.stdin.send_all(json.dumps(request).encode() + b"\n")
            return await self._read_line()

    async def append(self, topic: bytes, payload: str) -> str:
        reply = await self.request(op="append", topic=topic.hex(), payload=payload)
        if not reply["ok"]:
            raise RuntimeError(f"append on {self.name} failed: {reply}")
        return str(reply["id"])

    async def status(self, topic: bytes) -> dict[str, Any]:
        reply = await self.request(op="status", topic=topic.hex())
        if not reply["ok"]:
            raise RuntimeError(f"status on {self.name} failed: {reply}")
        return reply

    async def ids(self, topic: bytes) -> list[str]:
        """Entry ids of ``topic`` in the node's read order."""
        return list((await self.status(topic))["ids"])

    async def stop(self) -> None:
        """Ask the node to exit; kill it if it does not within 5 s. Never raises."""
        with trio.CancelScope(shield=True):
            if self.process.returncode is None:
                with trio.move_on_after(5):
                    with contextlib.suppress(
                        trio.BrokenResourceError, trio.ClosedResourceError, RuntimeError
                    ):
                        await self.request(op="exit")
                    await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    await trio.aclose_forcefully(stream)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


async def wait_until_converged(
    nodes: Iterable[NodeProcess], topic: bytes, count: int, *, timeout: float
) -> list[list[str]]:
    """Poll until every node reads ``count`` entries (or ``timeout``); return their ids."""
    nodes = list(nodes)
    with trio.move_on_after(timeout):
        while True:
            ids = [await n.ids(topic) for n in nodes]
            if all(len(i) >= count for i in ids) and all(i == ids[0] for i in ids):
                return ids
            await trio.sleep(0.1)
    return [await n.ids(topic) for n in nodes]


@asynccontextmanager
async def run_nodes(
    configs: list[dict[str, Any]], workdir: Path, *, ready_timeout: float = 30.0
) -> AsyncIterator[dict[str, NodeProcess]]:
    """Start one node process per config (in its ``ns``); yield them by name."""
    nodes: dict[str, NodeProcess] = {}
    try:
        for cfg in configs:
            path = workdir / f"{cfg['name']}.json"
            path.write_text(json.dumps(cfg))
            path.chmod(0o600)  # holds a (test) key seed
            log_path = workdir / f"{cfg['name']}.log"
            with log_path.open("wb") as log_file:
                process = await trio.lowlevel.open_process(
                    ["ip", "netns", "exec", cfg["ns"], sys.executable, str(NODE_SCRIPT),
                     str(path)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                )
            nodes[cfg["name"]] = NodeProcess(cfg["name"], process, log_path)
        with trio.fail_after(ready_timeout):
            async with trio.open_nursery() as nursery:
                for node in nodes.values():
                    nursery.start_soon(node.wait_ready)
        yield nodes
    finally:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for node in nodes.values():
                    nursery.start_soon(node.stop)
