"""Every benchmark script runs to completion in ``--quick`` mode and prints its figures.

No timing is asserted (speed belongs to the benchmarks themselves); this only keeps
the scripts from rotting as the library changes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p for p in BENCH_DIR.glob("bench_*.py"))

# Figure lines each script must print (first column of its table); scripts not
# listed here must still accept --quick, exit 0 and print at least one figure.
EXPECTED_FIGURES = {
    "bench_log.py": [
        "raw sign (pynacl)",
        "raw verify (pynacl)",
        "durable single append",
        "batched append (1,000/commit)",
        "full-verification ingest",
        "chain-verification ingest",
    ],
}


def test_benchmark_scripts_exist() -> None:
    assert "bench_log.py" in {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_quick_run(script: Path, tmp_path: Path) -> None:
    out_json = tmp_path / "result.json"
    # --quick is every script's contract; --json is checked where the script uses
    # benchmarks/_common.py's save_json (listed in EXPECTED_FIGURES).
    known = script.name in EXPECTED_FIGURES
    args = [sys.executable, str(script), "--quick"] + (["--json", str(out_json)] if known else [])
    proc = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "unrecognized arguments: --quick" not in proc.stderr, (
        f"{script.name} must accept --quick (the convention in docs/benchmarks.md)"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    # Every script prints at least one figure: a line with a number in it.
    assert any(any(ch.isdigit() for ch in line) for line in lines), proc.stdout
    for name in EXPECTED_FIGURES.get(script.name, []):
        matching = [line for line in lines if line.startswith(name)]
        assert matching, f"{script.name}: no figure line {name!r} in:\n{proc.stdout}"
        # The figure line carries a number after its name.
        assert any(ch.isdigit() for ch in matching[0][len(name):]), matching[0]
    if not known:
        return
    doc = json.loads(out_json.read_text())
    names = [f["name"] for f in doc["figures"]]
    for name in EXPECTED_FIGURES.get(script.name, []):
        assert name in names
    assert all(f["value"] > 0 for f in doc["figures"])
