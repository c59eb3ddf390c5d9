"""Export bundles (verified offline), breach triage, records of processing."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from governance_helpers import Clinic
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmsg.blobs import BlobStore
from p2pmsg.governance.audit import AuditKind, AuditLog
from p2pmsg.governance.breach import device_exposure, node_exposure
from p2pmsg.governance.erasure import erase_person
from p2pmsg.governance.export import (
    export_person,
    export_room,
    verify_bundle,
    verify_bundle_data,
    write_bundle,
)
from p2pmsg.governance.federation import Organisation, OrgKind
from p2pmsg.governance.records import ProcessingConfig, render_records
from p2pmsg.governance.retention import DAY_MS, RetentionConfig
from p2pmsg.identity import Identity
from p2pmsg.messaging.compose import compose_remove
from p2pmsg.policy import TopicPolicy
from p2pmsg.store.memory import MemoryStore

NODE = Identity.from_seed(b"\x03" * 32)


def test_room_export_roundtrip_and_offline_verification(tmp_path: Path) -> None:
    c = Clinic()
    m1 = c.say(c.alice, "Befund folgt")
    c.say(c.bert, "danke")
    store = MemoryStore()
    c.load(store)
    view = c.world.room(c.topic).view
    bundle = export_room(store, view, c.bob, now_ms=5)
    texts = {m["content"]["text"] for m in bundle["messages"]}
    assert texts == {"Befund folgt", "danke"}
    path = tmp_path / "room.json"
    with AuditLog(tmp_path / "audit.db", NODE) as audit:
        write_bundle(bundle, path, audit=audit, request_ref="Art15-1")
        rec = audit.query(kinds=[AuditKind.EXPORT])[0]
        assert rec.details["messages"] == 2 and "Befund" not in json.dumps(rec.details)
    assert path.stat().st_mode & 0o777 == 0o600
    report = verify_bundle(path)
    assert report.ok, report.problems
    assert report.entries == len(bundle["entries"]) and report.messages == 2
    assert report.links_checked == report.entries and report.payloads_checked == report.entries

    # any tampering is found
    forged = json.loads(path.read_text())
    forged["messages"][0]["author"] = c.bert.public_key.hex()
    assert not verify_bundle_data(forged).ok
    forged = json.loads(path.read_text())
    rec0 = next(r for r in forged["entries"] if r["id"] == m1.id.hex())
    rec0["payload"] = rec0["payload"][:-2] + ("00" if rec0["payload"][-2:] != "00" else "01")
    assert not verify_bundle_data(forged).ok
    forged = json.loads(path.read_text())
    forged["entries"] = [r for r in forged["entries"] if r["id"] != m1.id.hex()]
    assert not verify_bundle_data(forged).ok  # message without entry, and a broken chain
    forged = json.loads(path.read_text())
    sig_flip = forged["entries"][0]["entry"]
    forged["entries"][0]["entry"] = sig_flip[:-2] + ("00" if sig_flip[-2:] != "00" else "01")
    assert not verify_bundle_data(forged).ok


def test_person_export_after_erasure_still_verifies() -> None:
    c = Clinic()
    c.say(c.alice, "eins")
    c.say(c.bob, "zwei")
    store = MemoryStore()
    c.load(store)
    view = c.world.room(c.topic).view
    bundle = export_person(store, [c.bob.public_key], [view], c.bob, now_ms=1)
    assert [m["content"]["text"] for m in bundle["messages"]] == ["zwei"]
    assert bundle["entries"] and all(
        bytes.fromhex(r["entry"])[:80].find(c.bob.public_key) >= 0 for r in bundle["entries"])
    assert verify_bundle_data(bundle).ok
    erase_person(store, [c.alice.public_key], NODE, "r", 1, 2)
    after = export_room(store, view, None, now_ms=3)
    assert verify_bundle_data(after).ok
    assert any(r["payload_state"] == "erased" for r in after["entries"])


@settings(max_examples=150)
@given(st.recursive(st.none() | st.integers() | st.text(max_size=10),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                        max_size=4),
                    max_leaves=20))
def test_bundle_verifier_never_crashes(value: object) -> None:
    wrapped = {"format": "p2pmsg-export/1", "entries": value, "messages": value}
    for data in (value, wrapped):
        report = verify_bundle_data(data)
        assert isinstance(report.ok, bool)


def test_what_could_a_device_read() -> None:
    c = Clinic()
    first = c.world.room(c.topic).view.epochs[0].id
    c.say(c.bert, "vor dem Entfernen")
    state = c.world.room(c.topic)
    c.world.append(c.alice, c.topic, compose_remove(state, c.alice, c.bert.public_key))
    second = c.rekey(c.alice).id
    c.say(c.alice, "nach dem Entfernen")
    view = c.world.room(c.topic).view
    (bert,) = device_exposure(c.bert.public_key, [view])
    assert not bert.member_now and [e.epoch for e in bert.epochs] == [first]
    assert bert.messages == 1
    (alice,) = device_exposure(c.alice.public_key, [view])
    assert alice.member_now and [e.epoch for e in alice.epochs] == [first, second]
    assert alice.messages == 2
    assert device_exposure(Identity.generate().public_key, [view]) == []
    policy = TopicPolicy({c.topic: [b"n" * 32]})
    assert node_exposure(policy, b"n" * 32, [c.topic, b"x" * 32]) == [c.topic]


def test_records_of_processing_from_config() -> None:
    org = Organisation(b"\x01" * 32, "Rehaklinik Süd", OrgKind.CLINIC, (b"\x02" * 32,))
    room = b"\x05" * 32
    text = render_records(ProcessingConfig(
        controller="Klinikum Nord, Kiel", dpo_contact="dsb@klinikum.example",
        recipients=(org,),
        retention=RetentionConfig(default_ms=30 * DAY_MS, per_room={room: None},
                                  per_author_org={org.org_id: 14 * DAY_MS},
                                  legal_holds=frozenset({room})),
        room_names={room: "Tumorboard"}))
    assert "Rehaklinik Süd | clinic" in text
    assert "Default: 30 days" in text and "Content written by Rehaklinik Süd: 14 days" in text
    assert "Tumorboard: kept until erased" in text and "Legal hold" in text
    assert "Art. 32" in text


def test_export_includes_attachments_and_verification_catches_tampering(
        tmp_path: Path) -> None:
    c = Clinic()
    data = b"%PDF-1.7 Befund " * 300
    with BlobStore(tmp_path / "blobs", durable=False) as blobs:
        msg, root = c.attach(c.alice, blobs, data)
        store = MemoryStore()
        c.load(store)
        view = c.world.room(c.topic).view
        assert "attachments" not in export_room(store, view, c.bob, now_ms=5)  # default
        bundle = export_room(store, view, c.bob, now_ms=5, blobs=blobs)
        person = export_person(store, [c.alice.public_key], [view], c.bob, now_ms=5,
                               blobs=blobs)
    for b in (bundle, person):
        [att] = b["attachments"]
        assert att["message"] == msg.id.hex() and att["root"] == root.hex()
        assert base64.b64decode(att["data"]) == data and att["name"] == "scan.pdf"
    path = tmp_path / "room.json"
    write_bundle(bundle, path)
    report = verify_bundle(path)
    assert report.ok, report.problems
    assert report.attachments == 1

    def forged(change: Callable[[dict[str, Any]], None]) -> bool:
        copy = json.loads(path.read_text())
        change(copy["attachments"][0])
        return verify_bundle_data(copy).ok

    def flip_file(att: dict[str, Any]) -> None:
        raw = bytearray(base64.b64decode(att["data"]))
        raw[7] ^= 1
        att["data"] = base64.b64encode(bytes(raw)).decode()

    def flip_chunk(att: dict[str, Any]) -> None:
        raw = bytearray(base64.b64decode(att["objects"]["chunks"][0]))
        raw[-1] ^= 1
        att["objects"]["chunks"][0] = base64.b64encode(bytes(raw)).decode()

    def other_message(att: dict[str, Any]) -> None:
        att["message"] = "00" * 32

    assert not forged(flip_file)
    assert not forged(flip_chunk)
    assert not forged(other_message)
    assert forged(lambda att: None)  # the unchanged copy still verifies
