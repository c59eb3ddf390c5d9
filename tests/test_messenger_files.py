"""Files through the messenger: ``send_file`` / ``download`` across organisations.

Uses the three-organisation federation of tests/test_messenger_e2e.py (virtual
time, memory transport). Devices normally reach each other only through org A's
relay, which holds no room keys and therefore cannot know a blob's room: blobs are
fetched from a peer that holds them, so the receivers here also dial the sender's
node directly (relay forwarding of blobs is not implemented; docs/attachments.md).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import trio
import trio.testing
from test_messenger_e2e import build, everywhere, wait_until

from p2pmsg.blobs import BlobUnavailableError
from p2pmsg.errors import LocalProtocolError
from p2pmsg.messaging import Attachment, Kind
from p2pmsg.net.base import PeerHint


async def test_file_sent_in_cross_org_room_downloads_byte_identical(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 777)
    src = tmp_path / "befund.pdf"
    src.write_bytes(data)
    async with trio.open_nursery() as nursery:
        fed = await build(nursery, tmp_path, blobs=True)
        m, topic = fed.m, fed.room.topic
        await m["a1"].create_room_from(fed.room, name="Befunde")
        await wait_until(lambda: all(any(r.topic == topic for r in x.rooms())
                                     for x in m.values()))
        a1 = fed.nodes["a1"]
        for name in ("b1", "c1"):
            fed.nodes[name].add_peer(PeerHint(a1.id, "memory://a1"))

        msg_id = await m["a1"].send_file(topic, src, kind="document", mime="application/pdf")
        voice_id = await m["a1"].send_file(topic, b"\x01voice" * 1000, kind=Kind.VOICE,
                                           mime="audio/ogg")
        await everywhere(fed, voice_id, ("b1", "c1"))

        message = next(x for x in m["c1"].messages(topic) if x.id == msg_id)
        assert isinstance(message.content, Attachment)
        assert message.content.kind is Kind.DOCUMENT
        assert message.content.descriptor.name == "befund.pdf"
        assert message.content.descriptor.size == len(data)
        seen: list[tuple[int, int]] = []
        dest = tmp_path / "c1-befund.pdf"
        with trio.fail_after(120):
            written = await m["c1"].download(message, dest,
                                             progress=lambda d, t: seen.append((d, t)))
        assert written == len(data) and dest.read_bytes() == data
        assert seen[-1] == (len(data), len(data))

        voice = next(x for x in m["b1"].messages(topic) if x.id == voice_id)
        out = io.BytesIO()
        with trio.fail_after(120):
            await m["b1"].download(voice, out)
        assert out.getvalue() == b"\x01voice" * 1000
        # the relay node stored no part of the file (it has no blob store at all)
        assert fed.nodes["relay"].blob_store is None
        nursery.cancel_scope.cancel()


async def test_download_refuses_non_attachments_and_unreachable_blobs(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        fed = await build(nursery, tmp_path, blobs=True)
        m, topic = fed.m, fed.room.topic
        await m["a1"].create_room_from(fed.room)
        await wait_until(lambda: any(r.topic == topic for r in m["b1"].rooms()))
        text_id = await m["a1"].send_text(topic, "kein Anhang")
        file_id = await m["a1"].send_file(topic, b"x" * 5000, kind="image", mime="image/png")
        await everywhere(fed, file_id, ("b1",))
        msgs = {x.id: x for x in m["b1"].messages(topic)}
        with pytest.raises(LocalProtocolError):
            await m["b1"].download(msgs[text_id], io.BytesIO())
        # b1 reaches only the relay, which holds no blob: unavailable, nothing written
        out = io.BytesIO()
        with trio.fail_after(60), pytest.raises(BlobUnavailableError):
            await m["b1"].download(msgs[file_id], out)
        assert out.getvalue() == b""
        with pytest.raises(ValueError):
            await m["a1"].send_file(topic, b"x", kind="text")
        nursery.cancel_scope.cancel()
