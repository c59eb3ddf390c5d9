"""Shared helpers for the benchmark scripts: timing, a table printer, JSON results.

Every benchmark prints one line per figure in a fixed table layout::

    figure            value       unit        n  cpu-time rate  vs limit  target
    raw sign (pynacl) 25,903      ops/s   20,000         26,120         -

and can save the same figures as JSON (``--json PATH``; :func:`default_json_path`
names a file under ``benchmarks/results/``). Figures are compared with a *limit*
measured in the same run (raw pynacl, raw SQLite, ...) because the development
machines are noisy: the ratio is the number to watch, not the absolute rate.

Use :func:`timed` to measure, :class:`Figure` to describe a result,
:func:`print_table` to show them and :func:`save_json` to keep them.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_DIR",
    "Figure",
    "Stopwatch",
    "default_json_path",
    "format_ratio",
    "machine_info",
    "print_table",
    "save_json",
    "timed",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Stopwatch:
    """Wall and CPU seconds of a :func:`timed` block (set when the block exits).

    ``cpu_seconds`` is this process's CPU time: on a shared, busy machine it is the
    steadier figure (it excludes time stolen by other processes), but it also
    excludes waiting for the disk, so it overstates I/O-bound rates.
    """

    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def rate(self, count: int) -> float:
        """``count`` operations over the measured wall time, per second."""
        return count / self.seconds if self.seconds > 0 else float("inf")

    def cpu_rate(self, count: int) -> float:
        """``count`` operations per second of this process's CPU time."""
        return count / self.cpu_seconds if self.cpu_seconds > 0 else float("inf")


@contextmanager
def timed() -> Iterator[Stopwatch]:
    """``with timed() as sw: ...`` then ``sw.seconds`` / ``sw.rate(n)``."""
    sw = Stopwatch()
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        yield sw
    finally:
        sw.seconds = time.perf_counter() - start
        sw.cpu_seconds = time.process_time() - cpu_start


@dataclass
class Figure:
    """One measured figure.

    ``value`` is the wall-clock figure; ``cpu_value`` a rate per CPU second (see
    :class:`Stopwatch`). ``ratio`` is value / limit for a limit measured in the same
    run (None if the figure *is* a limit). ``target`` is a human-readable goal and
    ``met`` whether it was reached (None when there is no target).
    """

    name: str
    value: float
    unit: str
    count: int
    ratio: float | None = None
    limit_name: str | None = None
    target: str | None = None
    met: bool | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    cpu_value: float | None = None
    """Last so that positional use of the fields above keeps working."""


def format_ratio(ratio: float | None) -> str:
    """``0.83`` -> ``"83%"``, ``0.042`` -> ``"4.2%"``, ``12.3`` -> ``"12.3x"``, None -> ``"-"``."""
    if ratio is None:
        return "-"
    if ratio >= 10:
        return f"{ratio:.1f}x"
    if ratio < 0.1:
        return f"{ratio * 100:.1f}%"
    return f"{ratio * 100:.0f}%"


def _format_value(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def print_table(title: str, figures: Sequence[Figure], out: Callable[[str], None] = print) -> None:
    """Print ``figures`` as an aligned table under ``title``.

    Each figure is one line starting with its name, so a test or a script can grep
    for it. Notes follow the table.
    """
    out(f"== {title} ==")
    head = (
        f"{'figure':44s} {'value':>12s} {'unit':>10s} {'n':>8s} {'cpu-time rate':>13s}"
        f" {'vs limit':>12s}  target"
    )
    out(head)
    out("-" * len(head))
    for f in figures:
        target = ""
        if f.target is not None:
            verdict = "MET" if f.met else "NOT MET"
            target = f"{f.target} [{verdict}]"
        vs = format_ratio(f.ratio)
        if f.limit_name and f.ratio is not None:
            vs = f"{vs} {f.limit_name}"
        cpu = "-" if f.cpu_value is None else _format_value(f.cpu_value)
        out(
            f"{f.name:44s} {_format_value(f.value):>12s} {f.unit:>10s} {f.count:>8,d} "
            f"{cpu:>13s} {vs:>12s}  {target}".rstrip()
        )
    notes = [f"  * {f.name.strip()}: {f.note}" for f in figures if f.note]
    if notes:
        out("notes:")
        for line in notes:
            out(line)


def machine_info() -> dict[str, Any]:
    """Where a result came from: Python, platform, CPU count, date (UTC)."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def default_json_path(benchmark: str) -> Path:
    """``benchmarks/results/<benchmark>-<UTC timestamp>.json``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return RESULTS_DIR / f"{benchmark}-{stamp}.json"


def save_json(
    path: Path | str, benchmark: str, figures: Sequence[Figure], params: dict[str, Any]
) -> Path:
    """Write figures, parameters and :func:`machine_info` as JSON; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": benchmark,
        "machine": machine_info(),
        "params": params,
        "figures": [asdict(f) for f in figures],
    }
    target.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return target
