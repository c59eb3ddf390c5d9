"""The node's audit hook and policy re-validation (issue 6: "checked at connection and
again for every topic"; audit of connections, refusals, protocol errors, forks, bad
signatures). All over the memory transport under a mock clock."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import trio
import trio.testing
from chain_helpers import build_chain
from node_helpers import T1, T2, config, ident, start

from p2pmsg.entry import create_entry, entry_id
from p2pmsg.governance import AuditKind, AuditLog, GovernancePolicy, LocalPolicy
from p2pmsg.governance.federation import (
    FederationRegistry,
    Organisation,
    OrgKind,
    issue_federation_list,
)
from p2pmsg.identity import Identity, short_id
from p2pmsg.messaging.payloads import RoomRole
from p2pmsg.messaging.room import Member, RoomView
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.node import AuditSink, Node, audited_allow_peer
from p2pmsg.policy import AllowAllPolicy, TopicPolicy
from p2pmsg.store.memory import MemoryStore

T0 = 1_700_000_000_000


class FakeSink:
    """In-memory audit sink with AuditLog's ``append`` signature."""

    def __init__(self) -> None:
        self.records: list[tuple[AuditKind, int, dict[str, Any]]] = []

    def append(self, kind: AuditKind, at_ms: int, **details: Any) -> None:
        self.records.append((kind, at_ms, details))

    def kinds(self) -> list[AuditKind]:
        return [k for k, _, _ in self.records]

    def of(self, kind: AuditKind) -> list[dict[str, Any]]:
        return [d for k, _, d in self.records if k is kind]


def _no_full_keys(sink: FakeSink, *keys: bytes) -> None:
    text = json.dumps([d for _, _, d in sink.records])
    for key in keys:
        assert key.hex() not in text


def test_fake_sink_and_audit_log_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(FakeSink(), AuditSink)
    with AuditLog(tmp_path / "a.db", ident("a")) as log:
        assert isinstance(log, AuditSink)


async def test_accepted_connections_are_audited_with_short_ids(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    sink_a, sink_b = FakeSink(), FakeSink()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, dataclasses.replace(config(net, "a"), audit=sink_a))
        b = await start(nursery, dataclasses.replace(config(net, "b", peers=("a",)),
                                                     audit=sink_b))
        await b.wait_for_peer(a.id)
        await a.wait_for_peer(b.id)
        assert sink_a.of(AuditKind.CONNECTION_ACCEPTED) == [
            {"peer": short_id(b.id), "direction": "inbound"}]
        assert sink_b.of(AuditKind.CONNECTION_ACCEPTED) == [
            {"peer": short_id(a.id), "direction": "outbound"}]
        assert all(at >= T0 for _, at, _ in sink_a.records)
        _no_full_keys(sink_a, a.id, b.id)
        nursery.cancel_scope.cancel()


