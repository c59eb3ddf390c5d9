"""The mDNS TXT schema: round trips, strict rejection of garbage, address handling.

Pure tests (no sockets). The fuzz invariant, h11-style: any properties mapping
either parses into an Advertisement or raises DecodeError -- nothing else -- and
the trio-side handler never raises and never hints a malformed record.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from p2pmsg_mdns import Advertisement, MdnsDiscovery, encode_txt, parse_txt, ports_from_addresses
from p2pmsg_mdns.discovery import _Resolved
from p2pmsg_mdns.txt import MAX_TXT_BYTES, format_address, usable_addresses

from p2pmsg.errors import DecodeError, Reason

NODE = bytes(range(32))
ORG = bytes(range(100, 132))

schemes = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True).filter(
    lambda s: s not in {"txtvers", "id", "org", "proto"}
)
advertisements = st.builds(
    Advertisement,
    node_id=st.binary(min_size=32, max_size=32),
    org_id=st.binary(min_size=32, max_size=32),
    protocol_version=st.integers(1, 0xFFFF),
    ports=st.lists(
        st.tuples(schemes, st.integers(1, 0xFFFF)),
        min_size=1,
        max_size=8,
        unique_by=lambda p: p[0],
    ).map(tuple),
)


def as_wire(props: dict[str, str]) -> dict[bytes, bytes | None]:
    """What zeroconf's ServiceInfo.properties hands a browser for our record."""
    return {k.encode(): v.encode() for k, v in props.items()}


def valid_props(**changes: bytes | None) -> dict[bytes, bytes | None]:
    ad = Advertisement(NODE, ORG, 1, (("quic", 4433), ("tcp", 4434)))
    props = as_wire(encode_txt(ad))
    for key, value in changes.items():
        props[key.encode()] = value
    return props


def test_encode_matches_documented_schema() -> None:
    ad = Advertisement(NODE, ORG, 1, (("quic", 4433), ("tcp", 4434)))
    assert encode_txt(ad) == {
        "txtvers": "1",
        "id": NODE.hex(),
        "org": ORG.hex(),
        "proto": "1",
        "transports": "quic,tcp",
        "quic": "4433",
        "tcp": "4434",
    }


@given(advertisements)
def test_round_trip(ad: Advertisement) -> None:
    assert parse_txt(as_wire(encode_txt(ad))) == ad


def test_unknown_keys_are_ignored() -> None:
    ad = parse_txt({**valid_props(), b"future": b"x", b"flag": None})
    assert ad.node_id == NODE
    assert ad.ports == (("quic", 4433), ("tcp", 4434))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"id": None}, Reason.MALFORMED),  # boolean attribute instead of a value
        ({"id": b"zz" * 32}, Reason.MALFORMED),
        ({"id": NODE.hex().upper().encode()}, Reason.MALFORMED),  # one spelling only
        ({"id": NODE.hex()[:-2].encode()}, Reason.MALFORMED),  # 31 bytes
        ({"org": b""}, Reason.MALFORMED),
        ({"txtvers": b"2"}, Reason.UNKNOWN_VERSION),
        ({"proto": b"0"}, Reason.MALFORMED),
        ({"proto": b"65536"}, Reason.MALFORMED),
        ({"proto": "\u0661".encode()}, Reason.MALFORMED),  # arabic-indic digit one
        ({"quic": b"0"}, Reason.MALFORMED),
        ({"quic": b"04433"}, Reason.MALFORMED),
        ({"quic": b"+4433"}, Reason.MALFORMED),
        ({"quic": b"4_433"}, Reason.MALFORMED),
        ({"tcp": None}, Reason.MALFORMED),
        ({"transports": b"quic,quic"}, Reason.MALFORMED),
        ({"transports": b"quic,"}, Reason.MALFORMED),
        ({"transports": b"QUIC"}, Reason.MALFORMED),
        ({"transports": b"quic,id"}, Reason.MALFORMED),  # a reserved key is no scheme
        ({"transports": b",".join(b"t%d" % i for i in range(9))}, Reason.TOO_LARGE),
        ({"junk": b"x" * 251}, Reason.TOO_LARGE),  # one string over 255 bytes
    ],
)
def test_malformed_fields_are_rejected(changes: dict[str, bytes | None], reason: Reason) -> None:
    with pytest.raises(DecodeError) as info:
        parse_txt(valid_props(**changes))
    assert info.value.reason is reason


@pytest.mark.parametrize("missing", [b"txtvers", b"id", b"org", b"proto", b"transports", b"tcp"])
def test_missing_fields_are_rejected(missing: bytes) -> None:
    props = valid_props()
    del props[missing]
    with pytest.raises(DecodeError):
        parse_txt(props)


def test_oversized_record_is_rejected() -> None:
    props = valid_props()
    props.update({b"k%d" % i: b"v" * 100 for i in range(20)})  # > MAX_TXT_BYTES in total
    with pytest.raises(DecodeError) as info:
        parse_txt(props)
    assert info.value.reason is Reason.TOO_LARGE
    assert sum(len(k) + len(v or b"") + 2 for k, v in props.items()) > MAX_TXT_BYTES


def test_wrong_types_are_rejected() -> None:
    bad: list[Any] = [
        None,
        [],
        {"id": "text, not bytes"},
        {b"id": 5},
        {1: b"x"},
    ]
    for props in bad:
        with pytest.raises(DecodeError):
            parse_txt(props)


