"""The pure parts of p2pmsg.blobs (format, wire, transfer, errors) do no I/O imports.

store.py (disk, sqlite) and testing.py (uses the store) are the I/O side.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_layering import PKG, _module_name, imported_modules, violations

PURE = ["format", "wire", "transfer", "errors"]
EXTRA_FORBIDDEN = ("os", "pathlib", "tempfile", "p2pmsg.blobs.store", "p2pmsg.blobs.testing")


@pytest.mark.parametrize("name", PURE)
def test_pure_blob_modules_do_no_io(name: str) -> None:
    path: Path = PKG / "blobs" / f"{name}.py"
    found = imported_modules(path.read_text(encoding="utf-8"), _module_name(path))
    assert violations(found) == []
    bad = [m for m in found for f in EXTRA_FORBIDDEN if m == f or m.startswith(f + ".")]
    assert bad == [], f"{name}.py imports I/O modules"
