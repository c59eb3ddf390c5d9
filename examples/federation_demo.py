"""The three-stage federation demo: four ``p2pmsg run`` daemons on this machine.

What it starts (separate processes, each in its own directory under one temp dir):

1. **St. Anna Hospital**, two wards (``ward-a``, ``ward-b``) that find each other by
   mDNS alone on 127.0.0.1 (neither lists the other in ``[[peers]]``);
2. an external **specialist clinic** (another organisation) that ``ward-a`` reaches
   over QUIC at a configured ``quic://127.0.0.1:PORT``;
3. a **pharmacy** (a third organisation) that ``ward-a`` reaches over TCP.

**Enforcement of the list.** Every daemon's ``[governance]`` trusts only the
issuer of the signed federation list and enforces it (need-to-know replication,
control topics readable by listed organisations only). ``--allow-all`` runs the
daemons with ``[policy] allow_all = true`` instead, for comparison.

Every organisation and node is created with the CLI (``org init``, ``node init``);
an issuer key signs one federation list (``federation issue``) naming all three
organisations (every daemon's ``[governance]`` trusts only that issuer). Rooms are
created with ``rooms create``, texts sent with ``send`` and read with ``read``;
the redaction goes through the local HTTP API (``kind: redact``). The retention
purge runs ``retention purge`` on the stopped ``ward-b`` with a 0-day retention for
the ward room, then restarts it.

Files (a WAV voice note, a PNG image, a PDF document) are generated locally. If
the API's attachment upload answers (``POST /v1/rooms/{room}/attachments``) they
are uploaded and downloaded on the receiver (SHA-256 compared); if it answers an
error they are sent as text placeholders naming the file, its size and SHA-256 —
the transcript and the figures say which.

Prints a transcript (what each node's ``read`` shows per room), the figures (time
from send to visible on the other node, polled every 20 ms; bytes from each
daemon's metrics endpoint) and a ✓/✗ checklist. Exits 0 only if every check passed.
Always stops the daemons (SIGTERM, then kill) and removes the temp dir.

Run: ``.venv/bin/python examples/federation_demo.py [--keep] [--allow-all]``
(``--keep`` keeps the temp dir and its daemon logs).
Reading the output: docs/demo.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import wave
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["main"]

START_TIMEOUT = 30.0
"""Liveness bound for one step (a daemon start, a delivery); not a speed claim."""
POLL = 0.02
RELOAD_INTERVAL = 0.3
"""``[governance] reload_interval``: how soon a daemon's policy learns a new room."""

HOSPITAL = "St. Anna Hospital"
SPECIALIST = "Cardiology Practice Dr. Weber"
PHARMACY = "Stadt-Apotheke am Markt"


UPLOADED: dict[str, tuple[Path, str]] = {}
"""message id -> (file, sha256 hex) of every attachment uploaded."""


class DemoError(Exception):
    """A step failed; the message says which and why."""


# -- small helpers ---------------------------------------------------------------


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("P2PMSG_")}