async def test_refused_peer_gets_no_byte_and_is_audited(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    sink = FakeSink()
    mallory = ident("mallory").public_key
    policy = TopicPolicy({T1: [ident("b").public_key]})  # mallory reads nothing
    async with trio.open_nursery() as nursery:
        a = await start(nursery, dataclasses.replace(config(net, "a", policy=policy),
                                                     audit=sink))
        await a.append(T1, b"secret-ish log data")
        stream = await net.transport("mallory", mallory).dial("memory://a", a.id)
        received = b""
        try:
            with trio.fail_after(5):
                while chunk := await stream.receive_some():
                    received += chunk
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await stream.aclose()
        assert received == b""  # closed before even a HELLO was written
        assert sink.of(AuditKind.CONNECTION_REFUSED) == [
            {"peer": short_id(mallory), "direction": "inbound"}]
        assert AuditKind.CONNECTION_ACCEPTED not in sink.kinds()
        assert a.statistics().peers_refused == 1 and a.statistics().sessions_opened == 0
        _no_full_keys(sink, mallory)
        nursery.cancel_scope.cancel()


async def test_refused_dial_and_transport_refusal_are_audited() -> None:
    sink = FakeSink()
    policy = TopicPolicy({T1: [ident("b").public_key]})
    check = audited_allow_peer(policy, sink, lambda: 42)
    assert check(ident("b").public_key) is True
    assert check(ident("mallory").public_key) is False
    assert sink.records == [(AuditKind.CONNECTION_REFUSED, 42, {
        "peer": short_id(ident("mallory").public_key), "direction": "inbound",
        "stage": "handshake"})]


async def test_topics_denied_at_hello_are_audited(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    sink = FakeSink()
    b_id = ident("b").public_key
    policy = TopicPolicy({T1: [b_id]})  # b may read T1, not T2
    async with trio.open_nursery() as nursery:
        a = await start(nursery, dataclasses.replace(
            config(net, "a", policy=policy, topics=(T1, T2)), audit=sink))
        await a.append(T2, b"not for b")
        b = await start(nursery, config(net, "b", peers=("a",), topics=(T1, T2)))
        await b.wait_converged([a.id], [T1, T2])
        assert sink.of(AuditKind.TOPICS_DENIED) == [
            {"peer": short_id(b_id), "count": 1, "topics": [short_id(T2)]}]
        assert b.read(T2) == []
        nursery.cancel_scope.cancel()


async def test_protocol_error_is_audited_with_its_reason_code(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    sink = FakeSink()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, dataclasses.replace(config(net, "a"), audit=sink))
        mallory = ident("mallory").public_key
        stream = await net.transport("mallory", mallory).dial("memory://a", a.id)
        await stream.send_all((0xFFFF_FFFF).to_bytes(4, "big") + b"x" * 100)
        with trio.move_on_after(2):
            try:
                while await stream.receive_some():
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await stream.aclose()
        while not sink.of(AuditKind.PROTOCOL_ERROR):
            await trio.sleep(0.05)
        [record] = sink.of(AuditKind.PROTOCOL_ERROR)
        assert record["peer"] == short_id(mallory)
        assert record["reason"] and record["reason"] == str(record["reason"]).strip()
        assert a.statistics().protocol_errors == 1
        nursery.cancel_scope.cancel()


async def test_fork_is_audited(autojump_clock: trio.testing.MockClock) -> None:
    base = build_chain(2, topic=T1)
    x = build_chain(1, identity=base.identity, after=base.entries[-1], tag=b"x")
    y = build_chain(2, identity=base.identity, after=base.entries[-1], tag=b"y")
    store_a, store_b = MemoryStore(), MemoryStore()
    store_a.append(base.entries + x.entries, {**base.payloads, **x.payloads})
    store_b.append(base.entries + y.entries, {**base.payloads, **y.payloads})
    net = MemoryNetwork()
    sink_a, sink_b = FakeSink(), FakeSink()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, dataclasses.replace(config(net, "a", store=store_a),
                                                     audit=sink_a))
        await start(nursery, dataclasses.replace(config(net, "b", peers=("a",), store=store_b),
                                                 audit=sink_b))
        while not (sink_a.of(AuditKind.FORK_DETECTED) and sink_b.of(AuditKind.FORK_DETECTED)):
            await trio.sleep(0.05)
        for sink in (sink_a, sink_b):
            [record] = sink.of(AuditKind.FORK_DETECTED)
            assert record["author"] == short_id(base.author)
            assert record["topic"] == short_id(T1) and record["seq"] == 3
        assert a.statistics().forks == 1
        nursery.cancel_scope.cancel()


async def test_bad_signature_is_audited(autojump_clock: trio.testing.MockClock) -> None:
    author = ident("author")
    good1 = create_entry(author, T1, 1, None, 1, b"one")
    bad1 = dataclasses.replace(good1, signature=bytes(64), id=entry_id(good1.raw + bytes(64)))
    e2 = create_entry(author, T1, 2, bad1.id, 2, b"two")
    poisoned = MemoryStore()
    poisoned.append([bad1, e2], {bad1.id: b"one", e2.id: b"two"})
    net = MemoryNetwork()
    sink = FakeSink()
    async with trio.open_nursery() as nursery:
        await start(nursery, config(net, "a", store=poisoned))
        b = await start(nursery, dataclasses.replace(config(net, "b", peers=("a",)),
                                                     audit=sink))
        while not b.bad_signatures():
            await trio.sleep(0.1)
        assert sink.of(AuditKind.BAD_SIGNATURE) == [{
            "author": short_id(author.public_key), "topic": short_id(T1), "seq": 1,
            "peer": short_id(ident("a").public_key)}]
        nursery.cancel_scope.cancel()


async def test_failing_sink_does_not_stop_the_node(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Broken:
        def append(self, kind: AuditKind, at_ms: int, **details: Any) -> None:
            raise ValueError("disk on fire")

    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, dataclasses.replace(config(net, "a"), audit=Broken()))
        b = await start(nursery, config(net, "b", peers=("a",)))
        await a.append(T1, b"x")
        await b.wait_for_entries(T1, 1)
        nursery.cancel_scope.cancel()


async def test_real_audit_log_records_a_verifiable_chain(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    net = MemoryNetwork()
    policy = TopicPolicy({T1: [ident("b").public_key]})
    with AuditLog(tmp_path / "audit.db", ident("a")) as log:
        async with trio.open_nursery() as nursery:
            a = await start(nursery, dataclasses.replace(
                config(net, "a", policy=policy, topics=(T1, T2)), audit=log))
            b = await start(nursery, config(net, "b", peers=("a",), topics=(T1, T2)))
            await b.wait_converged([a.id], [T1])
            stream = await net.transport("m", ident("mallory").public_key).dial(
                "memory://a", a.id)
            await stream.aclose()
            while not log.query(kinds=[AuditKind.CONNECTION_REFUSED]):
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        kinds = [r.kind for r in log.query()]
        assert AuditKind.CONNECTION_ACCEPTED in kinds
        assert AuditKind.TOPICS_DENIED in kinds
        assert AuditKind.CONNECTION_REFUSED in kinds
        assert log.verify() == len(kinds)


# -- re-validation ---------------------------------------------------------------------


def _org(name: str) -> Identity:
    return ident(f"org-{name}")


def _view(topic: bytes, members: dict[bytes, bytes]) -> RoomView:
    """A room view with only what GovernancePolicy reads: device -> org."""
    return RoomView(topic, None, {d: Member(d, o, RoomRole.MEMBER, bytes(32))
                                  for d, o in members.items()}, (), {}, ())


def _governance(issuer: Identity, node_orgs: dict[str, str]) -> GovernancePolicy:
    orgs: dict[str, list[bytes]] = {}
    for node, org in node_orgs.items():
        orgs.setdefault(org, []).append(ident(node).public_key)
    flist = issue_federation_list(issuer, 1, T0, [
        Organisation(_org(o).public_key, o, OrgKind.HOSPITAL, tuple(keys))
        for o, keys in orgs.items()])
    registry = FederationRegistry(issuer.public_key, flist.raw, now_ms=T0)
    return GovernancePolicy(registry, clock=lambda: T0 + 1, local=LocalPolicy())


async def test_revoked_org_stops_receiving_new_entries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Org B loses its last member device in the room T1: a's open session with b is
    closed, b reconnects and is granted T2 (still shared) but not T1 any more."""
    issuer = ident("issuer")
    nodes = {"a": "hosp-a", "b": "hosp-b"}
    pol_a, pol_b = _governance(issuer, nodes), _governance(issuer, nodes)
    dev_a, dev_b = ident("dev-a").public_key, ident("dev-b").public_key
    org_a, org_b = _org("hosp-a").public_key, _org("hosp-b").public_key
    for pol in (pol_a, pol_b):
        for topic in (T1, T2):
            pol.update_room(_view(topic, {dev_a: org_a, dev_b: org_b}))
    sink = FakeSink()
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, dataclasses.replace(
            config(net, "a", policy=pol_a, topics=(T1, T2)), audit=sink))
        b = await start(nursery, config(net, "b", peers=("a",), policy=pol_b,
                                        topics=(T1, T2)))
        await a.append(T1, b"before")
        await b.wait_for_entries(T1, 1)
        await a.wait_converged([b.id], [T1, T2])
        old = a._sessions[b.id]
        assert T1 in old.conn.granted

        version = pol_a.version
        pol_a.update_room(_view(T1, {dev_a: org_a}))  # b's org lost its last member
        assert pol_a.version == version + 1
        assert old.close_reason == "policy: topic_access_revoked"
        await a.append(T1, b"after revocation")
        # b (the dialer) reconnects; the new session no longer carries T1.
        while (s := a._sessions.get(b.id)) is None or s is old or not s.hello_received:
            await a._changed.park()
        assert T1 not in s.conn.granted and T2 in s.conn.granted
        await a.append(T2, b"still shared")
        await b.wait_for_entries(T2, 1)
        await a.wait_converged([b.id], [T1, T2])
        assert [a.payload(e) for e in a.read(T1)] == [b"before", b"after revocation"]
        assert [b.payload(e) for e in b.read(T1)] == [b"before"]
        [record] = sink.of(AuditKind.ACCESS_REVOKED)
        assert record == {"peer": short_id(b.id), "reason": "topic_access_revoked",
                          "topics": [short_id(T1)]}
        assert sink.of(AuditKind.TOPICS_DENIED)[-1]["topics"] == [short_id(T1)]
        assert a.statistics().sessions_revoked == 1
        nursery.cancel_scope.cancel()


async def test_unchanged_view_does_not_disturb_sessions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    issuer = ident("issuer")
    nodes = {"a": "hosp-a", "b": "hosp-b"}
    pol = _governance(issuer, nodes)
    members = {ident("dev-a").public_key: _org("hosp-a").public_key,
               ident("dev-b").public_key: _org("hosp-b").public_key}
    pol.update_room(_view(T1, members))
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a", policy=pol))
        b = await start(nursery, config(net, "b", peers=("a",), policy=AllowAllPolicy()))
        await b.wait_for_peer(a.id)
        await a.wait_for_peer(b.id)
        version = pol.version
        pol.update_room(_view(T1, members))
        assert pol.version == version
        assert a.revalidate_sessions() == 0
        assert a.connected_peers() == [b.id]
        nursery.cancel_scope.cancel()


async def test_revalidate_with_topic_policy_and_unlisted_peer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    b_id = ident("b").public_key
    policy = TopicPolicy({T1: [b_id]})
    async with trio.open_nursery() as nursery:
        a: Node = await start(nursery, config(net, "a", policy=policy))
        b = await start(nursery, config(net, "b", peers=("a",)))
        await b.wait_for_peer(a.id)
        policy.revoke(T1, b_id)  # TopicPolicy does not announce: ask explicitly
        assert a.revalidate_sessions() == 1
        await a.append(T1, b"after")
        with trio.move_on_after(5):
            await b.wait_for_entries(T1, 1)
        assert b.read(T1) == []
        assert a.statistics().peers_refused >= 1  # b's redials are refused now
        nursery.cancel_scope.cancel()


async def test_access_gained_later_is_asked_within_the_open_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Neither policy knows T1 when the session opens (nothing asked). b learns the
    room first (its INTEREST is denied by a), then a: a asks b in-protocol, b's grant
    of a's INTEREST makes b ask again, and T1 flows both ways in the same session."""
    issuer = ident("issuer")
    nodes = {"a": "hosp-a", "b": "hosp-b"}
    pol_a, pol_b = _governance(issuer, nodes), _governance(issuer, nodes)
    members = {ident("dev-a").public_key: _org("hosp-a").public_key,
               ident("dev-b").public_key: _org("hosp-b").public_key}
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, config(net, "a", policy=pol_a, topics=(T1,)))
        b = await start(nursery, config(net, "b", peers=("a",), policy=pol_b, topics=(T1,)))
        await b.wait_for_peer(a.id)
        await a.wait_for_peer(b.id)
        await a.append(T1, b"from a")
        await b.append(T1, b"from b")
        session = a._sessions[b.id]
        assert T1 not in session.conn.asked and T1 not in session.conn.granted
        opened = a.statistics().sessions_opened + b.statistics().sessions_opened
        pol_b.update_room(_view(T1, members))  # b asks a; a's policy still denies
        with trio.move_on_after(5):
            await a.wait_for_entries(T1, 2)
        assert len(a.read(T1)) == 1 and len(b.read(T1)) == 1
        pol_a.update_room(_view(T1, members))
        with trio.fail_after(30):
            await a.wait_for_entries(T1, 2)
            await b.wait_for_entries(T1, 2)
        assert {a.payload(e) for e in a.read(T1)} == {b"from a", b"from b"}
        assert {b.payload(e) for e in b.read(T1)} == {b"from a", b"from b"}
        assert a._sessions[b.id] is session  # no reconnect was needed
        assert a.statistics().sessions_opened + b.statistics().sessions_opened == opened
        assert a.statistics().sessions_revoked == b.statistics().sessions_revoked == 0
        nursery.cancel_scope.cancel()
