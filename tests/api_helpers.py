"""Two devices of two organisations with messengers and API servers, in real time.

Used by tests/test_api*.py and tests/test_ward_chat_browser.py. The nodes talk over
the memory transport; each device's API listens on 127.0.0.1 with a random port.
``clinic`` (org "Klinikum", device A, room admin) and ``lab`` (org "Labor", device
B) share one planned room (replicated from the start); org "Labor" also certifies a
second device B2 that has no node (so it can be added to rooms). Device A belongs to
a person whom "Klinikum" also certifies a device A2 for (no node either; a member
of A's rooms through the person, the other end of a history share). Each node has a
throwaway blob store (attachments); uploads are buffered in ``Pair.uploads``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from p2pmsg import Identity, MemoryStore, NodeConfig, Role, issue_certificate, open_node
from p2pmsg.api import ApiConfig, ApiServer, serve_api
from p2pmsg.blobs import BlobStore
from p2pmsg.certs import random_person_id
from p2pmsg.messaging import MemberSpec
from p2pmsg.messenger import Messenger, messenger_topics, open_messenger, org_control_items
from p2pmsg.messenger import plan_room as plan
from p2pmsg.net.base import PeerHint
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.policy import AllowAllPolicy


@dataclass
class Device:
    name: str
    identity: Identity
    org: Identity
    messenger: Messenger
    api: ApiServer

    @property
    def url(self) -> str:
        return self.api.url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api.token}"}


@dataclass
class Pair:
    a: Device
    b: Device
    room: bytes
    b2: bytes
    """A lab device certified by its org but without a node."""
    uploads: Path
    """Both APIs' ``upload_dir`` (temporary upload files; empty between requests)."""
    a2: bytes
    """Another clinic device of A's person, without a node."""


@asynccontextmanager
async def device_pair(static_dir: Path | None = None) -> AsyncIterator[Pair]:
    """Open both nodes, messengers and API servers; the shared room exists and B
    has received it when this yields."""
    clinic, lab = Identity.generate(), Identity.generate()
    a_id, b_id, b2_id = Identity.generate(), Identity.generate(), Identity.generate()
    a2_id = Identity.generate()
    a_person = random_person_id()
    t0 = int(time.time() * 1000) - 60_000
    room = plan(a_id, clinic.public_key, [MemberSpec(b_id.public_key, lab.public_key)],
                created_ms=t0)
    topics = messenger_topics([clinic.public_key, lab.public_key], [room.topic])
    net = MemoryNetwork()
    blob_dir = tempfile.TemporaryDirectory(prefix="p2pmsg-api-blobs-")

    def config(me: Identity, root: Identity, name: str, extra: list[Identity],
               peers: list[PeerHint], person: bytes | None = None) -> NodeConfig:
        store = MemoryStore()
        certs = [issue_certificate(root, d.public_key, Role.ADMIN if d is me else Role.MEMBER,
                                   f"{name}-{i}", 0, 2**50, person=person)
                 for i, d in enumerate([me, *extra])]
        items = org_control_items(root, certs, start_ms=t0)
        store.append([e for e, _ in items], {e.id: p for e, p in items})
        blobs = BlobStore(Path(blob_dir.name) / name, durable=False)
        return NodeConfig(identity=me, store=store, topics=topics, policy=AllowAllPolicy(),
                          transports=[net.transport(name, me.public_key)], peers=peers,
                          blob_store=blobs)

    uploads = Path(blob_dir.name) / "uploads"
    uploads.mkdir()
    api_config = ApiConfig(port=0, static_dir=static_dir, keepalive=1.0, max_upload=1 << 20,
                           upload_dir=uploads)
    with blob_dir, ExitStack() as closing:
        a_config = config(a_id, clinic, "a", [a2_id], [PeerHint(b_id.public_key, "memory://b")],
                          a_person)
        b_config = config(b_id, lab, "b", [b2_id], [])
        for c in (a_config, b_config):
            assert c.blob_store is not None
            closing.callback(c.blob_store.close)
        async with open_node(b_config) as b_node, \
                open_messenger(b_node, lab.public_key, orgs=[clinic.public_key]) as bm, \
                open_node(a_config) as a_node, \
                open_messenger(a_node, clinic.public_key, orgs=[lab.public_key]) as am, \
                trio.open_nursery() as nursery:
            with trio.fail_after(20):
                await am.wait_certified([b_id.public_key, b2_id.public_key])
                await bm.wait_certified([a_id.public_key])
                await am.create_room_from(room, name="Station 3")
                while not any(r.topic == room.topic for r in bm.rooms()):
                    await b_node.wait_for_entries(room.topic,
                                                  len(b_node.read(room.topic)) + 1)
            a_api: ApiServer = await nursery.start(serve_api, am, api_config)
            b_api: ApiServer = await nursery.start(serve_api, bm, api_config)
            yield Pair(Device("a", a_id, clinic, am, a_api),
                       Device("b", b_id, lab, bm, b_api), room.topic, b2_id.public_key,
                       uploads, a2_id.public_key)
            nursery.cancel_scope.cancel()