def cli(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m p2pmsg ARGS``; raise DemoError with its stderr if it fails."""
    result = subprocess.run([sys.executable, "-m", "p2pmsg", *map(str, args)],
                            capture_output=True, text=True, timeout=60, env=_env(),
                            check=False)
    if check and result.returncode != 0:
        raise DemoError(f"p2pmsg {' '.join(map(str, args[:3]))} exited "
                        f"{result.returncode}: {result.stderr.strip()[-400:]}")
    return result


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], what: str,
             timeout: float = START_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(POLL)
    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Node:
    """One node directory and, once started, its ``p2pmsg run`` process."""

    name: str
    org: str
    directory: Path
    api_port: int
    metrics_port: int
    node_id: str = ""
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    log_offset: int = 0
    extra: list[str] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.directory / "p2pmsg.toml"

    @property
    def log(self) -> Path:
        return self.directory / "daemon.log"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def start(self) -> None:
        if not any(n is self for n in _LIVE):
            _LIVE.append(self)
        with open(self.log, "ab") as err:
            self.log_offset = err.tell()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "p2pmsg", "run", "-c", str(self.config)],
                stdout=subprocess.DEVNULL, stderr=err, env=_env())

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise DemoError(f"{self.name}: daemon exited {self.proc.returncode}: "
                                f"{self.log_text()[-600:]}")
            return "event=ready" in self.log_text()
        wait_for(ready, f"{self.name} to be ready")
        self.token = (self.data_dir / "api.token").read_text().strip()

    def log_text(self) -> str:
        with open(self.log, "rb") as fh:
            fh.seek(self.log_offset)
            return fh.read().decode("utf-8", "replace")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed. Returns the exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                return -9
        return proc.returncode

    # -- the local API and metrics -------------------------------------------------

    def api(self, method: str, path: str, body: Any = None,
            raw: bytes | None = None, content_type: str = "application/json",
            ) -> tuple[int, Any]:
        data = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}",
                     **({"Content-Type": content_type} if data is not None else {})})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read().decode()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            try:
                return exc.code, json.loads(text)
            except ValueError:
                return exc.code, {"error": text}

    def download(self, room: str, message: str) -> tuple[int, bytes]:
        """``GET .../messages/{message}/attachment?wait=20``: status and body."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}/v1/rooms/{room}/messages/{message}"
            f"/attachment?wait=20", headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=40) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def messages(self, room: str) -> list[dict[str, Any]]:
        status, answer = self.api("GET", f"/v1/rooms/{room}/messages?limit=100")
        if status != 200 or not isinstance(answer, dict):
            return []
        return list(answer.get("messages", []))

    def metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.data_dir / "status.json").read_text()))
        except (OSError, ValueError):
            return {}

    def connected(self, other: Node) -> bool:
        return other.node_id in self.status().get("connected_peers", [])


# -- locally generated files ----------------------------------------------------------


def make_wav(path: Path, seconds: float = 1.0, hz: float = 440.0) -> None:
    """A mono 16-bit 8 kHz sine wave: a stand-in for a dictated voice note."""
    rate = 8000
    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * i / rate)))
        for i in range(int(rate * seconds)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)