wire_keys = st.one_of(
    st.sampled_from([b"txtvers", b"id", b"org", b"proto", b"transports", b"quic", b"tcp"]),
    st.binary(max_size=12),
)
wire_values = st.one_of(
    st.none(),
    st.binary(max_size=300),
    st.sampled_from([b"1", b"4433", NODE.hex().encode(), b"quic,tcp", b"quic", b""]),
    st.from_regex(rb"[0-9a-f]{64}", fullmatch=True),
)


@given(st.dictionaries(wire_keys, wire_values, max_size=12))
def test_random_properties_parse_or_raise_decode_error(props: dict[bytes, bytes | None]) -> None:
    try:
        ad = parse_txt(props)
    except DecodeError:
        return
    # Accepted: every claimed field must be exactly what the record said.
    assert props[b"id"] == ad.node_id.hex().encode()
    assert props[b"org"] == ad.org_id.hex().encode()
    for scheme, port in ad.ports:
        assert props[scheme.encode()] == str(port).encode()


@given(
    advertisements,
    st.lists(
        st.tuples(
            st.sampled_from([b"txtvers", b"id", b"org", b"proto", b"transports"]),
            st.one_of(st.none(), st.binary(max_size=70)),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_valid_records_parse_or_raise_decode_error(
    ad: Advertisement, mutations: list[tuple[bytes, bytes | None]]
) -> None:
    props = as_wire(encode_txt(ad))
    for key, value in mutations:
        props[key] = value
    try:
        parsed = parse_txt(props)
    except DecodeError:
        return
    assert parsed.node_id.hex().encode() == props[b"id"]


def _discovery() -> MdnsDiscovery:
    return MdnsDiscovery(node_id=NODE, org_id=ORG, ports={"quic": 1}, interfaces=["127.0.0.1"])


@settings(max_examples=150)
@given(st.dictionaries(wire_keys, wire_values, max_size=12), st.lists(st.text(max_size=40)))
def test_handler_never_raises_and_only_hints_valid_records(
    props: dict[bytes, bytes | None], addresses: list[str]
) -> None:
    async def main() -> None:
        mdns = _discovery()
        seen: list[object] = []

        async def consume() -> None:
            async for hint in mdns.hints():
                seen.append(hint)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            mdns._on_resolved("x._p2pmsg._udp.local.", _Resolved(10, props, addresses))
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        try:
            ad = parse_txt(props)
        except DecodeError:
            assert seen == []
            assert mdns.statistics().rejected == 1
            return
        if ad.node_id == NODE or ad.protocol_version != 1 or not usable_addresses(addresses):
            assert seen == []
        else:
            assert len(seen) == len(ad.ports) * len(usable_addresses(addresses))

    trio.run(main)


async def test_own_advertisement_and_garbage_are_not_hinted() -> None:
    mdns = _discovery()
    other = Advertisement(bytes(32), ORG, 1, (("quic", 9000), ("tcp", 9001)))
    mdns._on_resolved("me", _Resolved(100, valid_props(), ["127.0.0.1"]))  # our own id
    mdns._on_resolved("bad", _Resolved(100, valid_props(id=b"nope"), ["127.0.0.1"]))
    mdns._on_resolved("big", _Resolved(MAX_TXT_BYTES + 1, valid_props(), ["127.0.0.1"]))
    mdns._on_resolved("noip", _Resolved(100, as_wire(encode_txt(other)), ["0.0.0.0", "x"]))
    assert mdns.peers() == []
    assert mdns.statistics().rejected == 3
    mdns._on_resolved(
        "ok", _Resolved(100, as_wire(encode_txt(other)), ["10.0.0.7", "fe80::1%eth0"])
    )
    with trio.fail_after(5):
        hints = []
        async for hint in mdns.hints():  # replays known peers first
            hints.append(hint)
            if len(hints) == 4:
                break
    assert [h.address for h in hints] == [
        "quic://10.0.0.7:9000",
        "quic://[fe80::1%eth0]:9000",
        "tcp://10.0.0.7:9001",
        "tcp://[fe80::1%eth0]:9001",
    ]
    assert {(h.node_id, h.source) for h in hints} == {(bytes(32), "mdns")}


def test_usable_addresses_filters_non_unicast() -> None:
    given_ = [
        "10.0.0.1",
        "10.0.0.1",
        "0.0.0.0",
        "224.0.0.251",
        "255.255.255.255",
        "::1",
        "ff02::fb",
        "not-an-ip",
        "127.0.0.1%lo",
        "fe80::2%eth0",
        "240.0.0.1",
    ]
    assert usable_addresses(given_) == ["10.0.0.1", "::1", "fe80::2%eth0"]


def test_format_address() -> None:
    assert format_address("quic", "192.0.2.1", 4433) == "quic://192.0.2.1:4433"
    assert format_address("tcp", "fd00::2", 80) == "tcp://[fd00::2]:80"


def test_ports_from_addresses() -> None:
    assert ports_from_addresses(["quic://0.0.0.0:4433", "tcp://[::]:4434", "quic://x:1"]) == {
        "quic": 4433,
        "tcp": 4434,
    }
    with pytest.raises(ValueError):
        ports_from_addresses(["quic:1.2.3.4"])


def test_constructor_rejects_bad_options() -> None:
    with pytest.raises(ValueError):
        MdnsDiscovery(node_id=b"short", org_id=ORG)
    with pytest.raises(ValueError):
        MdnsDiscovery(node_id=NODE, org_id=ORG, ports={"id": 1})
    with pytest.raises(ValueError):
        MdnsDiscovery(node_id=NODE, org_id=ORG, ports={"quic": 70000})
    with pytest.raises(ValueError):
        MdnsDiscovery(node_id=NODE, org_id=ORG, interfaces=["eth0"])
