"""Messenger unit behaviour on one node: governance feed, keyring, errors; the
embedding example and docs/api.md run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

from p2pmsg import Identity, MemoryStore, NodeConfig, Role, issue_certificate, open_node
from p2pmsg.governance import FederationRegistry, GovernancePolicy
from p2pmsg.messaging import MessageStatus, NotPermitted, RoomKind, Text
from p2pmsg.messenger import (
    MemoryKeyring,
    UnknownDevice,
    UnknownRoom,
    messenger_topics,
    open_messenger,
    org_control_items,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000_000


def test_memory_keyring_forgets_for_good() -> None:
    ring = MemoryKeyring()
    ring.put(b"e1", b"k" * 32)
    ring.put(b"e2", b"q" * 32)
    assert ring.get(b"e1") == b"k" * 32 and ring.epochs() == {b"e1", b"e2"}
    assert ring.forget([b"e2", b"e3"]) == [b"e2"]
    assert ring.get(b"e2") is None and ring.is_forgotten(b"e3")
    ring.put(b"e2", b"q" * 32)  # a shredded epoch is never taken back
    assert ring.get(b"e2") is None and ring.epochs() == {b"e1"}
    assert "kkkk" not in repr(ring) and "b'" not in repr(ring)


async def test_governance_is_fed_and_local_errors(autojump_clock: trio.testing.MockClock) -> None:
    org_a, org_b = Identity.generate(), Identity.generate()
    me, peer = Identity.generate(), Identity.generate()
    store = MemoryStore()
    for root, device, role in [(org_a, me, Role.ADMIN), (org_b, peer, Role.MEMBER)]:
        cert = issue_certificate(root, device.public_key, role, "d", 0, 2**50)
        items = org_control_items(root, [cert], start_ms=T0 - 1000)
        store.append([e for e, _ in items], {e.id: p for e, p in items})
    governance = GovernancePolicy(FederationRegistry(Identity.generate().public_key),
                                  clock=lambda: T0)
    cfg = NodeConfig(identity=me, store=store, policy=governance,
                     topics=messenger_topics([org_a.public_key, org_b.public_key]),
                     wall_clock=lambda: T0 + int(trio.current_time() * 1000))
    async with open_node(cfg) as node, \
            open_messenger(node, org_a.public_key, orgs=[org_b.public_key]) as m:
        assert m.governance is governance  # picked up from the node's policy
        await m.wait_certified([peer.public_key])
        room = await m.create_room([peer.public_key], kind=RoomKind.GROUP, name="x")
        assert room.members[peer.public_key].org == org_b.public_key  # bare key resolved
        assert governance.room_orgs(room.topic) == {org_a.public_key, org_b.public_key}
        assert m.missing_topics() == []  # created after open: added to the node's interest
        assert room.topic in node.topics
        assert [r.topic for r in m.rooms()] == [room.topic]

        first = await m.send_text(room, "eins")
        await m.remove_member(room, peer.public_key)
        assert governance.room_orgs(room.topic) == {org_a.public_key}
        second = await m.send_text(room, "zwei")  # rekeys away from the removed peer
        assert m.room(room).epoch == 1 and peer.public_key not in m.room(room).members

        with pytest.raises(UnknownDevice):
            await m.add_member(room, Identity.generate().public_key)
        with pytest.raises(UnknownRoom):
            await m.send_text(bytes(32), "nowhere")
        with pytest.raises(NotPermitted):
            await m.remove_member(room, peer.public_key)  # not a member any more

        # crypto-shredding through the keyring: forgotten epochs are never reopened
        assert [x.content for x in m.messages(room)] == [Text("eins"), Text("zwei")]
        epoch0 = m._room_state(room).view.epochs[0].id
        assert m.keyring.forget([epoch0]) == [epoch0]
        shown = {x.id: x for x in m.messages(room)}
        assert shown[first].status is MessageStatus.UNDECRYPTABLE
        assert shown[second].content == Text("zwei")


def test_embed_example_runs_standalone() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "embed.py")], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    assert "therapist sees: Text(text='Übergabe: Mobilisation ab morgen')" in done.stdout
    assert "doctor's rooms: ['Reha-Übergabe']" in done.stdout


def test_api_md_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    namespace: dict[str, object] = {"__name__": "docs_api"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md[{i}]", "exec"), namespace)
    out = capsys.readouterr().out
    assert "bob sees: Blutdruck 120/80" in out
    assert "bob after removal: undecryptable" in out