def make_png(path: Path, width: int = 64, height: int = 64) -> None:
    """An RGB gradient PNG written by hand (signature, IHDR, IDAT, IEND)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 4, y * 4, 128))
        for y in range(height))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def make_pdf(path: Path) -> None:
    """A one-page PDF (synthetic discharge letter) with a correct xref table."""
    text = "BT /F1 14 Tf 72 720 Td (Discharge letter - synthetic demo data) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text.encode()),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    path.write_bytes(bytes(out))


# -- the demo -------------------------------------------------------------------------


@dataclass
class Report:
    checks: list[tuple[bool, str]] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)

    def check(self, ok: bool, text: str) -> bool:
        self.checks.append((ok, text))
        print(f"  {'✓' if ok else '✗'} {text}", flush=True)
        return ok


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def patch_config(node: Node, *, quic: int | None = None, tcp: int | None = None,
                 mdns: bool = False, peers: list[tuple[Node, str]] = (),  # type: ignore[assignment]
                 governance: str = "") -> None:
    """Edit the ``node init`` config: transports, mDNS, peers, governance, status."""
    text = node.config.read_text()
    listen = ""
    if quic is not None:
        listen += f'\n[quic]\nlisten = "127.0.0.1:{quic}"\n'
    if tcp is not None:
        listen += f'\n[tcp]\nlisten = "127.0.0.1:{tcp}"\n'
    text = text.replace('# [quic]\n# listen = "0.0.0.0:4433"\n', listen)
    if mdns:
        text = text.replace("[mdns]\nenabled = false",
                            '[mdns]\nenabled = true\ninterfaces = ["127.0.0.1"]')
    text += "\n[status]\ninterval = 0.2\n"
    for peer, address in peers:
        text += f'\n[[peers]]\nid = "{peer.node_id}"\naddress = "{address}"\n'
    text += governance
    node.config.write_text(text)


def federation_description(root: Path, orgs: dict[str, Path],
                           nodes: list[Node], addresses: dict[str, str]) -> Path:
    kinds = {HOSPITAL: "hospital", SPECIALIST: "clinic", PHARMACY: "pharmacy"}
    text = "version = 1\nmax_age_hours = 72\n"
    for name, directory in orgs.items():
        members = [n for n in nodes if n.org == name]
        text += (f'\n[[organisations]]\nid = "{(directory / "org.id").read_text().strip()}"\n'
                 f'name = "{name}"\nkind = "{kinds[name]}"\n'
                 f"nodes = {json.dumps([n.node_id for n in members])}\n"
                 f"addresses = {json.dumps([addresses[n.name] for n in members])}\n")
    path = root / "federation.toml"
    path.write_text(text)
    return path


def exchange_certificates(orgs: dict[str, Path], nodes: list[Node]) -> int:
    """Copy each organisation's control log (its root-signed device certificates,
    public data) into the stores of the *other* organisations' nodes.

    Why: under ``[governance]`` a node hands its organisation's control topic only to
    organisations that already share a room with it, but ``rooms create`` needs the
    member's certificate from that very topic — a first cross-organisation room
    cannot be created over the network alone (reported to the lead). This stands in
    for exchanging certificates at federation enrolment; done before the daemons
    start (one writer per store)."""
    from p2pmsg.messaging import control_topic
    from p2pmsg.store.sqlite import SqliteStore

    logs: dict[str, tuple[list[Any], dict[bytes, bytes]]] = {}
    for name, directory in orgs.items():
        org_key = bytes.fromhex((directory / "org.id").read_text().strip())
        topic = control_topic(org_key)
        with SqliteStore(directory / "control.db") as log:
            head = log.head(org_key, topic)
            entries = [] if head is None else log.get_range(org_key, topic, 1,
                                                            head.header.seq)
            payloads = {e.id: p for e in entries
                        if isinstance(p := log.get_payload(e.id), bytes)}
        logs[name] = (entries, payloads)
    count = 0
    for n in nodes:
        with SqliteStore(n.data_dir / "store.db") as store:
            for name, (entries, payloads) in logs.items():
                if name != n.org and entries:
                    store.append(entries, payloads)
                    count += len(entries)
    return count


def deliver(report: Report, label: str, sender: Node, receivers: list[Node], room: str, *,
            send: Callable[[], str],
            visible: Callable[[dict[str, Any]], bool] | None = None) -> str | None:
    """Send (``send`` returns the message id), then poll each receiver until the
    message is visible there; record time and the receiver's received bytes."""
    before = {r.name: r.metrics().get("p2pmsg_bytes_received_total", 0.0) for r in receivers}
    t0 = time.monotonic()
    try:
        msg_id = send()
    except DemoError as exc:
        report.check(False, f"{label}: send failed: {exc}")
        return None
    sent = time.monotonic()
    ok = True
    for r in receivers:
        def seen(r: Node = r) -> bool:
            for m in r.messages(room):
                if m.get("id") == msg_id and (visible is None or visible(m)):
                    return True
            return False
        try:
            wait_for(seen, f"{label} on {r.name}")
            dt = time.monotonic() - sent
            rx = r.metrics().get("p2pmsg_bytes_received_total", 0.0) - before[r.name]
            report.figures.append(f"{label:<44} {sender.name:>10} → {r.name:<10} "
                                  f"{dt * 1000:5.0f} ms after the send returned (send "
                                  f"{1000 * (sent - t0):4.0f} ms; {rx:5.0f} B received)")
        except DemoError as exc:
            report.check(False, f"{label}: {exc}")
            raise DemoError(f"{label} was not delivered; stopping here") from None
    if ok:
        report.check(True, f"{label}: {sender.name} → {', '.join(r.name for r in receivers)}")
    return msg_id


def send_text(node: Node, room: str, text: str) -> Callable[[], str]:
    def run() -> str:
        out = cli("send", room, "-c", node.config, "--text", text).stdout
        match = re.search(r"sent ([0-9a-f]{64})", out)
        if not match:
            raise DemoError(f"unexpected send output {out!r}")
        return match.group(1)
    return run


