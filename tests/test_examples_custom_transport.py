"""examples/custom_transport.py: a third-party transport built on the public API only.

It must pass the same conformance suite as the bundled transports, be loadable by
name through a real entry point, and authenticate (wrong key, bad signature,
refused peer, garbage clients).
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmsg.errors import TransportError
from p2pmsg.identity import Identity
from p2pmsg.net.base import PeerStream, Transport, available_transports, load_transport
from p2pmsg.testing import TransportPair, check_transport

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom_transport.py"
A = Identity.from_seed(b"A" * 32)
B = Identity.from_seed(b"B" * 32)
C = Identity.from_seed(b"C" * 32)


def _load_example() -> ModuleType:
    # examples/ is not a package; load the file under the module name its entry
    # point (below) refers to, so both paths give the same classes.
    spec = importlib.util.spec_from_file_location("custom_transport", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_transport"] = module
    spec.loader.exec_module(module)
    return module


ex = _load_example()


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # Unix socket paths are limited to ~107 bytes; pytest's tmp_path can exceed that.
    with tempfile.TemporaryDirectory(prefix="p2pu-") as name:
        yield Path(name)


def _unix(identity: Identity, path: Path, **kwargs: object) -> Transport:
    transport: Transport = ex.UnixTransport(identity, path=str(path), **kwargs)
    return transport


async def _echo_once(stream: PeerStream) -> None:
    data = await stream.receive_some()
    await stream.send_all(data.upper())


async def test_conformance(sockdir: Path) -> None:
    async def make() -> TransportPair:
        return TransportPair(
            _unix(A, sockdir / "a.sock"), A.public_key,
            _unix(B, sockdir / "b.sock"), B.public_key, C.public_key,
        )

    await check_transport(make)
    assert not (sockdir / "b.sock").exists(), "serve must remove its socket file"


def _install_entry_point(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real ``p2pmsg.transports`` entry point, as ``pip install p2pmsg-unix`` makes."""
    info = root / "p2pmsg_unix_example-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: p2pmsg-unix-example\nVersion: 0.1\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        '[p2pmsg.transports]\nunix = custom_transport:UnixTransport\n', encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(root))


async def test_loaded_by_name_through_an_entry_point(
    sockdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "unix" not in available_transports()
    _install_entry_point(tmp_path, monkeypatch)
    assert available_transports()["unix"] == "custom_transport:UnixTransport"
    server = load_transport("unix", identity=B, path=str(sockdir / "b.sock"))
    client = load_transport("unix", identity=A, path=str(sockdir / "a.sock"))
    assert isinstance(server, ex.UnixTransport)
    assert server.scheme == "unix"
    assert server.addresses() == [f"unix://{sockdir}/b.sock"]
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, _echo_once)
        stream = await client.dial(server.addresses()[0], B.public_key)
        async with stream:
            assert stream.remote_id == B.public_key
            await stream.send_all(b"ping")
            assert await stream.receive_some() == b"PING"
        nursery.cancel_scope.cancel()


async def test_refused_peer_fails_dial_before_the_handler_runs(sockdir: Path) -> None:
    seen: list[bytes] = []
    asked: list[bytes] = []

    async def handler(stream: PeerStream) -> None:
        seen.append(stream.remote_id)

    def allow(key: bytes) -> bool:
        asked.append(key)
        return key != A.public_key

    server = _unix(B, sockdir / "b.sock", allow_peer=allow)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, handler)
        with pytest.raises(TransportError, match="refused"):
            await _unix(A, sockdir / "a.sock").dial(server.addresses()[0], B.public_key)
        stream = await _unix(C, sockdir / "c.sock").dial(server.addresses()[0], B.public_key)
        await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert asked == [A.public_key, C.public_key]
        assert seen == [C.public_key]
        nursery.cancel_scope.cancel()


async def test_a_server_without_the_private_key_is_rejected(sockdir: Path) -> None:
    """An impostor that claims B's key but cannot sign for it fails the dial."""
    path = sockdir / "impostor.sock"
    listener_sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await listener_sock.bind(str(path))
    listener_sock.listen()
    listener = trio.SocketListener(listener_sock)

    async def impostor() -> None:
        stream = await listener.accept()
        hello = b""
        while len(hello) < 86:
            hello += await stream.receive_some(86 - len(hello))
        await stream.send_all(B.public_key + bytes(32) + bytes(64))
        with trio.move_on_after(5):
            await stream.receive_some()
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(impostor)
        with pytest.raises(TransportError, match="does not verify"):
            await _unix(A, sockdir / "a.sock").dial(f"unix://{path}", B.public_key)
    await listener.aclose()


async def test_bad_addresses_and_paths(sockdir: Path) -> None:
    client = _unix(A, sockdir / "a.sock")
    with pytest.raises(TransportError, match="unix:///"):
        await client.dial("tcp://127.0.0.1:1", B.public_key)
    with pytest.raises(TransportError, match="unix:///"):
        await client.dial("unix://relative.sock", B.public_key)
    with pytest.raises(TransportError, match="cannot connect"):
        await client.dial(f"unix://{sockdir}/nobody.sock", B.public_key)
    (sockdir / "taken.sock").write_bytes(b"")
    with pytest.raises(TransportError, match="cannot listen"):
        await _unix(B, sockdir / "taken.sock").serve(_echo_once)
    with pytest.raises(ValueError):
        ex.UnixTransport(A, path="relative.sock")


@settings(max_examples=25)
@given(garbage=st.binary(min_size=0, max_size=300))
def test_garbage_clients_never_reach_the_handler_or_stop_serve(garbage: bytes) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="p2pu-") as name:
            server = _unix(B, Path(name) / "b.sock")
            seen: list[bytes] = []

            async def handler(stream: PeerStream) -> None:
                seen.append(stream.remote_id)

            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve, handler)
                raw = await trio.open_unix_socket(f"{name}/b.sock")
                try:
                    await raw.send_all(garbage)
                    await raw.send_eof()
                    with trio.fail_after(5):  # generous: a hang fails, speed does not
                        while await raw.receive_some():
                            pass
                except trio.BrokenResourceError:
                    pass  # the server may reset the connection: equally a refusal
                finally:
                    await raw.aclose()
                stream = await _unix(A, Path(name) / "a.sock").dial(
                    server.addresses()[0], B.public_key
                )
                await stream.aclose()
                await trio.testing.wait_all_tasks_blocked()
                assert seen == [A.public_key]
                nursery.cancel_scope.cancel()

    trio.run(main)


async def test_a_client_without_the_private_key_is_dropped(sockdir: Path) -> None:
    """A client that claims A's key but cannot sign for it never reaches the handler."""
    seen: list[bytes] = []

    async def handler(stream: PeerStream) -> None:
        seen.append(stream.remote_id)

    server = _unix(B, sockdir / "b.sock")
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, handler)
        raw = await trio.open_unix_socket(str(sockdir / "b.sock"))
        async with raw:
            await raw.send_all(ex._LABEL + A.public_key + bytes(32))
            reply = b""
            while len(reply) < 128:
                reply += await raw.receive_some(128 - len(reply))
            assert reply[:32] == B.public_key
            await raw.send_all(bytes(64))  # not A's signature
            try:
                rest = await raw.receive_some()
            except trio.BrokenResourceError:
                rest = b""
            assert rest == b"", "the server must not ACCEPT an unproven key"
        await trio.testing.wait_all_tasks_blocked()
        assert seen == []
        nursery.cancel_scope.cancel()
