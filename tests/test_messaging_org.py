"""The organisation control topic: certificates, revocations, who may administer."""

from __future__ import annotations

import os
import random

from messaging_helpers import World

from p2pmsg.certs import Role, issue_certificate, person_id
from p2pmsg.identity import Identity
from p2pmsg.messaging import (
    OrgState,
    compose_certificate,
    compose_revocation,
    control_topic,
)


def test_control_topic_is_domain_separated_and_per_org() -> None:
    a, b = os.urandom(32), os.urandom(32)
    assert control_topic(a) != control_topic(b)
    assert control_topic(a) != a
    assert len(control_topic(a)) == 32


def test_certified_devices_with_roles() -> None:
    w = World()
    org = w.new_org()
    nurse = w.new_device(org, "nurse")
    admin = w.new_device(org, "it-admin", Role.ADMIN)
    state = w.org_state(org)
    active = state.active_devices(w.now_ms)
    assert {k: c.role for k, c in active.items()} == {
        nurse.public_key: Role.MEMBER, admin.public_key: Role.ADMIN}
    assert active[nurse.public_key].display_name == "nurse"
    assert state.ignored == {}


def test_certificate_of_another_org_is_ignored() -> None:
    w = World()
    org, other = w.new_org(), w.new_org()
    dev = Identity.generate()
    foreign = issue_certificate(other.root, dev.public_key, Role.MEMBER, "x", 0, 10**15)
    entry = w.append(org.root, control_topic(org.id), compose_certificate(foreign))
    state = w.org_state(org)
    assert dev.public_key not in state.active_devices(w.now_ms)
    assert entry.id in state.ignored


def test_only_root_or_admin_devices_administer() -> None:
    w = World()
    org = w.new_org()
    member = w.new_device(org, "member")
    admin = w.new_device(org, "admin", Role.ADMIN)
    outsider = Identity.generate()
    d1, d2, d3 = Identity.generate(), Identity.generate(), Identity.generate()
    topic = control_topic(org.id)
    for author, dev in ((member, d1), (admin, d2), (outsider, d3)):
        cert = issue_certificate(org.root, dev.public_key, Role.MEMBER, "d", 0, 10**15)
        w.append(author, topic, compose_certificate(cert))
    # a member's revocation of the admin does not count; the admin's does
    w.append(member, topic, compose_revocation(admin.public_key, 0))
    w.append(admin, topic, compose_revocation(member.public_key, (w.now_ms + 1) << 16))
    state = w.org_state(org)
    active = state.active_devices(w.now_ms + 5)
    assert d1.public_key not in active  # published by a mere member
    assert d2.public_key in active
    assert d3.public_key not in active  # published by an outsider
    assert admin.public_key in active
    assert member.public_key not in active


def test_revocation_by_time_and_by_log_cutoff() -> None:
    w = World()
    org = w.new_org()
    dev = w.new_device(org, "tablet")
    room = os.urandom(32)
    e1 = w.append(dev, room, b"one")
    e2 = w.append(dev, room, b"two")
    other_topic = os.urandom(32)
    w.revoke(org, dev, effective_ts=(w.now_ms + 100) << 16, seal_logs=False)
    w.append(org.root, control_topic(org.id),
             compose_revocation(dev.public_key, 2**63, {room: 1}))
    state = w.org_state(org)
    assert state.accepts_entry(e1)
    assert not state.accepts_entry(e2)  # beyond the sealed height of that log
    ts_before, ts_after = (w.now_ms + 50) << 16, (w.now_ms + 100) << 16
    assert state.accepts(dev.public_key, other_topic, 9, ts_before)
    assert not state.accepts(dev.public_key, other_topic, 9, ts_after)
    assert not state.is_active(dev.public_key, w.now_ms)


def test_certificate_validity_is_judged_at_the_entry_time() -> None:
    w = World()
    org = w.new_org()
    dev = w.new_device(org, "short-lived", valid_ms=1_000)
    old = w.append(dev, os.urandom(32), b"in time")
    state = w.org_state(org)
    assert state.accepts_entry(old)
    late = (w.now_ms + 2_000) << 16
    assert not state.accepts(dev.public_key, old.topic, 2, late)
    assert not state.is_active(dev.public_key, w.now_ms + 2_000)


def test_revoked_admin_cannot_administer_after_its_revocation() -> None:
    w = World()
    org = w.new_org()
    admin = w.new_device(org, "admin", Role.ADMIN)
    w.revoke(org, admin)
    w.tick(10)
    newbie = Identity.generate()
    cert = issue_certificate(org.root, newbie.public_key, Role.ADMIN, "n", 0, 10**15)
    entry = w.append(admin, control_topic(org.id), compose_certificate(cert))
    state = w.org_state(org)
    assert newbie.public_key not in state.active_devices(w.now_ms)
    assert entry.id in state.ignored


def test_root_cannot_be_revoked_and_unknown_kinds_are_kept() -> None:
    w = World()
    org = w.new_org()
    topic = control_topic(org.id)
    bad = w.append(org.root, topic, compose_revocation(org.id, 0))
    from p2pmsg import _cbor
    future = w.append(org.root, topic, _cbor.dumps([70, 1, "policy v2"]))
    state = w.org_state(org)
    assert bad.id in state.ignored
    assert state.unknown == (future.id,)