def send_file(report: Report, node: Node, room: str, path: Path, *, kind: str,
              mime: str) -> Callable[[], str]:
    """Upload if the API takes attachments, else a text placeholder (said so)."""
    def run() -> str:
        data = path.read_bytes()
        label = {"voice note": "voice", "image": "image"}.get(kind, "document")
        status, answer = node.api(
            "POST", f"/v1/rooms/{room}/attachments?kind={label}&name={path.name}"
                    f"&mime={urllib.parse.quote(mime)}", raw=data, content_type=mime)
        if status in (200, 201) and isinstance(answer, dict) and "id" in answer:
            UPLOADED[str(answer["id"])] = (path, hashlib.sha256(data).hexdigest())
            return str(answer["id"])
        digest = hashlib.sha256(data).hexdigest()[:16]
        placeholder = (f"[{kind} placeholder — attachment upload answered HTTP {status}] "
                       f"{path.name}, {len(data)} bytes, {mime}, sha256 {digest}…")
        report.figures.append(f"{kind}: sent as a text placeholder (upload: HTTP {status})")
        return send_text(node, room, placeholder)()
    return run


def create_room(creator: Node, member: Node, name: str) -> str:
    """``rooms create``, retried until the member's certificate has replicated."""
    last = ""

    def attempt() -> str | None:
        nonlocal last
        result = cli("rooms", "create", "-c", creator.config, "--member", member.node_id,
                     "--name", name, check=False)
        if result.returncode == 0 and re.match(r"[0-9a-f]{64}", result.stdout):
            return result.stdout.split()[0]
        last = (result.stderr or result.stdout).strip()
        time.sleep(0.2)
        return None
    try:
        return str(wait_for(attempt, f"room {name}"))
    except DemoError as exc:
        raise DemoError(f"{exc} (last: {last})") from None


