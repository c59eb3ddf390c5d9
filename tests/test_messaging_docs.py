"""docs/messaging.md's example runs, and the messaging layer stays sans-IO."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_layering import imported_modules, violations

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "p2pmsg" / "messaging"


def test_messaging_md_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "docs" / "messaging.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], "docs/messaging.md", "exec"), {"__name__": "docs_example"})
    out = capsys.readouterr().out
    assert "Übergabe: Mobilisation ab morgen" in out and "Verstanden" in out


@pytest.mark.parametrize("path", sorted(PKG.glob("*.py")), ids=lambda p: p.name)
def test_messaging_does_no_io_imports(path: Path) -> None:
    module = "p2pmsg.messaging" + ("" if path.name == "__init__.py" else f".{path.stem}")
    found = imported_modules(path.read_text(encoding="utf-8"), module,
                             is_package=path.name == "__init__.py")
    bad = violations(found) + sorted(m for m in found if m.startswith("p2pmsg.store"))
    assert bad == [], f"{path.name} breaks the sans-IO rule"