def test_org_state_is_independent_of_arrival_order() -> None:
    w = World()
    org = w.new_org()
    admin = w.new_device(org, "admin", Role.ADMIN)
    devs = [w.new_device(org, f"d{i}") for i in range(4)]
    w.revoke(org, devs[0], by=admin)
    w.revoke(org, admin)
    w.tick(5)
    w.revoke(org, devs[1], by=admin)  # after the admin's own revocation: must not count
    items = w.topics[control_topic(org.id)]
    reference = OrgState.from_entries(org.id, items)
    rng = random.Random(4)
    for _ in range(10):
        shuffled = items[:]
        rng.shuffle(shuffled)
        again = OrgState.from_entries(org.id, shuffled)
        assert again.devices == reference.devices
        assert again.ignored == reference.ignored
    active = reference.active_devices(w.now_ms)
    assert set(active) == {d.public_key for d in devs[1:]}


# --------------------------------------------------------------------------- persons


def test_person_to_devices_and_back() -> None:
    w = World()
    org = w.new_org()
    p = person_id(org.root, "dr-a")
    phone = w.new_device(org, "phone", person=p)
    laptop = w.new_device(org, "laptop", person=p)
    ward = w.new_device(org, "ward-tablet")
    state = w.org_state(org)
    assert state.person_of(phone.public_key) == p
    assert state.person_of(laptop.public_key) == p
    assert state.person_of(ward.public_key) is None
    assert state.person_of(Identity.generate().public_key) is None
    assert state.person_devices(p) == (phone.public_key, laptop.public_key)
    assert set(state.devices_of(p, w.now_ms)) == {phone.public_key, laptop.public_key}
    assert state.devices_of(bytes(16), w.now_ms) == {}
    w.revoke(org, phone)
    w.tick(5)
    state = w.org_state(org)
    assert set(state.devices_of(p, w.now_ms)) == {laptop.public_key}
    assert state.person_of(phone.public_key) == p  # still attributed (history)
    assert state.person_devices(p) == (phone.public_key, laptop.public_key)


def test_first_accepted_certificate_fixes_the_person() -> None:
    w = World()
    org = w.new_org()
    p, q = person_id(org.root, "a"), person_id(org.root, "b")
    dev = w.new_device(org, "phone", person=p)
    topic = control_topic(org.id)
    moved = w.append(org.root, topic, compose_certificate(issue_certificate(
        org.root, dev.public_key, Role.MEMBER, "phone", 0, 10**15, person=q)))
    dropped = w.append(org.root, topic, compose_certificate(issue_certificate(
        org.root, dev.public_key, Role.MEMBER, "phone", 0, 10**15)))
    renewal = w.append(org.root, topic, compose_certificate(issue_certificate(
        org.root, dev.public_key, Role.ADMIN, "phone", w.now_ms - 5, 10**15, person=p)))
    state = w.org_state(org)
    assert state.ignored[moved.id] == "certificate names another person for this device"
    assert state.ignored[dropped.id] == "certificate names another person for this device"
    assert renewal.id not in state.ignored
    assert state.person_of(dev.public_key) == p
    assert state.person_devices(q) == ()
    assert state.active_devices(w.now_ms)[dev.public_key].role is Role.ADMIN
    # and a device first certified without a person cannot be given one later
    plain = w.new_device(org, "ward")
    late = w.append(org.root, topic, compose_certificate(issue_certificate(
        org.root, plain.public_key, Role.MEMBER, "ward", 0, 10**15, person=q)))
    state = w.org_state(org)
    assert late.id in state.ignored and state.person_of(plain.public_key) is None


def test_person_mapping_is_independent_of_arrival_order() -> None:
    w = World()
    org = w.new_org()
    p, q = person_id(org.root, "a"), person_id(org.root, "b")
    devs = [w.new_device(org, f"d{i}", person=(p, q, None)[i % 3]) for i in range(6)]
    topic = control_topic(org.id)
    w.append(org.root, topic, compose_certificate(issue_certificate(
        org.root, devs[0].public_key, Role.MEMBER, "x", 0, 10**15, person=q)))
    w.revoke(org, devs[3])
    items = w.topics[topic]
    reference = OrgState.from_entries(org.id, items)
    rng = random.Random(7)
    for _ in range(10):
        shuffled = items[:]
        rng.shuffle(shuffled)
        again = OrgState.from_entries(org.id, shuffled)
        assert again.persons == reference.persons
        assert again.ignored == reference.ignored
    assert reference.person_devices(p) == (devs[0].public_key, devs[3].public_key)
    assert reference.person_of(devs[0].public_key) == p


def test_certificate_of_a_newer_version_is_kept_as_unknown() -> None:
    """A v3 certificate (a newer peer's) is kept and listed, not an error; a malformed
    v2 one is ignored."""
    import cbor2

    from p2pmsg.identity import Domain
    from p2pmsg.messaging.kinds import VERSIONS, Kind
    from p2pmsg.messaging.org import UnknownControl, decode_control_payload

    w = World()
    org = w.new_org()
    topic = control_topic(org.id)
    dev = Identity.generate().public_key

    def wrapped(body: list[object]) -> bytes:
        b = cbor2.dumps(body, canonical=True)
        cert = cbor2.dumps([b, org.root.sign(Domain.CERTIFICATE, b)], canonical=True)
        return cbor2.dumps([int(Kind.CERTIFICATE), VERSIONS[Kind.CERTIFICATE], cert],
                           canonical=True)

    base = [org.id, dev, "member", "x", 0, 10**15]
    v3 = wrapped([3, *base, bytes(16), "something new"])
    assert isinstance(decode_control_payload(v3), UnknownControl)
    future = w.append(org.root, topic, v3)
    broken = w.append(org.root, topic, wrapped([2, *base]))  # v2 without its person
    state = w.org_state(org)
    assert state.unknown == (future.id,)
    assert future.id not in state.ignored
    assert state.ignored[broken.id] == "payload malformed"
    assert dev not in state.devices
