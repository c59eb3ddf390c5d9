"""The messenger end to end over real QUIC on loopback (real time, no mock clock).

Three organisations, two devices each; every device is its own node with one
:class:`p2pmsg_quic.QuicTransport` bound to ``127.0.0.1`` port 0. Nodes open one
after the other and each dials every node opened before it (a full mesh: files
are fetched from a peer that holds them, so receivers must reach the sender
directly; docs/api.md "Not done"). The room is planned before the nodes open, as
in tests/test_messenger_e2e.py (which covers the same flows in virtual time over
the memory transport); this file shows the same thing holds over QUIC.

The cut in the resume test is a QUIC CONNECTION_CLOSE sent by the serving node on
the live connection (``ConnectionDriver.close`` of the session's QuicPeerStream, a
private handle: the transport has no public "kill this connection" call). Both
sides see the connection terminate, the sessions end, the downloader's dial loop
redials and the fetch resumes on the new session.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

pytest.importorskip("p2pmsg_quic", reason="the QUIC transport plugin is not installed")

from node_helpers import has_entry, wait_until
from p2pmsg_quic import QuicSettings, QuicTransport

from p2pmsg.blobs import BlobStore
from p2pmsg.certs import DeviceCertificate, Role, issue_certificate
from p2pmsg.identity import Identity
from p2pmsg.messaging import (
    Attachment,
    FhirCommunication,
    MemberSpec,
    MessageStatus,
    Reply,
    Text,
)
from p2pmsg.messenger import (
    Messenger,
    RoomPlan,
    messenger_topics,
    org_control_items,
    plan_room,
)
from p2pmsg.net.base import PeerHint
from p2pmsg.node import Node, NodeConfig, serve_node
from p2pmsg.policy import AllowAllPolicy
from p2pmsg.store.memory import MemoryStore

ORGS = ("a", "b", "c")
DEVICES = ("a1", "a2", "b1", "b2", "c1", "c2")
# Loopback carries large datagrams; aioquic is CPU-bound per packet.
SETTINGS = QuicSettings(max_datagram_size=16000, idle_timeout=30.0)
TIMEOUT = 60.0


def ident(name: str) -> Identity:
    return Identity.from_seed(hashlib.blake2b(b"messenger-quic/" + name.encode(),
                                             digest_size=32).digest())


@dataclass
class Federation:
    roots: dict[str, Identity]
    room: RoomPlan
    nodes: dict[str, Node] = field(default_factory=dict)
    transports: dict[str, QuicTransport] = field(default_factory=dict)
    m: dict[str, Messenger] = field(default_factory=dict)

    def org(self, device: str) -> bytes:
        return self.roots[device[0]].public_key


@asynccontextmanager
async def federation(tmp_path: Path, devices: tuple[str, ...] = DEVICES,
                     ) -> AsyncIterator[Federation]:
    """Open one QUIC node + messenger per device (blob store each), full mesh."""
    now_ms = int(time.time() * 1000)
    orgs = sorted({d[0] for d in devices})
    roots = {o: ident("root-" + o) for o in orgs}
    certs: dict[str, list[DeviceCertificate]] = {o: [] for o in orgs}
    for name in devices:
        role = Role.ADMIN if name.endswith("1") else Role.MEMBER
        certs[name[0]].append(issue_certificate(
            roots[name[0]], ident(name).public_key, role, f"device {name}", 0, 2**50))
    org_ids = [roots[o].public_key for o in orgs]
    creator = devices[0]
    members = [MemberSpec(ident(n).public_key, roots[n[0]].public_key)
               for n in devices if n != creator]
    plan = plan_room(ident(creator), roots[creator[0]].public_key, members,
                     created_ms=now_ms)
    topics = messenger_topics(org_ids, [plan.topic])
    fed = Federation(roots, plan)
    async with trio.open_nursery() as nursery:
        for name in devices:
            identity = ident(name)
            store = MemoryStore()
            if name.endswith("1"):  # the admin's node starts with the root-signed control log
                items = org_control_items(roots[name[0]], certs[name[0]],
                                          start_ms=now_ms - 10_000)
                store.append([e for e, _ in items], {e.id: p for e, p in items})
            transport = QuicTransport(identity=identity, host="127.0.0.1", port=0,
                                      settings=SETTINGS)
            config = NodeConfig(
                identity=identity, store=store, topics=topics, policy=AllowAllPolicy(),
                transports=[transport], reconnect_initial=0.1, reconnect_max=1.0,
                seed=1, name=name,
                blob_store=BlobStore(tmp_path / f"blobs-{name}", durable=False))
            node: Node = await nursery.start(serve_node, config)
            for earlier, other in fed.nodes.items():
                node.add_peer(PeerHint(other.id, fed.transports[earlier].addresses()[0]))
            fed.nodes[name] = node
            fed.transports[name] = transport
            fed.m[name] = Messenger(node, fed.org(name), orgs=org_ids)
        # epochs are sealed only to devices whose certificates a node already holds
        everyone = [ident(n).public_key for n in devices]
        with trio.fail_after(TIMEOUT):
            for m in fed.m.values():
                await m.wait_certified(everyone)
        try:
            yield fed
        finally:
            nursery.cancel_scope.cancel()




async def everywhere(fed: Federation, entry_id: bytes) -> None:
    await wait_until(lambda: all(has_entry(n, fed.room.topic, entry_id)
                                 for n in fed.nodes.values()))


FHIR = json.dumps({"resourceType": "Communication", "status": "completed",
                   "payload": [{"contentString": "Labor: CRP 12 mg/l"}]})


async def test_cross_org_room_over_quic_every_kind_file_and_removal(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 123)
    async with federation(tmp_path) as fed:
        m, topic = fed.m, fed.room.topic
        # every node really talks QUIC: the mesh is up before anything is written
        await wait_until(lambda: all(len(n.connected_peers()) == len(DEVICES) - 1
                                     for n in fed.nodes.values()))
        await m["a1"].create_room_from(fed.room, name="Station 3 / Labor / Reha")
        await wait_until(lambda: all(any(r.topic == topic for r in x.rooms())
                                     for x in m.values()))

        hello = await m["a1"].send_text(topic, "Übergabe Bett 4")
        await everywhere(fed, hello)
        reply = await m["b1"].send_reply(topic, hello, "Übernommen")
        edit = await m["a1"].send_edit(topic, hello, "Übergabe Bett 4, nüchtern")
        react = await m["c1"].react(topic, hello, "👍")
        fhir = await m["c2"].send_fhir(topic, FHIR, "CRP 12 mg/l")
        oops = await m["b2"].send_text(topic, "falscher Raum")
        redact = await m["b2"].redact(topic, oops)
        file_id = await m["a2"].send_file(topic, data, kind="document",
                                          mime="application/pdf", name="befund.pdf")
        for eid in (reply, edit, react, fhir, redact, file_id):
            await everywhere(fed, eid)

        reference = m["a1"].messages(topic)
        for name in DEVICES:  # decrypted and identical on every member device
            assert m[name].messages(topic) == reference, name
        msgs = {x.id: x for x in reference}
        assert sorted(msgs) == sorted([hello, reply, fhir, oops, file_id])
        assert msgs[hello].content == Text("Übergabe Bett 4, nüchtern")
        assert msgs[hello].history == (Text("Übergabe Bett 4"),)
        assert msgs[hello].reactions == {"👍": [m["c1"].device]}
        assert msgs[reply].content == Reply(hello, "Übernommen")
        assert msgs[reply].org == fed.org("b1")
        assert msgs[fhir].content == FhirCommunication(FHIR, "CRP 12 mg/l")
        assert msgs[oops].status is MessageStatus.REDACTED and msgs[oops].content is None

        # the file: downloaded over QUIC from a2's node by a device of each other org
        attachment = msgs[file_id].content
        assert isinstance(attachment, Attachment)
        assert attachment.descriptor.size == len(data)
        for name in ("b2", "c1"):
            message = next(x for x in m[name].messages(topic) if x.id == file_id)
            dest = tmp_path / f"{name}-befund.pdf"
            seen: list[tuple[int, int]] = []
            with trio.fail_after(TIMEOUT):
                written = await m[name].download(message, dest,
                                                 progress=lambda d, t, s=seen: s.append((d, t)))
            assert written == len(data) and dest.read_bytes() == data
            assert seen[-1] == (len(data), len(data))
            assert fed.nodes[name].statistics().blob_chunks_received > 0

        # removal: c2 still receives the ciphertext but cannot open what follows
        await m["a1"].remove_member(topic, m["c2"].device)
        secret = await m["a1"].send_text(topic, "ohne c2")
        await everywhere(fed, secret)
        epoch = m["a1"]._room_state(topic).view.current_epoch
        assert epoch is not None and m["c2"].device not in epoch.recipients
        seen_by_c2 = {x.id: x for x in m["c2"].messages(topic)}
        assert seen_by_c2[hello].content == Text("Übergabe Bett 4, nüchtern")
        assert seen_by_c2[secret].status is MessageStatus.UNDECRYPTABLE
        assert seen_by_c2[secret].content is None
        for name in ("a2", "b1", "b2", "c1"):
            assert {x.id: x for x in m[name].messages(topic)}[secret].content \
                == Text("ohne c2"), name


def kill_connection(server: Node, peer_id: bytes) -> None:
    """Close the QUIC connection that carries ``server``'s session with ``peer_id``
    (CONNECTION_CLOSE with an application error; both ends terminate it)."""
    from aioquic.quic.packet import QuicErrorCode

    session = server._sessions[peer_id]
    driver = session.stream._driver  # type: ignore[attr-defined]
    driver.close(error_code=QuicErrorCode.INTERNAL_ERROR, reason="test: connection cut")


async def test_attachment_resumes_after_quic_connection_cut(tmp_path: Path) -> None:
    size = 100 * 1024 * 1024 + 7
    data = os.urandom(size)
    async with federation(tmp_path, ("a1", "b1")) as fed:
        m, topic = fed.m, fed.room.topic
        a1, b1 = fed.nodes["a1"], fed.nodes["b1"]
        await m["a1"].create_room_from(fed.room)
        await wait_until(lambda: any(r.topic == topic for r in m["b1"].rooms()))
        file_id = await m["a1"].send_file(topic, data, kind="video", mime="video/mp4")
        await everywhere(fed, file_id)
        message = next(x for x in m["b1"].messages(topic) if x.id == file_id)
        assert isinstance(message.content, Attachment)
        root = message.content.descriptor.content_hash
        store = b1.blob_store
        assert store is not None

        cut = trio.Event()
        state: dict[str, object] = {}

        def progress(done: int, total: int) -> None:
            if done >= total // 3 and not cut.is_set():
                state["missing"] = len(store.missing(root))
                state["served"] = a1.statistics().blob_objects_served
                state["opened"] = a1.statistics().sessions_opened
                kill_connection(a1, b1.id)
                cut.set()

        dest = tmp_path / "b1-video.mp4"
        with trio.fail_after(120):
            written = await m["b1"].download(message, dest, progress=progress)
        assert cut.is_set()
        assert written == size and dest.read_bytes() == data
        missing_at_cut = state["missing"]
        assert isinstance(missing_at_cut, int) and missing_at_cut > 0
        manifest = store.get_manifest(root)
        assert manifest is not None and missing_at_cut < manifest.chunk_count
        # a new session carried the rest, and a1 served no chunk twice: at most the
        # chunks missing at the cut (those in flight when it was cut were lost) plus
        # the manifest objects asked again on the new session
        stats = a1.statistics()
        assert isinstance(state["opened"], int) and stats.sessions_opened > state["opened"]
        assert isinstance(state["served"], int)
        served_after = stats.blob_objects_served - state["served"]
        assert served_after <= missing_at_cut + 2
        assert served_after < manifest.chunk_count
