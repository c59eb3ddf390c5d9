"""Prometheus text-format metrics, and a tiny HTTP server for them on a local port.

:func:`render_metrics` is pure (statistics in, text out) and is what the tests
check; :func:`serve_metrics` is a deliberately small trio HTTP/1.0 responder:
``GET /metrics`` answers 200 with the text, anything else 404/405, a request head
larger than 8 KiB gets 431, one slower than 5 s is dropped, and at most 16
connections are served at once. It is meant for localhost
scraping by Prometheus, not for the internet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

from .logsetup import event

__all__ = ["METRICS", "Metric", "PurgeCounts", "SyncLagTracker", "render_metrics",
           "serve_metrics"]

_MAX_REQUEST = 8192
_REQUEST_TIMEOUT = 5.0
_MAX_CONNECTIONS = 16
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Metric:
    """One exported series: its name, type, help text and the statistics field it reads."""

    name: str
    kind: str
    help: str
    source: str


METRICS: tuple[Metric, ...] = (
    Metric("p2pmsg_peers", "gauge", "Peers with a live session.", "peers"),
    Metric("p2pmsg_sessions", "gauge", "Sessions currently open.", "sessions"),
    Metric("p2pmsg_sessions_opened_total", "counter", "Sessions opened.", "sessions_opened"),
    Metric("p2pmsg_sessions_closed_total", "counter", "Sessions closed.", "sessions_closed"),
    Metric("p2pmsg_dial_attempts_total", "counter", "Outbound dials.", "dial_attempts"),
    Metric("p2pmsg_dial_failures_total", "counter", "Failed outbound dials.", "dial_failures"),
    Metric("p2pmsg_peers_refused_total", "counter",
           "Inbound connections refused by policy.", "peers_refused"),
    Metric("p2pmsg_protocol_errors_total", "counter",
           "Sessions ended because the peer broke the protocol.", "protocol_errors"),
    Metric("p2pmsg_bytes_sent_total", "counter", "Bytes sent to peers.", "bytes_sent"),
    Metric("p2pmsg_bytes_received_total", "counter",
           "Bytes received from peers.", "bytes_received"),
    Metric("p2pmsg_entries_appended_total", "counter",
           "Entries authored by this node.", "entries_appended"),
    Metric("p2pmsg_entries_received_total", "counter",
           "Entries newly stored from peers (entries in).", "entries_received"),
    Metric("p2pmsg_entries_sent_total", "counter",
           "Entries sent to peers in range answers (entries out).", "entries_sent"),
    Metric("p2pmsg_duplicate_entries_total", "counter",
           "Redundant deliveries of already stored entries.", "duplicate_entries"),
    Metric("p2pmsg_forks_total", "counter", "Fork proofs seen (author equivocation).", "forks"),
    Metric("p2pmsg_diverged_logs_total", "counter",
           "Conflicting entries below our head reported by sessions.", "diverged_logs"),
    Metric("p2pmsg_verification_failures_total", "counter",
           "Logs frozen for an invalid signature found by the deferred check.",
           "bad_signature_logs"),
    Metric("p2pmsg_lazy_verify_pending", "gauge",
           "Entries waiting for their deferred signature check (sync lag proxy).",
           "lazy_pending"),
    Metric("p2pmsg_lazy_verified_total", "counter",
           "Deferred signatures checked.", "lazy_verified"),
    Metric("p2pmsg_subscriber_overflows_total", "counter",
           "Subscribers ended for falling behind.", "subscriber_overflows"),
    Metric("p2pmsg_live_duplicates_total", "counter",
           "Entries pushed to us live that we already held.", "live_duplicates"),
    Metric("p2pmsg_live_dropped_total", "counter",
           "Live offers dropped by full send queues (healed by resync).", "live_dropped"),
    Metric("p2pmsg_resync_rounds_total", "counter",
           "Anti-entropy rounds after the first one.", "resync_rounds"),
    Metric("p2pmsg_stored_forks", "gauge",
           "Fork proofs recorded in the store (persisted).", "stored_forks"),
    Metric("p2pmsg_uptime_seconds", "gauge", "Seconds since the daemon started.", "uptime"),
    Metric("p2pmsg_sync_lag_seconds", "gauge",
           "Seconds since an entry from a peer was last seen stored (sampled per scrape).",
           "sync_lag"),
    Metric("p2pmsg_purge_runs_total", "counter",
           "Retention purge runs by the daemon's [governance] timer.", "purge_runs"),
    Metric("p2pmsg_purged_payloads_total", "counter",
           "Payloads erased by the daemon's retention purge.", "purged_payloads"),
    Metric("p2pmsg_purge_held_total", "counter",
           "Payloads due for purge but kept by a legal hold (summed over runs).", "purge_held"),
    Metric("p2pmsg_purged_blobs_total", "counter",
           "Attachment blobs deleted by retention (with their message, or past the limit).",
           "purged_blobs"),
    Metric("p2pmsg_keys_shredded_total", "counter",
           "Epoch keys forgotten by retention because no stored message needs them.",
           "keys_shredded"),
    Metric("p2pmsg_audit_pruned_total", "counter",
           "Audit records deleted by the audit log's own retention.", "audit_pruned"),
    Metric("p2pmsg_redactions_applied_total", "counter",
           "Redactions that erased something on this node (members and relays).",
           "redactions_applied"),
    Metric("p2pmsg_changes_audited_total", "counter",
           "Membership, key and revocation changes written to the audit log.",
           "changes_audited"),
    Metric("p2pmsg_attachments_fetched_total", "counter",
           "Attachment blobs fetched for serving ([attachments] fetch).",
           "attachments_fetched"),
)


@dataclass(slots=True)
class PurgeCounts:
    """What the daemon's governance did since start — retention runs, redactions,
    audited changes — and the attachment fetcher (``run`` feeds it, metrics read it)."""

    runs: int = 0
    erased: int = 0
    held: int = 0
    blobs: int = 0
    keys: int = 0
    audit_pruned: int = 0
    redactions: int = 0
    changes: int = 0
    fetched: int = 0
    """Blobs fetched by the attachment fetcher (counted even without governance)."""

    def record(self, erased: int, held: int, *, blobs: int = 0, keys: int = 0,
               audit_pruned: int = 0) -> None:
        """Count one finished purge run."""
        self.runs += 1
        self.erased += erased
        self.held += held
        self.blobs += blobs
        self.keys += keys
        self.audit_pruned += audit_pruned

    def values(self) -> dict[str, float]:
        """The metric values (see :data:`METRICS`)."""
        return {"purge_runs": float(self.runs), "purged_payloads": float(self.erased),
                "purge_held": float(self.held), "purged_blobs": float(self.blobs),
                "keys_shredded": float(self.keys), "audit_pruned": float(self.audit_pruned),
                "redactions_applied": float(self.redactions),
                "changes_audited": float(self.changes),
                "attachments_fetched": float(self.fetched)}


class SyncLagTracker:
    """Seconds since ``entries_received`` last increased, as seen by :meth:`observe`.

    Counted from the first sample that showed the current count (from start while
    it is zero).

    The node does not expose remote heights, so "lag" here is observable staleness:
    the time since the daemon last *saw* (at a sample, i.e. a scrape) the count of
    entries newly stored from peers go up, or since start if it never did. Its
    resolution is the sampling interval; on a quiet federation it grows too, so
    read it together with ``p2pmsg_peers``.
    """

    def __init__(self, now: float) -> None:
        self._count: int | None = None
        self._since = now

    def observe(self, entries_received: int, now: float) -> float:
        """Record a sample; returns the lag in seconds (never negative)."""
        seen = self._count if self._count is not None else 0
        if entries_received > seen:
            self._since = now
        if self._count is None or entries_received > seen:
            self._count = entries_received
        return max(0.0, round(now - self._since, 3))


def render_metrics(values: dict[str, float]) -> str:
    """Prometheus text exposition of ``values`` (statistics field -> number).

    Fields absent from ``values`` are not exported (no made-up zeros).
    """
    lines: list[str] = []
    for m in METRICS:
        if m.source not in values:
            continue
        value = values[m.source]
        lines.append(f"# HELP {m.name} {m.help}")
        lines.append(f"# TYPE {m.name} {m.kind}")
        text = repr(float(value)) if isinstance(value, float) and not value.is_integer() \
            else str(int(value))
        lines.append(f"{m.name} {text}")
    return "\n".join(lines) + "\n"


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


async def _handle(stream: trio.SocketStream, collect: Callable[[], dict[str, float]]) -> None:
    try:
        buf = b""
        with trio.move_on_after(_REQUEST_TIMEOUT):
            while b"\r\n\r\n" not in buf and b"\n\n" not in buf and len(buf) <= _MAX_REQUEST:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                buf += chunk
        answer = _answer(buf, collect)
        if answer is not None:
            await stream.send_all(answer)
            await _linger(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


def _answer(buf: bytes, collect: Callable[[], dict[str, float]]) -> bytes | None:
    """The response to a request head, or None to just close (timeout, empty)."""
    if len(buf) > _MAX_REQUEST:
        return _response("431 Request Header Fields Too Large", b"too large\n")
    if b"\n" not in buf:
        return None
    request_line = buf.split(b"\n", 1)[0].strip().split()
    if len(request_line) != 3 or not request_line[2].startswith(b"HTTP/"):
        return _response("400 Bad Request", b"bad request\n")
    method, target = request_line[0], request_line[1]
    if target.split(b"?", 1)[0] != b"/metrics":
        return _response("404 Not Found", b"not found; try /metrics\n")
    if method not in (b"GET", b"HEAD"):
        return _response("405 Method Not Allowed", b"GET only\n")
    try:
        values = collect()
    except Exception as exc:  # a metrics bug must never take the node down
        event("metrics_failed", logging.ERROR, error=type(exc).__name__)
        return _response("500 Internal Server Error", b"metrics unavailable\n")
    body = render_metrics(values).encode("utf-8")
    full = _response("200 OK", body, CONTENT_TYPE)
    return full[: len(full) - len(body)] if method == b"HEAD" else full


async def _linger(stream: trio.SocketStream) -> None:
    """Half-close, then drain what the client still sends (bounded), so closing with
    unread input does not reset the connection before the client read our answer."""
    await stream.send_eof()
    drained = 0
    with trio.move_on_after(1.0):
        while drained < 4 * _MAX_REQUEST:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            drained += len(chunk)


async def serve_metrics(
    host: str, port: int, collect: Callable[[], dict[str, float]],
    *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` on ``host:port`` until cancelled; reports the bound address."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    sockname = listeners[0].socket.getsockname()
    bound = (str(sockname[0]), int(sockname[1]))
    event("metrics_listening", logging.INFO, address=f"{bound[0]}:{bound[1]}")
    async with trio.open_nursery() as nursery:
        task_status.started(bound)
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, collect)


async def _accept_loop(
    listener: trio.SocketListener, collect: Callable[[], dict[str, float]]
) -> None:
    slots = trio.Semaphore(_MAX_CONNECTIONS)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            await _handle(stream, collect)
        finally:
            slots.release()

    async with listener, trio.open_nursery() as nursery:
        while True:
            await slots.acquire()
            stream = await listener.accept()
            nursery.start_soon(handle, stream)
