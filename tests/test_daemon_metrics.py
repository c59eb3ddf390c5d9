"""Prometheus rendering (pure) and the tiny /metrics HTTP server (trio, loopback)."""

from __future__ import annotations

import re

import trio

from p2pmsg.daemon.metrics import (
    METRICS,
    PurgeCounts,
    SyncLagTracker,
    render_metrics,
    serve_metrics,
)
from p2pmsg.daemon.run import collect_values
from p2pmsg.node import NodeStatistics
from p2pmsg.store.memory import MemoryStore

LINE = re.compile(r"^[a-z0-9_]+ -?[0-9.e+]+$")


def test_every_metric_reads_a_statistics_field_or_a_daemon_value() -> None:
    stat_fields = set(NodeStatistics.__slots__)
    daemon_values = {"peers", "stored_forks", "uptime", "sync_lag", "purge_runs",
                     "purged_payloads", "purge_held"} | set(PurgeCounts().values())
    for m in METRICS:
        assert m.source in stat_fields | daemon_values, m
        assert m.kind in ("gauge", "counter")
        assert m.name.startswith("p2pmsg_")
        assert (m.kind == "counter") == m.name.endswith("_total"), m


def test_render_is_valid_exposition_format() -> None:
    values = {m.source: float(i) for i, m in enumerate(METRICS)}
    values["uptime"] = 1.5
    text = render_metrics(values)
    lines = text.splitlines()
    samples = [ln for ln in lines if not ln.startswith("#")]
    assert len(samples) == len(METRICS)
    for m in METRICS:
        assert f"# TYPE {m.name} {m.kind}" in lines
    for ln in samples:
        assert LINE.match(ln), ln
    assert "p2pmsg_uptime_seconds 1.5" in lines
    assert "p2pmsg_forks_total " + str(int(values["forks"])) in lines
    assert text.endswith("\n")


def test_absent_values_are_not_exported() -> None:
    text = render_metrics({"forks": 3.0})
    assert text.splitlines()[-1] == "p2pmsg_forks_total 3"
    assert "p2pmsg_peers" not in text


async def _request(port: int, data: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        out = b""
        while chunk := await stream.receive_some(65536):
            out += chunk
    return out


async def test_http_endpoint_serves_metrics_and_404s_the_rest() -> None:
    calls: list[int] = []

    def collect() -> dict[str, float]:
        calls.append(1)
        return {"sessions": 2.0, "forks": 1.0}

    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(serve_metrics, "127.0.0.1", 0, collect)
        assert host == "127.0.0.1" and port > 0
        ok = await _request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = ok.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200 OK")
        assert b"text/plain; version=0.0.4" in head
        assert b"p2pmsg_sessions 2\n" in body and b"p2pmsg_forks_total 1\n" in body
        assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) == len(body)  # type: ignore[union-attr]
        assert calls == [1]
        missing = await _request(port, b"GET / HTTP/1.1\r\n\r\n")
        assert missing.startswith(b"HTTP/1.0 404")
        post = await _request(port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert post.startswith(b"HTTP/1.0 405")
        huge = await _request(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000)
        assert huge.startswith(b"HTTP/1.0 431")
        garbage = await _request(port, b"\x00\x01 nonsense\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.0 400")
        assert calls == [1]
        nursery.cancel_scope.cancel()


def test_purge_counts_accumulate_over_runs_and_render_as_counters() -> None:
    counts = PurgeCounts()
    text = render_metrics(counts.values())
    assert "p2pmsg_purge_runs_total 0" in text.splitlines()
    counts.record(erased=3, held=1)
    counts.record(erased=4, held=0)
    lines = render_metrics(counts.values()).splitlines()
    assert "# TYPE p2pmsg_purged_payloads_total counter" in lines
    assert "p2pmsg_purged_payloads_total 7" in lines
    assert "p2pmsg_purge_runs_total 2" in lines
    assert "p2pmsg_purge_held_total 1" in lines


def test_governance_counters_render_as_counters() -> None:
    counts = PurgeCounts()
    counts.record(erased=1, held=0, blobs=2, keys=3, audit_pruned=4)
    counts.record(erased=0, held=0, blobs=1)
    counts.redactions, counts.changes, counts.fetched = 5, 6, 7
    lines = render_metrics(counts.values()).splitlines()
    for line in ("p2pmsg_purged_blobs_total 3", "p2pmsg_keys_shredded_total 3",
                 "p2pmsg_audit_pruned_total 4", "p2pmsg_redactions_applied_total 5",
                 "p2pmsg_changes_audited_total 6", "p2pmsg_attachments_fetched_total 7",
                 "# TYPE p2pmsg_redactions_applied_total counter"):
        assert line in lines, line


def test_purge_series_absent_without_governance() -> None:
    assert "purge" not in render_metrics({"sessions": 1.0})


def test_sync_lag_counts_from_start_until_an_entry_arrives() -> None:
    lag = SyncLagTracker(now=100.0)
    assert lag.observe(0, now=100.0) == 0.0
    assert lag.observe(0, now=130.0) == 30.0
    assert lag.observe(5, now=140.0) == 0.0  # entries arrived since the last sample
    assert lag.observe(5, now=150.5) == 10.5
    assert lag.observe(6, now=160.0) == 0.0
    assert lag.observe(6, now=161.0) == 1.0


def test_sync_lag_first_sample_with_entries_counts_from_that_sample() -> None:
    lag = SyncLagTracker(now=0.0)
    assert lag.observe(12, now=50.0) == 0.0
    assert lag.observe(12, now=80.0) == 30.0


def test_sync_lag_renders_as_a_fractional_gauge() -> None:
    lag = SyncLagTracker(now=0.0)
    lines = render_metrics({"sync_lag": lag.observe(0, now=2.25)}).splitlines()
    assert "# TYPE p2pmsg_sync_lag_seconds gauge" in lines
    assert "p2pmsg_sync_lag_seconds 2.25" in lines


class _StatsNode:
    def __init__(self) -> None:
        self.stats = NodeStatistics(entries_received=4)

    def statistics(self) -> NodeStatistics:
        return self.stats

    def connected_peers(self) -> list[bytes]:
        return [b"p" * 32]


def test_daemon_values_include_lag_and_purges_only_when_given() -> None:
    node, store = _StatsNode(), MemoryStore()
    plain = collect_values(node, store, 0.0)  # type: ignore[arg-type]
    assert "sync_lag" not in plain and "purge_runs" not in plain
    counts = PurgeCounts()
    counts.record(erased=2, held=0)
    values = collect_values(node, store, 0.0, lag=SyncLagTracker(0.0),  # type: ignore[arg-type]
                            purges=counts)
    assert values["purged_payloads"] == 2.0 and values["purge_runs"] == 1.0
    assert values["sync_lag"] == 0.0  # first sample already shows received entries
    assert values["peers"] == 1.0 and values["entries_received"] == 4.0
    assert "p2pmsg_purged_payloads_total 2" in render_metrics(values).splitlines()
