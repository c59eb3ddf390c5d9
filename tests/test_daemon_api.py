"""The daemon's ``[api]`` section, static-page lookup, node topics and sync progress."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pmsg.daemon import api as daemon_api
from p2pmsg.daemon.config import STATIC_AUTO, ConfigError, load_config
from p2pmsg.daemon.progress import (
    TransferProgress,
    format_bytes,
    format_progress,
    format_transfer,
    report_initial_sync,
)
from p2pmsg.messaging import control_topic
from p2pmsg.node import NodeStatistics
from p2pmsg.store.memory import MemoryStore

ORG = "11" * 32
OTHER = "22" * 32


def write(tmp_path: Path, api: str, node_extra: str = f'org_id = "{ORG}"\n') -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    path = tmp_path / "p2pmsg.toml"
    path.write_text(f'[node]\nkey = "node.key"\ndata_dir = "data"\n{node_extra}\n[api]\n{api}')
    return path


def test_api_defaults_and_fields(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""), env={})
    assert not cfg.api.enabled and cfg.api.port == 8470 and cfg.api.static_dir == STATIC_AUTO
    assert cfg.api_token_file == tmp_path / "data" / "api.token"
    cfg = load_config(write(tmp_path, f'enabled = true\nport = 0\nhost = "::1"\n'
                                      f'token_file = "tok"\nunix_socket = "api.sock"\n'
                                      f'static_dir = ""\norgs = ["{OTHER}"]\n'), env={})
    assert cfg.api.enabled and cfg.api.port == 0 and cfg.api.host == "::1"
    assert cfg.api_token_file == tmp_path / "tok" and cfg.api.unix_socket == tmp_path / "api.sock"
    assert cfg.api.static_dir is None and cfg.api.orgs == (bytes.fromhex(OTHER),)


def test_api_environment_overrides(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""), env={
        "P2PMSG_API_ENABLED": "true", "P2PMSG_API_PORT": "9001", "P2PMSG_API_ORGS": OTHER})
    assert cfg.api.enabled and cfg.api.port == 9001 and cfg.api.orgs == (bytes.fromhex(OTHER),)
    with pytest.raises(ConfigError, match="P2PMSG_API_PORT: expected an integer"):
        load_config(write(tmp_path, ""), env={"P2PMSG_API_PORT": "x"})


@pytest.mark.parametrize(("api", "message"), [
    ('host = "0.0.0.0"', "api.host: must be a loopback address"),
    ('host = "example.org"', "api.host: must be a loopback address"),
    ("port = 70000", "api.port: 70000 out of range"),
    ("port = true", "api.port: expected int"),
    ('orgs = ["abcd"]', "api.orgs: expected 64 hex digits"),
    ("colour = 1", "api.colour: unknown field"),
])
def test_api_bad_fields(tmp_path: Path, api: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, api + "\n"), env={})


def test_api_needs_an_organisation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"api\.enabled needs node\.org_id"):
        load_config(write(tmp_path, "enabled = true\n", node_extra=""), env={})


def test_static_dir_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert daemon_api.find_static_dir(None) is None
    with pytest.raises(ConfigError, match="is not a directory"):
        daemon_api.find_static_dir(tmp_path / "missing")
    assert daemon_api.find_static_dir(tmp_path) == tmp_path
    empty, page = tmp_path / "empty", tmp_path / "page"
    empty.mkdir()
    page.mkdir()
    (page / "index.html").write_text("<html></html>")
    monkeypatch.setattr(daemon_api, "static_candidates", lambda: [empty, page])
    assert daemon_api.find_static_dir(STATIC_AUTO) == page
    monkeypatch.setattr(daemon_api, "static_candidates", lambda: [empty])
    assert daemon_api.find_static_dir(STATIC_AUTO) is None


def test_the_source_checkout_page_is_a_candidate() -> None:
    repo = Path(__file__).resolve().parent.parent
    assert repo / "examples" / "ward-chat" in daemon_api.static_candidates()


def test_node_topics_add_control_topics_only_with_the_api(tmp_path: Path) -> None:
    store = MemoryStore()
    off = load_config(write(tmp_path, ""), env={})
    assert daemon_api.node_topics(off, store, b"\x01" * 32, [bytes.fromhex(OTHER)]) == []
    on = load_config(write(tmp_path, "enabled = true\n"), env={})
    topics = daemon_api.node_topics(on, store, b"\x01" * 32, [bytes.fromhex(OTHER)])
    assert topics == sorted([control_topic(bytes.fromhex(ORG)),
                             control_topic(bytes.fromhex(OTHER))])


def test_progress_formatting() -> None:
    assert format_bytes(0) == "0 B" and format_bytes(1536) == "1.5 KiB"
    assert format_bytes(5 * 1024**3) == "5.0 GiB"
    line = format_progress(1, 2, 12345, 2048, 3.14159)
    assert line == "initial sync: 1/2 peers, 12,345 entries (2.0 KiB) received, 3.1 s"
    assert format_progress(2, 2, 1, 1, 0.0, done=True).startswith("initial sync done: 2/2")


class FakeNode:
    """What report_initial_sync reads: statistics, connected peers, wait_converged."""

    def __init__(self) -> None:
        self.stats = NodeStatistics()
        self.peers: list[bytes] = []
        self.topics = [b"t" * 32]
        self.converged = trio.Event()

    def statistics(self) -> NodeStatistics:
        return self.stats

    def connected_peers(self) -> list[bytes]:
        return list(self.peers)

    async def wait_converged(self, peers: Any, topics: Any) -> None:
        await self.converged.wait()


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_on_a_terminal_rewrites_one_line(caplog: pytest.LogCaptureFixture) -> None:
    node, out = FakeNode(), TtyStream()
    peer = b"p" * 32
    caplog.set_level(logging.INFO, logger="p2pmsg")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: report_initial_sync(node, [peer], stream=out,  # type: ignore[arg-type]
                                                       tty_interval=0.01))
        await trio.sleep(0.05)
        node.peers = [peer]
        node.stats.entries_received = 42
        node.stats.bytes_received = 4096
        await trio.sleep(0.05)
        node.converged.set()
    text = out.getvalue()
    assert text.count("\r\x1b[K") >= 2 and text.endswith("\n") and text.count("\n") == 1
    assert "initial sync: 0/1 peers, 0 entries" in text
    assert "initial sync done: 1/1 peers, 42 entries (4.0 KiB) received" in text
    assert any("initial_sync_done" in r.getMessage() for r in caplog.records)


async def test_progress_without_a_terminal_logs_plain_lines(
        caplog: pytest.LogCaptureFixture) -> None:
    node, out = FakeNode(), io.StringIO()
    caplog.set_level(logging.INFO, logger="p2pmsg")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: report_initial_sync(node, [b"p" * 32], stream=out,  # type: ignore[arg-type]
                                                       log_interval=0.01))
        await trio.sleep(0.1)
        node.converged.set()
    assert out.getvalue() == ""
    messages = [r.getMessage() for r in caplog.records]
    assert any("sync_progress" in m for m in messages)
    assert any("initial_sync_done" in m for m in messages)


async def test_no_static_peers_reports_nothing(caplog: pytest.LogCaptureFixture) -> None:
    out = TtyStream()
    caplog.set_level(logging.INFO, logger="p2pmsg")
    await report_initial_sync(FakeNode(), [], stream=out)  # type: ignore[arg-type]
    assert out.getvalue() == "" and not caplog.records


def test_transfer_line_formatting() -> None:
    assert format_transfer("uploading", "a.pdf", 3_200_000, 10_000_000) == \
        "uploading a.pdf 3.2/10.0 MB 32%"
    assert format_transfer("downloading", "x", 512, 2048) == "downloading x 0.5/2.0 kB 25%"
    assert format_transfer("uploading", "x", 7, 10) == "uploading x 7/10 B 70%"
    assert format_transfer("downloading", "x", 3_200_000, None) == "downloading x 3.2 MB"
    assert format_transfer("uploading", "x", 10, 10).endswith(" 100%")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_transfer_progress_on_a_terminal_rewrites_one_line() -> None:
    out, clock = TtyStream(), FakeClock()
    shown = TransferProgress("uploading", "a.pdf", 10_000_000, out, tty_interval=0.1,
                             clock=clock)
    shown.update(1_000_000)
    shown.update(2_000_000)  # same instant: rate-limited, not drawn
    clock.now = 0.2
    shown.update(3_200_000)
    shown.finish(10_000_000)
    text = out.getvalue()
    assert text == ("\r\x1b[Kuploading a.pdf 1.0/10.0 MB 10%"
                    "\r\x1b[Kuploading a.pdf 3.2/10.0 MB 32%"
                    "\r\x1b[Kuploading a.pdf 10.0/10.0 MB 100%\n")


def test_transfer_progress_abort_erases_the_terminal_line() -> None:
    out = TtyStream()
    shown = TransferProgress("downloading", "b", 100, out, clock=FakeClock())
    shown.update(40)
    shown.abort()
    assert out.getvalue().endswith("\r\x1b[K") and "\n" not in out.getvalue()


def test_transfer_progress_without_a_terminal_prints_plain_lines_sparingly() -> None:
    out, clock = io.StringIO(), FakeClock()
    shown = TransferProgress("downloading", "b.bin", 1000, out, plain_interval=5.0,
                             clock=clock)
    for step in range(1, 10):
        clock.now = step  # one update per second
        shown.update(step * 100)
    shown.finish(1000)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == ["downloading b.bin 0.5/1.0 kB 50%", "downloading b.bin 1.0/1.0 kB 100%"]


def test_transfer_progress_without_a_terminal_quick_transfer_prints_only_the_end() -> None:
    out = io.StringIO()
    shown = TransferProgress("uploading", "c", None, out, clock=FakeClock())
    shown.update(10)
    shown.finish()
    assert out.getvalue() == "uploading c 10 B\n"
