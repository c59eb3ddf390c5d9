"""Keyrings: the shared Keyring / EpochSecretStore contract over MemoryKeyring and
FileKeyring, and FileKeyring's at-rest properties (reopen, shredding on disk, errors)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from p2pmsg import Identity, MemoryStore, NodeConfig, Role, issue_certificate, open_node
from p2pmsg.daemon.api import daemon_keyring
from p2pmsg.daemon.config import load_config
from p2pmsg.errors import KeyFileError, P2PMsgError
from p2pmsg.governance import EpochSecretStore, FederationRegistry, GovernancePolicy
from p2pmsg.messaging import MessageStatus, RoomKind, Text
from p2pmsg.messenger import messenger_topics, open_messenger, org_control_items
from p2pmsg.messenger.keyring import FileKeyring, Keyring, MemoryKeyring

Factory = Callable[[Path], Keyring]
DEVICE = Identity.from_seed(bytes(range(32)))
T0 = 1_700_000_000_000

FACTORIES: dict[str, Factory] = {
    "memory": lambda _dir: MemoryKeyring(),
    "file": lambda d: FileKeyring(d / "keyring.db", DEVICE),
}


@pytest.fixture(params=sorted(FACTORIES))
def ring(request: pytest.FixtureRequest, tmp_path: Path) -> Keyring:
    return FACTORIES[request.param](tmp_path)


def test_satisfies_both_protocols(ring: Keyring) -> None:
    assert isinstance(ring, Keyring)
    store: EpochSecretStore = ring  # static check (mypy) that erase_person accepts it
    assert store.epochs() == frozenset()


def test_forgets_for_good(ring: Keyring) -> None:
    ring.put(b"e1", b"k" * 32)
    ring.put(b"e2", b"q" * 32)
    assert ring.get(b"e1") == b"k" * 32 and ring.epochs() == {b"e1", b"e2"}
    assert ring.forget([b"e2", b"e3"]) == [b"e2"]
    assert ring.get(b"e2") is None and ring.is_forgotten(b"e3") and ring.is_forgotten(b"e2")
    assert not ring.is_forgotten(b"e1")
    ring.put(b"e2", b"q" * 32)  # a shredded epoch is never taken back
    assert ring.get(b"e2") is None and ring.epochs() == {b"e1"}
    assert ring.forget([b"e2"]) == []
    assert "kkkk" not in repr(ring) and "b'" not in repr(ring)


def test_file_round_trip_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "keyring.db"
    keys = {os.urandom(32): os.urandom(32) for _ in range(5)}
    ring = FileKeyring(path, DEVICE)
    for epoch_id, key in keys.items():
        ring.put(epoch_id, key)
    shredded = sorted(keys)[0]
    assert ring.forget([shredded, b"never-held"]) == [shredded]
    assert path.stat().st_mode & 0o777 == 0o600
    again = FileKeyring(path, DEVICE)
    assert again.epochs() == frozenset(keys) - {shredded}
    for epoch_id, key in keys.items():
        assert again.get(epoch_id) == (None if epoch_id == shredded else key)
    assert again.is_forgotten(shredded) and again.is_forgotten(b"never-held")
    again.put(shredded, keys[shredded])  # still refused after the restart
    assert FileKeyring(path, DEVICE).get(shredded) is None
    assert not list(tmp_path.glob("*.tmp"))


def test_file_holds_no_plaintext_key(tmp_path: Path) -> None:
    path = tmp_path / "keyring.db"
    key = os.urandom(32)
    FileKeyring(path, DEVICE).put(b"epoch", key)
    data = path.read_bytes()
    assert key not in data and DEVICE.seed() not in data


def _box_of(data: bytes, epoch_id: bytes) -> bytes:
    """The sealed key record stored right after ``epoch_id`` (CBOR: bstr id, bstr box)."""
    at = data.index(epoch_id) + len(epoch_id)
    assert data[at] == 0x58  # bstr with a one-byte length: 24-byte nonce + 32 + 16 tag
    return data[at + 2: at + 2 + data[at + 1]]


def test_forget_removes_the_ciphertext_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "keyring.db"
    ring = FileKeyring(path, DEVICE)
    gone, kept = b"G" * 32, b"K" * 32
    ring.put(gone, os.urandom(32))
    ring.put(kept, os.urandom(32))
    before = path.read_bytes()
    gone_box, kept_box = _box_of(before, gone), _box_of(before, kept)
    assert len(gone_box) == 24 + 32 + 16
    ring.forget([gone])
    after = path.read_bytes()
    assert gone_box not in after  # the sealed key is not on disk any more
    assert kept_box not in after  # re-sealed with a fresh nonce on every rewrite ...
    assert FileKeyring(path, DEVICE).get(kept) == ring.get(kept)  # ... and still opens


def test_wrong_device_key_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "keyring.db"
    FileKeyring(path, DEVICE).put(b"e", b"k" * 32)
    with pytest.raises(KeyFileError, match="another device key"):
        FileKeyring(path, Identity.generate())


@pytest.mark.parametrize("mangle", [
    lambda d: b"",
    lambda d: b"SQLite format 3\x00" + d[16:],
    lambda d: d[:-5],
    lambda d: d[:-3] + bytes([d[-3] ^ 1]) + d[-2:],
    lambda d: d + b"\x00",
])
def test_corrupt_or_foreign_file_is_a_clear_error(
        tmp_path: Path, mangle: Callable[[bytes], bytes]) -> None:
    path = tmp_path / "keyring.db"
    FileKeyring(path, DEVICE).put(b"e" * 32, b"k" * 32)
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(KeyFileError, match="keyring"):
        FileKeyring(path, DEVICE)


def test_swapped_records_fail_authentication(tmp_path: Path) -> None:
    """The epoch id is associated data: a key record moved to another id is refused."""
    path = tmp_path / "keyring.db"
    ring = FileKeyring(path, DEVICE)
    ring.put(b"A" * 32, b"1" * 32)
    ring.put(b"B" * 32, b"2" * 32)
    data = path.read_bytes()
    swapped = data.replace(b"A" * 32, b"C" * 32).replace(b"B" * 32, b"A" * 32)
    path.write_bytes(swapped.replace(b"C" * 32, b"B" * 32))
    with pytest.raises(KeyFileError, match="fails authentication"):
        FileKeyring(path, DEVICE)


def test_group_readable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keyring.db"
    FileKeyring(path, DEVICE)
    path.chmod(0o644)
    with pytest.raises(P2PMsgError, match="chmod 600"):
        FileKeyring(path, DEVICE)


async def test_shredding_survives_a_messenger_restart(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """What the daemon gets from FileKeyring: after a restart, a shredded epoch stays
    unreadable (a fresh MemoryKeyring would re-open it from EPOCH_KEYS) and the
    other epochs still decrypt."""
    org_a, org_b = Identity.generate(), Identity.generate()
    me, peer = Identity.generate(), Identity.generate()
    store = MemoryStore()
    for root, device in [(org_a, me), (org_b, peer)]:
        cert = issue_certificate(root, device.public_key, Role.ADMIN, "d", 0, 2**50)
        items = org_control_items(root, [cert], start_ms=T0 - 1000)
        store.append([e for e, _ in items], {e.id: p for e, p in items})
    orgs = [org_a.public_key, org_b.public_key]

    def config() -> NodeConfig:
        governance = GovernancePolicy(FederationRegistry(Identity.generate().public_key),
                                      clock=lambda: T0)
        return NodeConfig(identity=me, store=store, policy=governance,
                          topics=messenger_topics(orgs),
                          wall_clock=lambda: T0 + int(trio.current_time() * 1000))

    path = tmp_path / "keyring.db"
    async with open_node(config()) as node, open_messenger(
            node, org_a.public_key, orgs=orgs[1:], keyring=FileKeyring(path, me)) as m:
        await m.wait_certified([peer.public_key])
        room = await m.create_room([peer.public_key], kind=RoomKind.GROUP, name="x")
        first = await m.send_text(room, "eins")
        await m.remove_member(room, peer.public_key)
        second = await m.send_text(room, "zwei")  # epoch 1
        epoch0 = m._room_state(room).view.epochs[0].id
        assert [x.content for x in m.messages(room)] == [Text("eins"), Text("zwei")]
        assert m.keyring.forget([epoch0]) == [epoch0]

    for keyring, first_readable in [(FileKeyring(path, me), False), (MemoryKeyring(), True)]:
        async with open_node(config()) as node, open_messenger(
                node, org_a.public_key, orgs=orgs[1:], keyring=keyring) as m:
            shown = {x.id: x for x in m.messages(room.topic)}
            assert shown[second].content == Text("zwei")
            assert (shown[first].content == Text("eins")) is first_readable
            if not first_readable:
                assert shown[first].status is MessageStatus.UNDECRYPTABLE


def test_daemon_uses_a_file_keyring_in_its_data_dir(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    conf = tmp_path / "p2pmsg.toml"
    conf.write_text(f'[node]\nkey = "node.key"\ndata_dir = "data"\norg_id = "{"11" * 32}"\n'
                    '[api]\nenabled = true\n')
    cfg = load_config(conf, env={})
    ring = daemon_keyring(cfg, DEVICE)
    assert isinstance(ring, FileKeyring) and ring.path == tmp_path / "data" / "keyring.db"
    ring.put(b"e", b"k" * 32)
    assert daemon_keyring(cfg, DEVICE).get(b"e") == b"k" * 32
