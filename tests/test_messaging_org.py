"""The organisation control topic: certificates, revocations, who may administer."""

from __future__ import annotations

import os
import random

from messaging_helpers import World

from p2pmsg.certs import Role, issue_certificate
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
