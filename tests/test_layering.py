"""The sans-IO rule, enforced: the core never imports I/O or the layers above it.

Parses (does not import) p2pmsg/{identity,certs,entry,validate,forks,hlc,_cbor,errors}.py
and every module under p2pmsg/sync/, resolving relative imports, and fails if any of
them imports trio, socket, sqlite3, time, asyncio, or p2pmsg.store.sqlite,
p2pmsg.node or p2pmsg.net (or anything beneath those), or imports dynamically.
docs/architecture.md explains the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "p2pmsg"
CORE = ["identity", "certs", "entry", "validate", "forks", "hlc", "_cbor", "errors"]
FORBIDDEN = ("trio", "socket", "sqlite3", "time", "asyncio",
             "p2pmsg.store.sqlite", "p2pmsg.node", "p2pmsg.net")


def core_files() -> list[Path]:
    files = [PKG / f"{name}.py" for name in CORE]
    files += sorted((PKG / "sync").rglob("*.py")) if (PKG / "sync").is_dir() else []
    return files


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every absolute module name ``source`` (the text of ``module``) may import,
    including ``pkg.name`` for ``from pkg import name`` (name may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in {"__import__", "import_module"}:
                found.add("<dynamic import>")
    return found


def violations(found: set[str]) -> list[str]:
    bad = [m for m in found if m == "<dynamic import>"]
    bad += [m for m in found for f in FORBIDDEN if m == f or m.startswith(f + ".")]
    return sorted(set(bad))


@pytest.mark.parametrize("path", core_files(), ids=_module_name)
def test_core_module_does_no_io_imports(path: Path) -> None:
    assert path.is_file(), f"core module {path} is missing"
    found = imported_modules(path.read_text(encoding="utf-8"), _module_name(path),
                             is_package=path.name == "__init__.py")
    assert violations(found) == [], f"{path.name} breaks the sans-IO rule"


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("import trio", "trio"),
        ("import time", "time"),
        ("from time import monotonic", "time"),
        ("import socket as s", "socket"),
        ("import sqlite3", "sqlite3"),
        ("import asyncio.events", "asyncio.events"),
        ("from ..net import memory", "p2pmsg.net"),
        ("from ..store import sqlite", "p2pmsg.store.sqlite"),
        ("from ..store.sqlite import SqliteStore", "p2pmsg.store.sqlite"),
        ("from p2pmsg.node import open_node", "p2pmsg.node"),
        ("import importlib\nimportlib.import_module('trio')", "<dynamic import>"),
        ("def f():\n    import trio", "trio"),
    ],
)
def test_checker_catches_forbidden_imports(source: str, bad: str) -> None:
    """The checker itself must be able to fail (module p2pmsg.sync.machine)."""
    found = violations(imported_modules(source, "p2pmsg.sync.machine"))
    assert any(v == bad or v.startswith(bad) for v in found), found


@pytest.mark.parametrize(
    "source",
    ["import datetime", "import hashlib", "from ..entry import Entry", "from . import events",
     "from ..store.base import Store", "import timeit_not_time", "from .. import _cbor"],
)
def test_checker_allows_pure_imports(source: str) -> None:
    assert violations(imported_modules(source, "p2pmsg.sync.machine")) == []


def test_relative_import_resolution() -> None:
    found = imported_modules("from .. import _cbor\nfrom .x import y", "p2pmsg.sync.machine")
    assert {"p2pmsg._cbor", "p2pmsg.sync.x", "p2pmsg.sync.x.y"} <= found
    found = imported_modules("from . import _cbor", "p2pmsg.entry")
    assert "p2pmsg._cbor" in found
