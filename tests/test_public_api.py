"""The public API: every exported name exists, is re-exported explicitly, and is typed."""

from __future__ import annotations

import ast
import importlib.resources
import tomllib
from pathlib import Path

import p2pmsg

ROOT = Path(__file__).resolve().parent.parent
INIT = ROOT / "p2pmsg" / "__init__.py"


def test_all_names_exist() -> None:
    missing = [name for name in p2pmsg.__all__ if not hasattr(p2pmsg, name)]
    assert missing == []


def test_all_is_unique() -> None:
    assert len(set(p2pmsg.__all__)) == len(p2pmsg.__all__)


def _explicit_reexports(tree: ast.Module) -> set[str]:
    """Names bound by ``from .x import name as name`` (the form type checkers honour)
    or defined at top level."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.asname is not None and alias.asname == alias.name:
                    names.add(alias.name)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_every_public_name_is_reexported_explicitly() -> None:
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    explicit = _explicit_reexports(tree)
    assert sorted(set(p2pmsg.__all__) - explicit) == []


def test_every_reexported_name_is_public() -> None:
    """No ``x as x`` import is left out of __all__ (an accidental export)."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name
    }
    assert sorted(imported - set(p2pmsg.__all__)) == []


def test_public_objects_come_from_p2pmsg() -> None:
    for name in p2pmsg.__all__:
        obj = getattr(p2pmsg, name)
        module = getattr(obj, "__module__", None)
        if module is not None:
            assert module.startswith("p2pmsg"), (name, module)


def test_submodules_declare_all() -> None:
    for sub in ["identity", "certs", "keyfile", "hlc", "entry", "validate", "forks", "errors",
                "_cbor"]:
        module = __import__(f"p2pmsg.{sub}", fromlist=["__all__"])
        exported = module.__all__
        assert exported, sub
        for name in exported:
            assert hasattr(module, name), (sub, name)


def test_ships_py_typed() -> None:
    marker = importlib.resources.files("p2pmsg") / "py.typed"
    assert marker.is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["p2pmsg"]
    assert "Typing :: Typed" in config["project"]["classifiers"]


def test_version_matches_metadata() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert p2pmsg.__version__ == config["project"]["version"]


def test_person_ids_are_exported_for_issuing_person_certificates() -> None:
    """Version-2 certificates name a person (docs/messaging.md, "Persons and
    devices"): the top-level API has what ``issue_certificate(..., person=)`` needs."""
    from p2pmsg import certs

    assert p2pmsg.person_id is certs.person_id
    assert p2pmsg.random_person_id is certs.random_person_id
    root = p2pmsg.Identity.generate()
    person = p2pmsg.person_id(root, "staff-4711")
    assert len(person) == 16 and person == p2pmsg.person_id(root, "staff-4711")
    device = p2pmsg.Identity.generate()
    cert = p2pmsg.issue_certificate(root, device.public_key, p2pmsg.Role.MEMBER, "tablet",
                                    0, 2**40, person=person)
    assert cert.person == person
