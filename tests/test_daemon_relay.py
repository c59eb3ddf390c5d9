"""A relay daemon in practice: three ``p2pmsg run`` processes of three organisations.

A and B run the local API (messenger, room keys); R runs without it — a relay that
holds ciphertext only. Every daemon has ``[governance]`` with one federation list
naming the three organisations and their nodes. Topology: A↔R and B↔R over TCP on
127.0.0.1 (A and B dial R), never A↔B, so B's certificate reaches A, the room and
its invitations reach B and the relay's invitation reaches R only through R — B
gets the whole room from R (its re-invitation names R's organisation).

A creates a room with B, declares R a relay (``rooms relay add``), sends a text
with a unique marker and a file. R takes its invitation by itself
(``event=rooms_invited``), replicates the room and fetches the blob from its clear
ref (``event=attachments_fetched``); then A stops, and B (which does not fetch
attachments in the background) downloads the file byte-identical with R as its
only peer. R audits the declaration (``membership_changed``, ``relay_add``) and the
marker appears neither in R's store files nor in its log.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from test_cli_rooms import device, make_org_node, retry
from test_daemon_lifecycle import HAVE_TCP, Daemon, cli, daemons, free_port, wait_until

from p2pmsg.cli import main as cli_main
from p2pmsg.daemon.api import node_topics
from p2pmsg.daemon.config import load_config
from p2pmsg.daemon.state import read_status
from p2pmsg.messaging import control_topic
from p2pmsg.store.memory import MemoryStore

pytestmark = pytest.mark.skipif(not HAVE_TCP, reason="the TCP transport plugin is not installed")


def org_id(config: Path) -> str:
    cfg = load_config(config, env={})
    assert cfg.org_id is not None
    return cfg.org_id.hex()


def federation(tmp_path: Path, configs: dict[str, Path]) -> tuple[Path, str]:
    """A federation list (``federation issue``) naming each config's organisation with
    its node; returns (list file, issuer id)."""
    issuer = tmp_path / "issuer"
    assert cli_main(["org", "init", str(issuer)]) == 0
    desc = tmp_path / "federation.toml"
    desc.write_text("version = 1\nmax_age_hours = 24\n" + "".join(
        f'\n[[organisations]]\nid = "{org_id(config)}"\nname = "{name}"\nkind = "clinic"\n'
        f'nodes = ["{device(config)}"]\n' for name, config in configs.items()))
    out = tmp_path / "federation.bin"
    assert cli_main(["federation", "issue", str(desc), "--key", str(issuer / "org.key"),
                     "--out", str(out)]) == 0
    return out, (issuer / "org.id").read_text().strip()


def test_a_relay_asks_for_the_control_topics(tmp_path: Path) -> None:
    """Without ``[api]`` but with ``[governance]`` the node asks for every known
    organisation's control topic (its invitations and the inviters' certificates);
    without either, only for its ``[[topics]]``."""
    org, other = "11" * 32, "22" * 32
    config = tmp_path / "p2pmsg.toml"
    plain = f'[node]\nkey = "node.key"\ndata_dir = "data"\norg_id = "{org}"\n'
    config.write_text(plain)
    store = MemoryStore()
    assert node_topics(load_config(config, env={}), store, b"\x01" * 32,
                       [bytes.fromhex(other)]) == []
    config.write_text(plain + f'[governance]\nfederation_list = "f.bin"\nissuer = "{"aa" * 32}"\n')
    assert node_topics(load_config(config, env={}), store, b"\x01" * 32,
                       [bytes.fromhex(other)]) == sorted(
        [control_topic(bytes.fromhex(org)), control_topic(bytes.fromhex(other))])


def test_relay_daemon_serves_a_room_and_its_attachment(tmp_path: Path) -> None:
    tcp_r, tcp_a = free_port(), free_port()
    cfg_a = make_org_node(tmp_path, "clinic-a", tcp_a, free_port())
    cfg_b = make_org_node(tmp_path, "clinic-b", free_port(), free_port())
    assert cli_main(["org", "init", str(tmp_path / "org-relay")]) == 0
    assert cli_main(["node", "init", str(tmp_path / "relay"), "--org",
                     str(tmp_path / "org-relay"), "--name", "relay", "--no-metrics",
                     "--tcp-listen", f"127.0.0.1:{tcp_r}"]) == 0  # no --api-port: no API
    cfg_r = tmp_path / "relay" / "p2pmsg.toml"
    flist, issuer = federation(tmp_path, {"A": cfg_a, "B": cfg_b, "R": cfg_r})
    governance = (f'\n[governance]\nfederation_list = "{flist}"\nissuer = "{issuer}"\n'
                  "reload_interval = 0.2\n\n[status]\ninterval = 0.2\n")
    relay_peer = f'\n[[peers]]\nid = "{device(cfg_r)}"\naddress = "tcp://127.0.0.1:{tcp_r}"\n'
    with cfg_a.open("a") as fh:
        fh.write(governance + relay_peer)
    with cfg_b.open("a") as fh:  # B fetches nothing by itself: the download below does
        fh.write(governance + relay_peer + "\n[attachments]\nfetch = false\n")
    with cfg_r.open("a") as fh:
        fh.write(governance + "\n[attachments]\nfetch = true\ninterval = 0.2\n")

    a, b, r = Daemon(cfg_a), Daemon(cfg_b), Daemon(cfg_r)
    with daemons(a, b, r):
        r.start()
        a.start()
        b.start()
        assert "api=off" in r.log.read_text()
        # B's certificate reaches A through R (control topics of listed organisations)
        created = retry(["rooms", "create", "-c", cfg_a, "--member", device(cfg_b),
                         "--name", "ward"], "ward", "B's certificate on A via R")
        room = created.split()[0]
        added = cli("rooms", "relay", "add", room, device(cfg_r), "--org", org_id(cfg_r),
                    "-c", cfg_a)
        assert added.returncode == 0, added.stderr
        marker = "relay-marker-" + os.urandom(8).hex()
        sent = cli("send", room, "-c", cfg_a, "--text", marker)
        assert sent.returncode == 0, sent.stderr
        report = tmp_path / "befund.pdf"
        data = os.urandom(300_000) + b"%PDF lab report"
        report.write_bytes(data)
        sent = cli("send", room, "-c", cfg_a, "--file", report)
        assert sent.returncode == 0, sent.stderr
        file_id = sent.stdout.split()[1]

        # R takes the invitation, replicates the room and fetches the blob by itself
        wait_until(lambda: "event=rooms_invited" in r.log.read_text(), "R's invitation")
        wait_until(lambda: "event=attachments_fetched" in r.log.read_text(), "R's fetch")

        # B never meets A: it gets the room from R alone. add_relay invited B again
        # naming R's organisation, so B's policy lets R hold the room before B has
        # any of its entries (invitation v2), and B asks R for it.
        retry(["read", room, "-c", cfg_b], marker, "the text on B")
        retry(["rooms", "relay", "list", room, "-c", cfg_b], device(cfg_r),
              "the relay declaration on B")

        assert a.signal(signal.SIGTERM) == 0  # the sender goes offline
        wait_until(lambda: (read_status(tmp_path / "clinic-b" / "data") or {}).get(
            "connected_peers") == [device(cfg_r)], "R as B's only peer")
        got = tmp_path / "got.pdf"
        downloaded = cli("download", room, file_id, "-c", cfg_b, "--out", got,
                         "--wait", "30")
        assert downloaded.returncode == 0, downloaded.stderr
        assert got.read_bytes() == data

        audit = cli("audit", "list", "-c", cfg_r, "--kind", "membership_changed")
        assert audit.returncode == 0, audit.stderr
        assert "relay_add" in audit.stdout, audit.stdout
        # ciphertext only on R: the marker is in no store file and not in its log
        # (nor a slice of the file in any file of its data directory: blobs too)
        assert (tmp_path / "relay" / "data" / "store.db-wal").exists()
        assert_ciphertext_only(tmp_path / "relay", [marker.encode(), data[1000:2000]])
        assert r.signal(signal.SIGTERM) == 0 and b.signal(signal.SIGTERM) == 0
    assert_ciphertext_only(tmp_path / "relay", [marker.encode(), data[1000:2000]])


def assert_ciphertext_only(directory: Path, secrets: list[bytes]) -> None:
    """No file under ``directory`` (store.db and its -wal, blobs, the daemon log)
    holds any of ``secrets``."""
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert directory / "data" / "store.db" in files and directory / "daemon.log" in files
    for path in files:
        content = path.read_bytes()
        for secret in secrets:
            assert secret not in content, path
