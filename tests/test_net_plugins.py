"""The plugin registry (p2pmsg.net.base): loading by name, its errors, the bundled
plugins, the Discovery lifecycle default and the shared StreamIntegrityError.

Fake plugins are real installed distributions: a ``*.dist-info`` directory with an
``entry_points.txt`` on ``sys.path``, exactly what ``pip install`` leaves behind, so
these tests exercise importlib.metadata rather than a mock of it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import itertools
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

import p2pmsg.net
from p2pmsg.errors import P2PMsgError, TransportError
from p2pmsg.identity import Identity
from p2pmsg.net.base import (
    DISCOVERY_GROUP,
    ENTRY_POINT_GROUP,
    TRANSPORT_GROUP,
    Discovery,
    PeerHint,
    StreamIntegrityError,
    Transport,
    available_discovery,
    available_transports,
    load_discovery,
    load_transport,
)
from p2pmsg.net.memory import MemoryNetwork, MemoryTransport
from p2pmsg.net.static import StaticDiscovery

NODE = Identity.from_seed(b"n" * 32)
ORG = Identity.from_seed(b"o" * 32)
_counter = itertools.count()

# A module that provides factories for the fake plugins below.
FACTORIES = '''
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.net.static import StaticDiscovery

def memory(**kwargs):
    return MemoryNetwork().transport("fake", b"k" * 32)

def static(**kwargs):
    return StaticDiscovery()

def not_a_transport(**kwargs):
    return object()

def picky(*, colour):
    if colour != "blue":
        raise ValueError("only blue")
    return MemoryNetwork().transport(colour, b"k" * 32)

NOT_CALLABLE = 42
'''


Install = Callable[[dict[str, dict[str, str]]], str]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Install:
    """Install a fake distribution: ``{group: {name: "module:attr"}}`` -> module name.

    The distribution also ships a factories module (returned name, unique per call)
    and a module that fails on import (``<name>_broken``).
    """

    def _install(groups: dict[str, dict[str, str]]) -> str:
        n = next(_counter)
        root = tmp_path / f"site{n}"
        root.mkdir()
        module = f"p2pmsg_fakeplug{n}"
        (root / f"{module}.py").write_text(FACTORIES, encoding="utf-8")
        (root / f"{module}_broken.py").write_text(
            "raise RuntimeError('plugin is broken')\n", encoding="utf-8"
        )
        info = root / f"p2pmsg_fake{n}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: p2pmsg-fake{n}\nVersion: 0.1\n", encoding="utf-8"
        )
        lines = []
        for group, entries in groups.items():
            lines.append(f"[{group}]")
            lines += [f"{name} = {target.format(m=module)}" for name, target in entries.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        monkeypatch.syspath_prepend(str(root))
        for name in (module, f"{module}_broken"):
            monkeypatch.delitem(sys.modules, name, raising=False)
        return module

    return _install


# -- the bundled plugins ---------------------------------------------------------------


def test_group_names() -> None:
    assert TRANSPORT_GROUP == ENTRY_POINT_GROUP == "p2pmsg.transports"
    assert DISCOVERY_GROUP == "p2pmsg.discovery"


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.parametrize(
    ("distribution", "group", "name", "target"),
    [
        ("p2pmsg-tcp", TRANSPORT_GROUP, "tcp", "p2pmsg_tcp.transport:TcpTransport"),
        ("p2pmsg-quic", TRANSPORT_GROUP, "quic", "p2pmsg_quic.transport:QuicTransport"),
        ("p2pmsg-mdns", DISCOVERY_GROUP, "mdns", "p2pmsg_mdns:MdnsDiscovery"),
    ],
)
def test_bundled_plugins_are_discoverable_by_name(
    distribution: str, group: str, name: str, target: str
) -> None:
    if not _installed(distribution):
        pytest.skip(f"{distribution} is not installed (make venv installs it editable)")
    available = available_transports() if group == TRANSPORT_GROUP else available_discovery()
    assert available[name] == target
    (ep,) = [ep for ep in importlib.metadata.entry_points(group=group) if ep.name == name]
    base = Transport if group == TRANSPORT_GROUP else Discovery
    assert issubclass(ep.load(), base)


def test_core_registers_the_memory_transport_only_as_a_transport() -> None:
    assert available_transports()["memory"] == "p2pmsg.net.memory:MemoryTransport"
    assert "memory" not in available_discovery()


@pytest.mark.skipif(not _installed("p2pmsg-tcp"), reason="p2pmsg-tcp is not installed")
def test_tcp_loads_with_the_keyword_conventions() -> None:
    transport = load_transport(
        "tcp", identity=NODE, host="127.0.0.1", port=0,
        allow_peer=lambda key: True, advertise=["tcp://192.0.2.1:7420"],
    )
    assert isinstance(transport, Transport)
    assert transport.scheme == "tcp"
    assert transport.addresses() == ["tcp://192.0.2.1:7420"]


@pytest.mark.skipif(not _installed("p2pmsg-mdns"), reason="p2pmsg-mdns is not installed")
def test_mdns_loads_as_discovery() -> None:
    source = load_discovery("mdns", node_id=NODE.public_key, org_id=ORG.public_key)
    assert isinstance(source, Discovery)
    assert "mdns" not in available_transports()


def test_memory_loads_by_name() -> None:
    transport = load_transport("memory", network=MemoryNetwork(), name="x", node_id=b"k" * 32)
    assert isinstance(transport, MemoryTransport)


# -- errors -----------------------------------------------------------------------------


def test_unknown_transport_lists_the_installed_ones() -> None:
    with pytest.raises(TransportError) as info:
        load_transport("carrier-pigeon")
    message = str(info.value)
    assert "'carrier-pigeon'" in message
    for name in available_transports():
        assert name in message


def test_unknown_discovery_lists_the_installed_ones(install: Install) -> None:
    install({DISCOVERY_GROUP: {"fakesrc": "{m}:static"}})
    with pytest.raises(TransportError, match=r"no discovery plugin named 'dns-sd'.*fakesrc"):
        load_discovery("dns-sd")


def test_a_plugin_that_fails_to_import_is_named_with_its_cause(install: Install) -> None:
    module = install({TRANSPORT_GROUP: {
        "broken": "{m}_broken:Factory",
        "missing": "p2pmsg_no_such_module_anywhere:Factory",
        "noattr": "{m}:NoSuchFactory",
    }})
    with pytest.raises(TransportError, match=r"'broken'.*RuntimeError: plugin is broken") as info:
        load_transport("broken")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert f"{module}_broken:Factory" in str(info.value)
    assert "p2pmsg-fake" in str(info.value)  # the distribution to uninstall or fix
    with pytest.raises(TransportError, match=r"'missing'.*ModuleNotFoundError") as info:
        load_transport("missing")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    with pytest.raises(TransportError, match=r"'noattr'.*AttributeError") as info:
        load_transport("noattr")
    assert isinstance(info.value.__cause__, AttributeError)


def test_discovery_import_failure_is_a_transport_error_too(install: Install) -> None:
    install({DISCOVERY_GROUP: {"broken": "{m}_broken:Source"}})
    with pytest.raises(TransportError, match="discovery plugin 'broken'") as info:
        load_discovery("broken")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_wrong_kinds_of_objects_are_refused(install: Install) -> None:
    install({
        TRANSPORT_GROUP: {
            "object": "{m}:not_a_transport",
            "static": "{m}:static",
            "constant": "{m}:NOT_CALLABLE",
        },
        DISCOVERY_GROUP: {"memory-as-discovery": "{m}:memory"},
    })
    with pytest.raises(TransportError, match="built a object, not a Transport"):
        load_transport("object")
    with pytest.raises(TransportError, match="built a StaticDiscovery, not a Transport"):
        load_transport("static")
    with pytest.raises(TransportError, match="not callable"):
        load_transport("constant")
    with pytest.raises(TransportError, match="built a MemoryTransport, not a Discovery"):
        load_discovery("memory-as-discovery")


def test_factory_argument_errors_propagate_unchanged(install: Install) -> None:
    install({TRANSPORT_GROUP: {"picky": "{m}:picky"}})
    assert load_transport("picky", colour="blue").addresses() == ["memory://blue"]
    with pytest.raises(ValueError, match="only blue"):
        load_transport("picky", colour="red")
    with pytest.raises(TypeError):
        load_transport("picky", identity=NODE)


def test_fake_plugins_load_and_are_listed(install: Install) -> None:
    module = install({
        TRANSPORT_GROUP: {"fakemem": "{m}:memory"},
        DISCOVERY_GROUP: {"fakesrc": "{m}:static"},
    })
    assert available_transports()["fakemem"] == f"{module}:memory"
    assert available_discovery()["fakesrc"] == f"{module}:static"
    assert "fakesrc" not in available_transports()
    assert isinstance(load_transport("fakemem"), MemoryTransport)
    assert isinstance(load_discovery("fakesrc"), StaticDiscovery)


def test_two_distributions_claiming_one_name_is_an_error(install: Install) -> None:
    """A package must not silently take over a name (say ``memory``) by install order."""
    install({TRANSPORT_GROUP: {"memory": "{m}:memory"}})
    with pytest.raises(TransportError, match="'memory' is ambiguous") as info:
        load_transport("memory", network=MemoryNetwork(), name="x", node_id=b"k" * 32)
    assert "p2pmsg.net.memory:MemoryTransport" in str(info.value)
    assert "p2pmsg-fake" in str(info.value)


def test_registry_errors_are_p2pmsg_errors() -> None:
    with pytest.raises(P2PMsgError):
        load_discovery("no-such-discovery")


# -- Discovery lifecycle ---------------------------------------------------------------


class _OneHint(Discovery):
    """A minimal third-party source that relies on the default ``run``."""

    async def hints(self) -> AsyncIterator[PeerHint]:
        yield PeerHint(b"p" * 32, "memory://p", "test")


@pytest.mark.parametrize("make", [_OneHint, StaticDiscovery])
async def test_default_run_reports_started_and_runs_until_cancelled(
    make: Callable[[], Discovery],
) -> None:
    source = make()
    finished = False

    async def run_it(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal finished
        await source.run(task_status=task_status)
        finished = True

    async with trio.open_nursery() as nursery:
        await nursery.start(run_it)
        await trio.testing.wait_all_tasks_blocked()
        assert not finished, "run() must keep running until cancelled"
        nursery.cancel_scope.cancel()
    assert not finished


async def test_node_style_start_then_consume_hints() -> None:
    hint = PeerHint(b"q" * 32, "memory://q")
    source = StaticDiscovery([hint])
    async with trio.open_nursery() as nursery:
        await nursery.start(source.run)
        async for got in source.hints():
            assert got == hint
            break
        nursery.cancel_scope.cancel()


# -- StreamIntegrityError ----------------------------------------------------------------


def test_stream_integrity_error_is_both_ours_and_a_broken_resource() -> None:
    assert issubclass(StreamIntegrityError, TransportError)
    assert issubclass(StreamIntegrityError, trio.BrokenResourceError)

    def raise_it() -> None:
        raise StreamIntegrityError("record 7 failed authentication")

    with pytest.raises(trio.BrokenResourceError):  # "connection lost" handlers catch it
        raise_it()
    with pytest.raises(TransportError):
        raise_it()


# -- p2pmsg.net re-exports ---------------------------------------------------------------


def test_net_package_reexports_explicitly() -> None:
    init = Path(p2pmsg.net.__file__).read_text(encoding="utf-8")
    tree = ast.parse(init)
    explicit = {
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name
    }
    assert sorted(explicit) == sorted(p2pmsg.net.__all__)
    for name in p2pmsg.net.__all__:
        assert getattr(p2pmsg.net, name) is not None
    assert p2pmsg.net.load_transport is load_transport


@pytest.mark.skipif(not _installed("p2pmsg-tcp"), reason="p2pmsg-tcp is not installed")
def test_tcp_raises_the_shared_stream_integrity_error() -> None:
    import p2pmsg_tcp

    assert p2pmsg_tcp.StreamIntegrityError is StreamIntegrityError
