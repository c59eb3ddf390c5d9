"""The hand-written header codec in p2pmsg.entry agrees with the cbor2 reference.

``_encode_valid_header`` / ``_parse_valid_header`` are partial fast paths: they must
produce exactly cbor2's canonical bytes, accept exactly the valid canonical headers
(returning None otherwise, so the general decoder reports the error), and never
raise. These tests compare them with the general route on valid headers, on every
single-byte corruption, and on arbitrary bytes.
"""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmsg import entry as E
from p2pmsg.errors import DecodeError
from p2pmsg.identity import Identity

b32 = st.binary(min_size=32, max_size=32)
uint64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
boundary_ints = st.sampled_from(
    [0, 1, 23, 24, 255, 256, 65535, 65536, (1 << 32) - 1, 1 << 32, (1 << 63) - 1]
)


@st.composite
def headers(draw: st.DrawFn) -> E.Header:
    seq = draw(st.one_of(boundary_ints.filter(lambda v: 1 <= v <= E.MAX_SEQ),
                         st.integers(min_value=1, max_value=E.MAX_SEQ)))
    return E.Header(
        version=1,
        author=draw(b32),
        topic=draw(b32),
        seq=seq,
        backlink=None if seq == 1 else draw(b32),
        timestamp=draw(st.one_of(boundary_ints, uint64)),
        payload_hash=draw(b32),
        payload_size=draw(st.one_of(
            boundary_ints.filter(lambda v: v <= E.MAX_PAYLOAD_SIZE),
            st.integers(min_value=0, max_value=E.MAX_PAYLOAD_SIZE),
        )),
        deps=tuple(sorted(draw(st.sets(b32, max_size=E.MAX_DEPS)))),
    )


def reference_bytes(h: E.Header) -> bytes:
    return cbor2.dumps(
        [h.version, h.author, h.topic, h.seq, h.backlink, h.timestamp, h.payload_hash,
         h.payload_size, list(h.deps)],
        canonical=True,
    )


def general(raw: bytes) -> E.Header | DecodeError:
    try:
        return E._decode_header_general(raw)
    except DecodeError as exc:
        return exc


@given(headers())
def test_fast_encoding_is_cbor2_canonical_and_round_trips(h: E.Header) -> None:
    raw = h.encode()
    assert raw == reference_bytes(h)
    fast = E._parse_valid_header(raw)
    assert fast == h
    assert E._decode_header_general(raw) == h


@settings(max_examples=30)
@given(headers())
def test_every_single_byte_change_is_judged_like_the_general_decoder(h: E.Header) -> None:
    raw = h.encode()
    for i in range(len(raw)):
        for delta in (1, 0x20, 0x80):
            bad = raw[:i] + bytes([(raw[i] + delta) % 256]) + raw[i + 1 :]
            ref = general(bad)
            fast = E._parse_valid_header(bad)
            if fast is not None:
                assert fast == ref, f"fast path accepted what the reference rejects at {i}"


@given(headers(), st.binary(max_size=40), st.integers(min_value=0, max_value=800))
def test_truncation_and_trailing_bytes_never_pass_the_fast_path(
    h: E.Header, extra: bytes, cut: int
) -> None:
    raw = h.encode()
    if extra:
        assert E._parse_valid_header(raw + extra) is None
    if cut < len(raw):
        assert E._parse_valid_header(raw[:cut]) is None


@given(st.binary(min_size=100, max_size=800))
def test_arbitrary_bytes_only_pass_if_the_reference_agrees(data: bytes) -> None:
    fast = E._parse_valid_header(data)
    if fast is not None:
        assert fast == general(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", True),  # bool is not an int on the wire
        ("timestamp", False),
        ("payload_size", True),
        ("seq", 0),
        ("timestamp", 1 << 64),
        ("payload_size", E.MAX_PAYLOAD_SIZE + 1),
    ],
)
def test_invalid_fields_are_not_fast_encoded(field: str, value: object) -> None:
    a = bytes(32)
    fields: dict[str, object] = {
        "author": a, "topic": a, "seq": 2, "backlink": a, "timestamp": 5,
        "p_hash": a, "p_size": 3, "deps": (),
    }
    fields[{"payload_size": "p_size"}.get(field, field)] = value
    assert E._encode_valid_header(**fields) is None  # type: ignore[arg-type]


def test_non_shortest_integers_are_rejected_by_decode() -> None:
    ident = Identity.from_seed(bytes(range(32)))
    entry = E.create_entry(ident, bytes(32), 1, None, 5, b"x")
    raw = entry.raw
    # timestamp 5 is one byte (0x05) right after the null backlink: widen it to 0x18 0x05.
    pos = raw.index(b"\xf6\x05") + 1
    widened = raw[:pos] + b"\x18\x05" + raw[pos + 1 :]
    assert E._parse_valid_header(widened) is None
    with pytest.raises(DecodeError):
        E.decode_header(widened)


def test_create_entry_fast_path_matches_general_encoding() -> None:
    ident = Identity.from_seed(bytes(range(32)))
    deps = [bytes([9]) * 32, bytes([3]) * 32]
    entry = E.create_entry(ident, bytes(32), 2, bytes([1]) * 32, 1 << 40, b"payload", deps)
    assert entry.raw == reference_bytes(entry.header)
    assert entry.header.deps == tuple(sorted(deps))
    assert E.decode_entry(entry.to_bytes()) == entry
