"""Prometheus rendering (pure) and the tiny /metrics HTTP server (trio, loopback)."""

from __future__ import annotations

import re

import trio

from p2pmsg.daemon.metrics import METRICS, render_metrics, serve_metrics
from p2pmsg.node import NodeStatistics

LINE = re.compile(r"^[a-z0-9_]+ -?[0-9.e+]+$")


def test_every_metric_reads_a_statistics_field_or_a_daemon_value() -> None:
    stat_fields = set(NodeStatistics.__slots__)
    daemon_values = {"peers", "stored_forks", "uptime"}
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