def run_demo(root: Path, report: Report, *, enforce: bool) -> None:
    step("organisations and nodes (p2pmsg org init / node init)")
    orgs = {name: root / f"org-{slug}" for name, slug in
            ((HOSPITAL, "st-anna"), (SPECIALIST, "cardiology"), (PHARMACY, "pharmacy"))}
    for directory in orgs.values():
        cli("org", "init", directory)
    issuer = root / "federation-issuer"
    cli("org", "init", issuer)
    nodes = [Node(n, o, root / n, free_port(), free_port()) for n, o in
             (("ward-a", HOSPITAL), ("ward-b", HOSPITAL), ("specialist", SPECIALIST),
              ("pharmacy", PHARMACY))]
    wa, wb, sp, ph = nodes
    for n in nodes:
        out = cli("node", "init", n.directory, "--org", orgs[n.org], "--name", n.name,
                  "--api-port", str(n.api_port),
                  "--metrics", f"127.0.0.1:{n.metrics_port}").stdout
        match = re.search(r"\b([0-9a-f]{64})\b", out)
        if not match:
            raise DemoError(f"node init printed no node id: {out!r}")
        n.node_id = match.group(1)
        print(f"  {n.name:<10} org={n.org!r:<34} node={n.node_id[:12]}")
    report.check(True, "3 organisations + 1 federation issuer, 4 nodes created with the CLI")
    if enforce:
        imported = exchange_certificates(orgs, nodes)
        print(f"  certificate exchange: {imported} root-signed control entries of the other "
              f"organisations imported into the node stores (see docs/demo.md)")

    step("signed federation list (p2pmsg federation issue / show)")
    q_a, t_a, q_b, q_s, t_p = (free_port(socket.SOCK_DGRAM), free_port(),
                               free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM),
                               free_port())
    addresses = {"ward-a": f"quic://127.0.0.1:{q_a}", "ward-b": f"quic://127.0.0.1:{q_b}",
                 "specialist": f"quic://127.0.0.1:{q_s}", "pharmacy": f"tcp://127.0.0.1:{t_p}"}
    desc = federation_description(root, orgs, nodes, addresses)
    fed = root / "federation.bin"
    cli("federation", "issue", desc, "--key", issuer / "org.key", "--out", fed)
    issuer_hex = (issuer / "org.id").read_text().strip()
    shown = cli("federation", "show", fed, "--issuer", issuer_hex).stdout
    print("  " + "\n  ".join(shown.strip().splitlines()))
    report.check(all(o in shown for o in orgs),
                 "federation list signed by the issuer and verified; names all 3 organisations")
    governance = (f'\n[governance]\nfederation_list = "{fed}"\nissuer = "{issuer_hex}"\n'
                  f"reload_interval = {RELOAD_INTERVAL}\n")

    purge_governance = "" if enforce else governance
    if not enforce:
        # --allow-all: the daemons do not enforce the list (for comparison).
        org_ids = json.dumps([(d / "org.id").read_text().strip() for d in orgs.values()])
        for n in nodes:
            text = n.config.read_text().replace("allow_all = false", "allow_all = true")
            text = text.replace("enabled = true\nport =",
                                f"enabled = true\norgs = {org_ids}\nport =")
            n.config.write_text(text)
        governance = ""
    # ward-a: QUIC (mDNS + specialist) and TCP (pharmacy). ward-b: QUIC + mDNS only.
    patch_config(wa, quic=q_a, tcp=t_a, mdns=True, governance=governance,
                 peers=[(sp, addresses["specialist"]), (ph, addresses["pharmacy"])])
    patch_config(wb, quic=q_b, mdns=True, governance=governance)
    patch_config(sp, quic=q_s, governance=governance)
    patch_config(ph, tcp=t_p, governance=governance)

    step("start 4 daemons (p2pmsg run), separate processes")
    t0 = time.monotonic()
    for n in nodes:
        n.start()
    for n in nodes:
        n.wait_ready()
    report.figures.append(f"{'4 daemons ready':<44} {1000 * (time.monotonic() - t0):7.0f} ms")
    if enforce:
        report.check(all("governance=True" in n.log_text() for n in nodes),
                     "4 daemons running with [governance] enforcing the signed list")
    else:
        report.check(True, "4 daemons running (policy allow_all: the list is not enforced "
                           "by the daemons in this mode, see docs/demo.md)")

    step("connections: mDNS inside the hospital, QUIC and TCP across organisations")
    for a, b, how in ((wa, wb, "mDNS only (no [[peers]] between the wards), QUIC"),
                      (wa, sp, f"QUIC to configured {addresses['specialist']}"),
                      (wa, ph, f"TCP to configured {addresses['pharmacy']}")):
        t = time.monotonic()
        try:
            def linked(a: Node = a, b: Node = b) -> bool:
                return a.connected(b) and b.connected(a)
            wait_for(linked, f"{a.name} ↔ {b.name}")
            report.figures.append(f"{a.name + ' ↔ ' + b.name + ' connected':<44} "
                                  f"{1000 * (time.monotonic() - t):7.0f} ms after ready")
            report.check(True, f"{a.name} ↔ {b.name} connected: {how}")
        except DemoError as exc:
            report.check(False, f"{a.name} ↔ {b.name} ({how}): {exc}")
            raise
    static_ids = {p.node_id for p in (sp, ph)}
    ward_peers = re.findall(r'^id = "([0-9a-f]{64})"', wa.config.read_text(), re.M) \
        + re.findall(r'^id = "([0-9a-f]{64})"', wb.config.read_text(), re.M)
    report.check(wb.node_id not in ward_peers and wa.node_id not in ward_peers
                 and set(ward_peers) <= static_ids,
                 "no configured peer entry between the wards (they met by mDNS)")

    step("rooms (p2pmsg rooms create --member)")
    rooms = {"ward-3-handover": create_room(wa, wb, "ward-3-handover"),
             "cardio-consult": create_room(wa, sp, "cardio-consult"),
             "pharmacy-orders": create_room(wa, ph, "pharmacy-orders")}
    for name, room in rooms.items():
        print(f"  {name:<16} {room[:16]}…")
    report.check(True, "3 rooms: ward-internal, cross-org consult, pharmacy")

    step("messages (send → visible on the other node, polled)")
    ward, consult, pharm = rooms.values()
    deliver(report, "text ward-a → ward-b (ward room)", wa, [wb], ward,
            send=send_text(wa, ward, "Bed 12: handover at 14:00, patient stable"))
    deliver(report, "reply ward-b → ward-a (ward room)", wb, [wa], ward,
            send=send_text(wb, ward, "Acknowledged, taking over bed 12"))
    deliver(report, "text ward-a → specialist (consult)", wa, [sp], consult,
            send=send_text(wa, consult, "Request: cardiology consult for bed 12, ECG attached"))
    files = root / "files"
    files.mkdir()
    make_wav(files / "dictation.wav")
    make_png(files / "ecg.png")
    make_pdf(files / "discharge-letter.pdf")
    for path, kind, mime in ((files / "dictation.wav", "voice note", "audio/wav"),
                             (files / "ecg.png", "image", "image/png"),
                             (files / "discharge-letter.pdf", "document", "application/pdf")):
        deliver(report, f"{kind} ward-a → specialist (consult)", wa, [sp], consult,
                send=send_file(report, wa, consult, path, kind=kind, mime=mime))
    for msg_id, (path, digest) in UPLOADED.items():
        t = time.monotonic()
        status, body = sp.download(consult, msg_id)
        same_file = status == 200 and hashlib.sha256(body).hexdigest() == digest
        report.figures.append(f"{'download ' + path.name + ' on specialist':<44} "
                              f"{1000 * (time.monotonic() - t):7.0f} ms  {len(body)} B")
        report.check(same_file, f"attachment {path.name} downloaded on specialist, "
                                f"SHA-256 equal to the original (HTTP {status})")
    ward_scan = deliver(report, "image ward-a → ward-b (ward room)", wa, [wb], ward,
                        send=send_file(report, wa, ward, files / "ecg.png", kind="image",
                                       mime="image/png"))
    if ward_scan in UPLOADED:
        status, body = wb.download(ward, ward_scan)
        report.check(status == 200 and hashlib.sha256(body).hexdigest()
                     == UPLOADED[ward_scan][1],
                     f"ward image downloaded on ward-b, SHA-256 equal (HTTP {status})")
    deliver(report, "reply specialist → ward-a (consult)", sp, [wa], consult,
            send=send_text(sp, consult, "Seen the ECG: no acute findings, see you at 15:00"))
    deliver(report, "text ward-a → pharmacy", wa, [ph], pharm,
            send=send_text(wa, pharm, "Order: 20x demo tablets 5 mg for ward 3"))
    deliver(report, "reply pharmacy → ward-a", ph, [wa], pharm,
            send=send_text(ph, pharm, "Order confirmed, delivery 16:00"))

    step("redaction (local API: POST messages {kind: redact})")
    wrong = deliver(report, "text ward-a → ward-b (to be redacted)", wa, [wb], ward,
                    send=send_text(wa, ward, "Bed 14: wrong patient name (will be redacted)"))
    if wrong is not None:
        def redact() -> str:
            status, answer = wa.api("POST", f"/v1/rooms/{ward}/messages",
                                    {"kind": "redact", "target": wrong,
                                     "reason": "wrong patient"})
            if status != 201:
                raise DemoError(f"redact answered HTTP {status}: {answer}")
            return wrong
        deliver(report, "redaction visible on ward-b", wa, [wb], ward, send=redact,
                visible=lambda m: m.get("status") == "redacted")

    step("transcript (p2pmsg read ROOM on every member node)")
    report.transcript.append("authors: " + ", ".join(f"{n.node_id[:8]} = {n.name}"
                                                    for n in nodes))
    for room_name, room, members in (("ward-3-handover", ward, (wa, wb)),
                                     ("cardio-consult", consult, (wa, sp)),
                                     ("pharmacy-orders", pharm, (wa, ph))):
        for n in members:
            out = cli("read", room, "-c", n.config).stdout.rstrip()
            report.transcript.append(f"--- {room_name} as seen by {n.name} ({n.org})")
            report.transcript.extend("    " + ln for ln in out.splitlines())
    print("\n".join(report.transcript))
    same = all(
        [m["id"] for m in a.messages(r)] == [m["id"] for m in b.messages(r)]
        for r, (a, b) in ((ward, (wa, wb)), (consult, (wa, sp)), (pharm, (wa, ph))))
    report.check(same, "each room shows the same messages in the same order on both nodes")

    step("bytes (metrics endpoints)")
    for n in nodes:
        m = n.metrics()
        report.figures.append(
            f"{n.name:<10} sent {m.get('p2pmsg_bytes_sent_total', 0):9.0f} B  received "
            f"{m.get('p2pmsg_bytes_received_total', 0):9.0f} B  entries in "
            f"{m.get('p2pmsg_entries_received_total', 0):4.0f} out "
            f"{m.get('p2pmsg_entries_sent_total', 0):4.0f}")

    step("retention purge (ward-b stopped; 0-day retention for the ward room)")
    rc = wb.stop()
    report.check(rc == 0 and "event=stopped" in wb.log_text(),
                 f"ward-b stopped cleanly by SIGTERM (exit {rc})")
    with wb.config.open("a") as fh:  # retention needs [governance] (offline here)
        fh.write(purge_governance + f'\n[governance.room_retention_days]\n"{ward}" = 0\n')
    dry = cli("retention", "purge", "--dry-run", "-c", wb.config).stdout
    purged = cli("retention", "purge", "-c", wb.config).stdout
    print("  " + "\n  ".join(purged.strip().splitlines()))
    audit = cli("audit", "list", "--kind", "purge", "-c", wb.config).stdout
    print("  audit: " + "\n  audit: ".join(audit.strip().splitlines()))
    report.check(bool(dry.strip()) and "purge" in audit,
                 "retention purge ran on the stopped node and wrote a purge audit record")
    blobs_gone = re.search(r"attachments: deleted ([1-9]\d*) of purged messages", purged)
    report.check(ward_scan not in UPLOADED or blobs_gone is not None,
                 "the purge deleted the ward image's blob on ward-b together with "
                 "its message")
    wb.start()
    wb.wait_ready()
    after = wb.messages(ward)
    kept = [m for m in after if m.get("status") == "ok"]
    print(f"  ward-b after restart: {len(after)} messages listed, {len(kept)} with content; "
          f"statuses {sorted({str(m.get('status')) for m in after})}")
    report.check(len(after) > 0 and not kept,
                 "after the purge ward-b keeps the ward room's structure but no content")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    keep = "--keep" in argv
    enforce = "--allow-all" not in argv
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="p2pmsg-federation-demo-"))
    report = Report()
    error: str | None = None

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # run the cleanup below
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        run_demo(root, report, enforce=enforce)
    except DemoError as exc:
        error = str(exc)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: clean up, say so, exit 130
        codes = stop_all()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        print(f"\ninterrupted: {len(codes)} daemons stopped, temp dir "
              f"{'kept: ' + str(root) if keep else 'removed'}", file=sys.stderr)
        return 130
    codes = stop_all()
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    report.check(all(c == 0 for c in codes) and (keep or not root.exists()),
                 f"cleanup: {len(codes)} daemons stopped by SIGTERM (exit codes {codes}), "
                 f"temp dir {'kept' if keep else 'removed'}")
    if error:
        report.check(False, f"demo aborted: {error}")
    print("\n== figures")
    for line in report.figures:
        print(f"  {line}")
    elapsed = time.monotonic() - started
    ok = bool(report.checks) and all(c for c, _ in report.checks)
    print(f"\n== checklist ({elapsed:.1f} s{', temp dir kept: ' + str(root) if keep else ''})")
    for c, text in report.checks:
        print(f"  {'✓' if c else '✗'} {text}")
    print(f"\nRESULT: {'PASS' if ok else 'FAIL'} "
          f"({sum(c for c, _ in report.checks)}/{len(report.checks)} checks)")
    return 0 if ok else 1


_LIVE: list[Node] = []
"""Every node started in this process, for the cleanup."""


def stop_all() -> list[int | None]:
    """Stop every daemon this run started (SIGTERM, wait, kill); their exit codes."""
    codes = []
    while _LIVE:
        n = _LIVE.pop()
        if n.proc is not None:
            codes.append(n.stop())
    return codes


if __name__ == "__main__":
    sys.exit(main())
