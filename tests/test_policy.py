"""Replication policy: explicit readers, deny by default."""

from __future__ import annotations

from p2pmsg.policy import AllowAllPolicy, Policy, TopicPolicy

T1, T2 = b"\x01" * 32, b"\x02" * 32
P, Q, R = b"p" * 32, b"q" * 32, b"r" * 32


def test_topic_policy_denies_unlisted_peers_and_topics() -> None:
    policy = TopicPolicy({T1: [P]})
    assert isinstance(policy, Policy)
    assert policy.may_read(P, T1)
    assert not policy.may_read(P, T2)
    assert not policy.may_read(Q, T1)
    assert policy.allow_peer(P)
    assert not policy.allow_peer(Q)
    assert not TopicPolicy().allow_peer(P)


def test_topic_policy_extra_peers_connect_but_read_nothing() -> None:
    policy = TopicPolicy({T1: [P]}, peers=[R])
    assert policy.allow_peer(R)
    assert not policy.may_read(R, T1)


def test_grant_and_revoke() -> None:
    policy = TopicPolicy()
    policy.grant(T2, Q)
    assert policy.may_read(Q, T2) and policy.allow_peer(Q)
    assert policy.readers(T2) == frozenset({Q})
    policy.revoke(T2, Q)
    assert not policy.may_read(Q, T2) and not policy.allow_peer(Q)


def test_allow_all() -> None:
    policy = AllowAllPolicy()
    assert isinstance(policy, Policy)
    assert policy.allow_peer(P) and policy.may_read(Q, T2)
