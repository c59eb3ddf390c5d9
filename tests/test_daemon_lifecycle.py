"""``p2pmsg run`` as a real process: ready, metrics, SIGTERM, restart, kill -9, replication.

These tests start the daemon with ``python -m p2pmsg run`` on 127.0.0.1 ports and
talk to it only from outside (metrics endpoint, status file, the CLI, signals).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pmsg.cli import main as cli_main
from p2pmsg.daemon.config import load_config
from p2pmsg.daemon.state import read_status
from p2pmsg.entry import create_entry
from p2pmsg.identity import short_id
from p2pmsg.keyfile import load_identity
from p2pmsg.messaging import control_topic
from p2pmsg.net.base import available_transports
from p2pmsg.store.sqlite import SqliteStore

TOPIC = bytes.fromhex("5e" * 32)
HAVE_TCP = "tcp" in available_transports()
START_TIMEOUT = 60.0
"""Generous: the CI machine is shared; these are liveness bounds, not speed checks."""


def cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("P2PMSG_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "p2pmsg", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=full_env,
                          check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """One ``p2pmsg run`` process with its stderr captured to a file."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = config.parent / "daemon.log"
        self.metrics_address = ""

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("P2PMSG_")}
        env.update(self.env)
        self.log.write_bytes(b"")
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "p2pmsg", "run", "-c", str(self.config)],
                stdout=subprocess.DEVNULL, stderr=err, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if match := re.search(r"event=ready .*metrics=(\S+)", text):
                self.metrics_address = match.group(1)
                return
            if self.proc.poll() is not None:
                pytest.fail(f"daemon exited with {self.proc.returncode}: {text}")
            time.sleep(0.05)
        pytest.fail(f"daemon not ready: {self.log.read_text()}")

    def metrics(self) -> dict[str, float]:
        url = f"http://{self.metrics_address}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {name: float(value) for name, value in
                (ln.split() for ln in text.splitlines() if ln and not ln.startswith("#"))}

    def signal(self, signum: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@contextlib.contextmanager
def daemons(*items: Daemon) -> Iterator[None]:
    try:
        yield
    finally:
        for d in items:
            d.stop()


def wait_until(predicate: object, what: str, timeout: float = START_TIMEOUT) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def make_node(tmp_path: Path, name: str, *, tcp_port: int | None) -> Path:
    org = tmp_path / "org"
    if not (org / "org.key").exists():
        assert cli_main(["org", "init", str(org)]) == 0
    args = ["node", "init", str(tmp_path / name), "--org", str(org), "--name", name,
            "--metrics", "127.0.0.1:0"]
    if tcp_port is not None:
        args += ["--tcp-listen", f"127.0.0.1:{tcp_port}"]
    assert cli_main(args) == 0
    return tmp_path / name / "p2pmsg.toml"


def add_topic(config: Path, readers: list[bytes], peers: list[tuple[bytes, str]] = ()) -> None:
    text = config.read_text()
    for node_id, address in peers:
        text += f'\n[[peers]]\nid = "{node_id.hex()}"\naddress = "{address}"\n'
    text += (f'\n[[topics]]\nid = "{TOPIC.hex()}"\nname = "ward"\nreaders = ['
             + ", ".join(f'"{r.hex()}"' for r in readers) + "]\n")
    config.write_text(text)


def control_entries(config: Path) -> int:
    """Entries of the org's control log that ``node init`` put into the node's store."""
    cfg = load_config(config, env={})
    assert cfg.org_id is not None
    with SqliteStore(cfg.store_path) as store:
        return sum(h.seq for h in store.heads(control_topic(cfg.org_id)))


def node_id(config: Path) -> bytes:
    return load_identity(load_config(config, env={}).key).public_key


def test_run_sigterm_restart_keeps_state(tmp_path: Path) -> None:
    config = make_node(tmp_path, "a", tcp_port=0 if HAVE_TCP else None)
    add_topic(config, readers=[])
    for text in ("one", "two"):
        assert cli("append", "-c", config, "ward", "--text", text).returncode == 0
    pid_path = tmp_path / "a" / "p2pmsg.pid"
    daemon = Daemon(config, env={"P2PMSG_NODE_PID_FILE": str(pid_path)})
    with daemons(daemon):
        daemon.start()
        assert daemon.proc is not None
        assert pid_path.read_text().strip() == str(daemon.proc.pid)
        values = daemon.metrics()
        assert values["p2pmsg_sessions"] == 0 and values["p2pmsg_forks_total"] == 0
        assert values["p2pmsg_stored_forks"] == 0
        log_text = daemon.log.read_text()
        assert f"node={short_id(node_id(config))}" in log_text
        assert node_id(config).hex() not in log_text  # logs carry short ids only
        if HAVE_TCP:
            assert "listen=tcp://127.0.0.1:" in log_text

        running = cli("append", "-c", config, "ward", "--text", "three")
        assert running.returncode == 7, running.stderr
        assert "running" in running.stderr and "Traceback" not in running.stderr
        wait_until(lambda: read_status(tmp_path / "a" / "data") is not None, "status file")
        status = cli("status", "-c", config)
        assert f"pid {daemon.proc.pid}" in status.stdout
        assert node_id(config).hex() in status.stdout

        assert daemon.signal(signal.SIGTERM) == 0
        assert "event=stopping signal=SIGTERM" in daemon.log.read_text()
        assert "event=stopped" in daemon.log.read_text()
        assert not pid_path.exists()
        assert "state: stopped" in cli("status", "-c", config).stdout

        assert cli("append", "-c", config, "ward", "--text", "three").returncode == 0
        daemon.start()
        assert daemon.metrics()["p2pmsg_entries_appended_total"] == 0
        log = cli("log", "-c", config, "ward")  # readers work while it runs
        assert [ln.split()[0] for ln in log.stdout.splitlines()] == ["1", "2", "3"]
        assert daemon.signal(signal.SIGINT) == 0
    assert cli("verify", "-c", config).returncode == 0


def test_kill_9_releases_the_lock_and_keeps_the_store(tmp_path: Path) -> None:
    config = make_node(tmp_path, "a", tcp_port=None)
    add_topic(config, readers=[])
    assert cli("append", "-c", config, "ward", "--text", "x").returncode == 0
    daemon = Daemon(config)
    with daemons(daemon):
        daemon.start()
        assert daemon.signal(signal.SIGKILL) == -signal.SIGKILL
        assert "state: stopped" in cli("status", "-c", config).stdout
        assert cli("append", "-c", config, "ward", "--text", "y").returncode == 0
        daemon.start()
        assert daemon.signal(signal.SIGTERM) == 0
    verify = cli("verify", "-c", config)
    expected = 2 + control_entries(config)
    assert verify.returncode == 0 and f"{expected} entries verified" in verify.stdout


def populate(config: Path, count: int) -> None:
    """Give the node ``count`` entries of its own in TOPIC (in-process, fast)."""
    cfg = load_config(config, env={})
    me = load_identity(cfg.key)
    entries, payloads, prev = [], {}, None
    for seq in range(1, count + 1):
        payload = os.urandom(200)
        entry = create_entry(me, TOPIC, seq, prev, seq << 16, payload)
        entries.append(entry)
        payloads[entry.id] = payload
        prev = entry.id
    with SqliteStore(cfg.store_path) as store:
        store.append(entries, payloads)


@pytest.mark.skipif(not HAVE_TCP, reason="needs the p2pmsg-tcp plugin (transports/p2pmsg-tcp)")
def test_two_daemons_replicate_over_tcp_and_survive_kill_9(tmp_path: Path) -> None:
    count = 3000
    port_a = free_port()
    config_a = make_node(tmp_path, "a", tcp_port=port_a)
    config_b = make_node(tmp_path, "b", tcp_port=0)
    id_a, id_b = node_id(config_a), node_id(config_b)
    add_topic(config_a, readers=[id_b])
    add_topic(config_b, readers=[id_a], peers=[(id_a, f"tcp://127.0.0.1:{port_a}")])
    populate(config_a, count)
    a, b = Daemon(config_a), Daemon(config_b)
    data_b = tmp_path / "b" / "data"

    def b_entries() -> int:
        status = read_status(data_b)
        if status is None:
            return 0
        return sum(t["entries"] for t in status["topics"] if t["id"] == TOPIC.hex())

    with daemons(a, b):
        a.start()
        b.start()
        wait_until(lambda: b.metrics()["p2pmsg_entries_received_total"] > 0, "first entries")
        # kill -9 while (probably) mid-sync: whatever was acknowledged must verify.
        assert b.signal(signal.SIGKILL) == -signal.SIGKILL
        verify = cli("verify", "-c", config_b)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        print("after kill -9:", verify.stdout.strip())  # how far the sync had got (-s)
        b.start()
        wait_until(lambda: b_entries() == count, "full replication after restart")
        # A may still be closing its session with the killed B (duplicate-connection
        # resolution): B is connected again shortly, not necessarily at this instant
        wait_until(lambda: b.metrics()["p2pmsg_peers"] == 1, "B connected to A")
        assert a.metrics()["p2pmsg_entries_sent_total"] > 0
        assert b.signal(signal.SIGTERM) == 0
        assert a.signal(signal.SIGTERM) == 0
    log = cli("log", "-c", config_b, "ward", "-n", "1")
    assert log.stdout.split()[:2] == [str(count), short_id(id_a)]
    final = cli("verify", "-c", config_b)
    expected = count + control_entries(config_b)
    assert final.returncode == 0 and f"{expected} entries verified" in final.stdout
