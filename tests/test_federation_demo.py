"""examples/federation_demo.py end to end: four real daemons, run as a subprocess.

Slow (about 30-40 s on a 2-core machine): four ``p2pmsg run`` processes, mDNS on
127.0.0.1, QUIC and TCP. Asserts the exit code and every checklist line the demo
promises (docs/demo.md), and that it removed its temp dir and left no daemon running.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from p2pmsg.net.base import available_transports

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "federation_demo.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not {"tcp", "quic"} <= set(available_transports()),
                       reason="the demo needs the TCP and QUIC transport plugins installed"),
]

EXPECTED = [
    "3 organisations + 1 federation issuer, 4 nodes created with the CLI",
    "federation list signed by the issuer and verified; names all 3 organisations",
    "ward-a ↔ ward-b connected: mDNS only",
    "ward-a ↔ specialist connected: QUIC to configured quic://127.0.0.1:",
    "ward-a ↔ pharmacy connected: TCP to configured tcp://127.0.0.1:",
    "no configured peer entry between the wards (they met by mDNS)",
    "3 rooms: ward-internal, cross-org consult, pharmacy",
    "text ward-a → ward-b (ward room)",
    "reply ward-b → ward-a (ward room)",
    "text ward-a → specialist (consult)",
    "voice note ward-a → specialist (consult)",
    "image ward-a → specialist (consult)",
    "document ward-a → specialist (consult)",
    "image ward-a → ward-b (ward room)",
    "ward image downloaded on ward-b, SHA-256 equal",
    "reply specialist → ward-a (consult)",
    "text ward-a → pharmacy",
    "reply pharmacy → ward-a",
    "redaction visible on ward-b",
    "each room shows the same messages in the same order on both nodes",
    "retention purge ran on the stopped node and wrote a purge audit record",
    "the purge deleted the ward image's blob on ward-b",
    "after the purge ward-b keeps the ward room's structure but no content",
    "cleanup: 4 daemons stopped by SIGTERM",
]


def _demo_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("p2pmsg-federation-demo-*")}


def test_federation_demo_passes_every_check() -> None:
    before = _demo_dirs()
    result = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True,
                            timeout=240, check=False, cwd=ROOT)
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    checklist = out[out.index("== checklist"):]
    lines = [ln.strip() for ln in checklist.splitlines() if ln.strip()[:1] in ("✓", "✗")]
    assert lines and all(ln.startswith("✓") for ln in lines), lines
    for expected in EXPECTED:
        assert any(expected in ln for ln in lines), (expected, lines)
    assert re.search(r"RESULT: PASS \((\d+)/\1 checks\)", out), out[-500:]
    # the transcript shows each room from both members, the redaction and real content
    for room in ("ward-3-handover", "cardio-consult", "pharmacy-orders"):
        assert len(re.findall(rf"--- {room} as seen by ", out)) == 2, room
    assert "Bed 12: handover at 14:00, patient stable" in out
    assert "[redacted]" in out
    assert "wrong patient name" not in out.split("== transcript")[1].split("== bytes")[0]
    # figures: a delivery time per message and per-node byte counters
    assert re.search(r"text ward-a → pharmacy .* \d+ ms after the send returned", out)
    assert len(re.findall(r"^\s+(ward-a|ward-b|specialist|pharmacy)\s+sent\s+\d+ B", out,
                          re.M)) == 4
    assert _demo_dirs() <= before  # its temp dir is gone
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False)
    assert "p2pmsg-federation-demo-" not in ps.stdout  # no daemon of it left running
