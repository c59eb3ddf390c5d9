"""examples/fhir_bridge.py runs standalone and the clinic reads the FHIR message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fhir_bridge.py"


def test_fhir_bridge_example_runs() -> None:
    result = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pharmacy: sent prescription-ready notice" in out
    assert ("clinic: FHIR 4.0.1 Communication about MedicationRequest/rx-4711: "
            "Prescription ready for pickup (status completed)") in out
    assert "Rezept rx-4711 liegt zur Abholung bereit" in out
