"""Entries: creation, the wire format, every structural rule, and fuzzing of decoders.

The three hypothesis properties the wire format must keep:

(a) round trip: any valid header/entry encodes and decodes to itself;
(b) tamper evidence: changing, inserting or deleting ONE byte of a signed entry never
    yields an entry that verifies. Precisely: ``decode_entry(mutated)`` either raises
    ``DecodeError``, or returns an entry whose id differs from the original's *and*
    whose signature check raises ``ValidationError(BAD_SIGNATURE)``;
(c) garbage in, only ``DecodeError``/``ValidationError`` out (random bytes and
    structured near-misses) for ``decode_entry``, ``decode_certificate`` and
    ``decode_fork_proof``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from p2pmsg.certs import decode_certificate
from p2pmsg.entry import (
    FORMAT_VERSION,
    HASH_SIZE,
    MAX_DEPS,
    MAX_ENTRY_SIZE,
    MAX_HEADER_SIZE,
    MAX_PAYLOAD_SIZE,
    MAX_SEQ,
    MAX_TIMESTAMP,
    Entry,
    Header,
    create_entry,
    decode_entry,
    decode_header,
    entry_id,
    payload_hash,
)
from p2pmsg.errors import DecodeError, Reason, ValidationError
from p2pmsg.forks import decode_fork_proof
from p2pmsg.identity import SIGNATURE_SIZE, Domain, Identity
from p2pmsg.validate import verify_signature

ALICE = Identity.from_seed(b"\xa1" * 32)
TOPIC = hashlib.blake2b(b"topic", digest_size=32).digest()
H1 = hashlib.blake2b(b"1", digest_size=32).digest()
H2 = hashlib.blake2b(b"2", digest_size=32).digest()


def _first() -> Entry:
    return create_entry(ALICE, TOPIC, 1, None, 42 << 16, b"payload")


def _fields(h: Header) -> list[Any]:
    return [h.version, h.author, h.topic, h.seq, h.backlink, h.timestamp, h.payload_hash,
            h.payload_size, list(h.deps)]


def _signed(raw: bytes, key: Identity = ALICE) -> bytes:
    return raw + key.sign(Domain.ENTRY, raw)


def _signed_fields(fields: list[Any]) -> bytes:
    return _signed(cbor2.dumps(fields, canonical=True))


def _reason(data: bytes) -> Reason:
    with pytest.raises(DecodeError) as exc:
        decode_entry(data)
    return exc.value.reason


# --------------------------------------------------------------------------- creation


def test_create_and_decode_round_trip() -> None:
    e = _first()
    assert e.header.version == FORMAT_VERSION
    assert e.header.author == ALICE.public_key
    assert e.header.payload_hash == hashlib.blake2b(b"payload", digest_size=32).digest()
    assert e.header.payload_size == 7
    assert e.raw == e.header.encode()
    assert len(e.signature) == SIGNATURE_SIZE
    assert e.to_bytes() == e.raw + e.signature
    assert e.id == hashlib.blake2b(e.raw + e.signature, digest_size=32).digest()
    assert e.id == entry_id(e.to_bytes())
    assert e.signing_input() == b"p2pmsg/entry/v1\x00" + e.raw
    assert decode_entry(e.to_bytes()) == e
    verify_signature(e)
    assert e.log_id == (ALICE.public_key, TOPIC)
    assert (e.author, e.topic, e.seq) == (ALICE.public_key, TOPIC, 1)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    e = _first()
    assert decode_entry(bytearray(e.to_bytes())) == e
    assert decode_entry(memoryview(e.to_bytes())) == e


def test_create_sorts_and_dedups_deps() -> None:
    e = create_entry(ALICE, TOPIC, 1, None, 0, b"", deps=[H2, H1, H2])
    assert e.header.deps == tuple(sorted({H1, H2}))
    assert decode_entry(e.to_bytes()).header.deps == e.header.deps


def test_second_entry_links_to_first() -> None:
    e1 = _first()
    e2 = create_entry(ALICE, TOPIC, 2, e1.id, 43 << 16, b"")
    assert e2.header.backlink == e1.id
    assert decode_entry(e2.to_bytes()) == e2


def test_payload_hash_is_blake2b_256() -> None:
    assert payload_hash(b"") == hashlib.blake2b(b"", digest_size=32).digest()
    assert len(payload_hash(b"x")) == HASH_SIZE


def test_maximal_header_fits_the_limit() -> None:
    """The largest header the rules allow must encode within MAX_HEADER_SIZE."""
    deps = sorted(hashlib.blake2b(bytes([i]), digest_size=32).digest() for i in range(MAX_DEPS))
    h = Header(FORMAT_VERSION, b"\xff" * 32, b"\xff" * 32, MAX_SEQ, b"\xff" * 32, MAX_TIMESTAMP,
               b"\xff" * 32, MAX_PAYLOAD_SIZE, tuple(deps))
    assert len(h.encode()) <= MAX_HEADER_SIZE
    assert decode_header(h.encode()) == h


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"topic": b"\x00" * 31}, "topic"),
        ({"seq": 0}, "seq"),
        ({"seq": MAX_SEQ + 1, "backlink": H1}, "seq"),
        ({"backlink": H1}, "no backlink"),
        ({"seq": 2}, "backlink"),
        ({"seq": 2, "backlink": H1[:31]}, "backlink"),
        ({"timestamp": -1}, "timestamp"),
        ({"timestamp": MAX_TIMESTAMP + 1}, "timestamp"),
        ({"deps": [H1[:31]]}, "dep"),
        ({"deps": [bytes([i]) * 32 for i in range(MAX_DEPS + 1)]}, "deps"),
    ],
)
def test_create_rejects_invalid_fields(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"identity": ALICE, "topic": TOPIC, "seq": 1, "backlink": None,
                            "timestamp": 0, "payload": b""}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        create_entry(**args)


def test_create_rejects_oversized_payload() -> None:
    with pytest.raises(ValueError, match="payload size"):
        create_entry(ALICE, TOPIC, 1, None, 0, bytes(MAX_PAYLOAD_SIZE + 1))
    create_entry(ALICE, TOPIC, 1, None, 0, bytes(MAX_PAYLOAD_SIZE))  # the limit itself is ok


# --------------------------------------------------------------------------- decoding rules

BASE = _fields(_first().header)


def _with(index: int, value: Any) -> bytes:
    f = list(BASE)
    f[index] = value
    return _signed_fields(f)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        # MALFORMED: structure
        (b"", Reason.MALFORMED),
        (bytes(SIGNATURE_SIZE), Reason.MALFORMED),
        (_signed(b"\xff"), Reason.MALFORMED),
        (_signed(cbor2.dumps({"seq": 1})), Reason.MALFORMED),
        (_signed(cbor2.dumps(BASE[:8], canonical=True)), Reason.MALFORMED),
        (_signed(cbor2.dumps([*BASE, 0], canonical=True)), Reason.MALFORMED),
        (_signed(_first().raw[:-1]), Reason.MALFORMED),
        (_with(0, "1"), Reason.MALFORMED),
        (_with(0, None), Reason.MALFORMED),
        (_with(1, BASE[1][:31]), Reason.MALFORMED),
        (_with(1, BASE[1] + b"\x00"), Reason.MALFORMED),
        (_with(1, "k" * 32), Reason.MALFORMED),
        (_with(2, TOPIC[:31]), Reason.MALFORMED),
        (_with(2, None), Reason.MALFORMED),
        (_with(3, 0), Reason.MALFORMED),
        (_with(3, -5), Reason.MALFORMED),
        (_with(3, MAX_SEQ + 1), Reason.MALFORMED),
        (_with(3, True), Reason.MALFORMED),
        (_with(3, 1.0), Reason.MALFORMED),
        (_with(4, H1), Reason.MALFORMED),  # seq 1 with backlink
        (_with(5, -1), Reason.MALFORMED),
        (_with(5, MAX_TIMESTAMP + 1), Reason.MALFORMED),
        (_with(5, "now"), Reason.MALFORMED),
        (_with(6, H1[:31]), Reason.MALFORMED),
        (_with(6, None), Reason.MALFORMED),
        (_with(7, -1), Reason.MALFORMED),
        (_with(7, "7"), Reason.MALFORMED),
        (_with(8, H1), Reason.MALFORMED),
        (_with(8, None), Reason.MALFORMED),
        (_with(8, sorted([H1, H2], reverse=True)), Reason.MALFORMED),
        (_with(8, [H1, H1]), Reason.MALFORMED),
        (_with(8, [H1[:31]]), Reason.MALFORMED),
        (_with(8, [1]), Reason.MALFORMED),
        # UNKNOWN_VERSION
        (_with(0, 0), Reason.UNKNOWN_VERSION),
        (_with(0, 2), Reason.UNKNOWN_VERSION),
        (_signed(cbor2.dumps([2, "future"])), Reason.UNKNOWN_VERSION),
        # TOO_LARGE
        (bytes(MAX_ENTRY_SIZE + 1), Reason.TOO_LARGE),
        (_with(7, MAX_PAYLOAD_SIZE + 1), Reason.TOO_LARGE),
        (_with(8, sorted(bytes([i]) * 32 for i in range(MAX_DEPS + 1))), Reason.TOO_LARGE),
    ],
)
def test_decode_rejects(data: bytes, reason: Reason) -> None:
    assert _reason(data) is reason


def test_seq2_without_backlink_is_malformed() -> None:
    f = list(BASE)
    f[3] = 2
    assert _reason(_signed_fields(f)) is Reason.MALFORMED


def _items(fields: list[Any], index: int, item: bytes) -> bytes:
    """A definite array (head + items) with item ``index`` spelled by hand."""
    parts = [cbor2.dumps(v, canonical=True) for v in fields]
    parts[index] = item
    return bytes([0x80 | len(fields)]) + b"".join(parts)


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (_items(BASE, 3, b"\x18\x01"), "seq 1 in a two-byte head"),
        (_items(BASE, 3, b"\x1b" + (1).to_bytes(8, "big")), "seq 1 in a nine-byte head"),
        (_items(BASE, 7, b"\x19\x00\x07"), "payload size 7 in a three-byte head"),
        (_items(BASE, 1, b"\x59\x00\x20" + BASE[1]), "author with a long length head"),
        (_items(BASE, 1, b"\x5f\x50" + BASE[1][:16] + b"\x50" + BASE[1][16:] + b"\xff"),
         "author as an indefinite-length (chunked) byte string"),
        (b"\x9f" + _items(BASE, 0, b"\x01")[1:] + b"\xff", "indefinite-length header array"),
        (_items(BASE, 8, b"\x9f\xff"), "indefinite-length deps array"),
        (_items(BASE, 5, b"\xc2\x43" + (42 << 16).to_bytes(3, "big")), "timestamp as bignum"),
        (_first().raw + b"\x00", "a trailing byte after the header"),
        (_first().raw + _first().raw, "two headers"),
    ],
)
def test_decode_rejects_non_canonical(raw: bytes, what: str) -> None:
    # Each raw header decodes to the same *value* as a valid header (or a valid header
    # plus trailing bytes), and is correctly signed: only canonical form is wrong.
    assert raw != _first().raw, what
    assert _reason(_signed(raw)) is Reason.NON_CANONICAL, what


def test_non_bytes_input_is_malformed() -> None:
    with pytest.raises(DecodeError) as exc:
        decode_entry("not bytes")  # type: ignore[arg-type]
    assert exc.value.reason is Reason.MALFORMED


def test_decode_does_not_check_signature() -> None:
    """decode_entry is structure only; the signature is validate's job."""
    bad = _first().raw + bytes(SIGNATURE_SIZE)
    e = decode_entry(bad)
    with pytest.raises(ValidationError) as exc:
        verify_signature(e)
    assert exc.value.reason is Reason.BAD_SIGNATURE


# --------------------------------------------------------------------------- properties

KEYS = [Identity.from_seed(bytes([i]) * 32) for i in range(1, 4)]
hashes = st.binary(min_size=32, max_size=32)


@st.composite
def entries(draw: st.DrawFn) -> tuple[Entry, bytes]:
    key = draw(st.sampled_from(KEYS))
    seq = draw(st.one_of(st.integers(1, 3), st.integers(1, MAX_SEQ)))
    backlink = None if seq == 1 else draw(hashes)
    payload = draw(st.binary(max_size=300))
    deps = draw(st.lists(hashes, max_size=MAX_DEPS, unique=True))
    ts = draw(st.one_of(st.integers(0, 2**20), st.integers(0, MAX_TIMESTAMP)))
    topic = draw(hashes)
    return create_entry(key, topic, seq, backlink, ts, payload, deps), payload


@given(entries())
def test_property_round_trip(case: tuple[Entry, bytes]) -> None:
    e, payload = case
    again = decode_entry(e.to_bytes())
    assert again == e
    assert again.header.encode() == again.raw
    assert again.header.payload_hash == payload_hash(payload)
    assert again.header.payload_size == len(payload)
    verify_signature(again)


@given(st.builds(
    Header,
    version=st.just(FORMAT_VERSION),
    author=hashes,
    topic=hashes,
    seq=st.integers(2, MAX_SEQ),
    backlink=hashes,
    timestamp=st.integers(0, MAX_TIMESTAMP),
    payload_hash=hashes,
    payload_size=st.integers(0, MAX_PAYLOAD_SIZE),
    deps=st.lists(hashes, max_size=MAX_DEPS, unique=True).map(lambda d: tuple(sorted(d))),
))
def test_property_header_round_trip(header: Header) -> None:
    assert decode_header(header.encode()) == header


def _assert_tamper_evident(original: Entry, mutated: bytes) -> None:
    try:
        e = decode_entry(mutated)
    except DecodeError:
        return
    assert e.id != original.id
    with pytest.raises(ValidationError) as exc:
        verify_signature(e)
    assert exc.value.reason is Reason.BAD_SIGNATURE


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(entries(), st.data())
def test_property_single_byte_change_never_verifies(case: tuple[Entry, bytes],
                                                    data: st.DataObject) -> None:
    e = case[0]
    wire = e.to_bytes()
    i = data.draw(st.integers(0, len(wire) - 1), label="position")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != wire[i]), label="byte")
    _assert_tamper_evident(e, wire[:i] + bytes([new]) + wire[i + 1 :])


@given(entries(), st.data())
def test_property_single_byte_insert_or_delete_never_verifies(
    case: tuple[Entry, bytes], data: st.DataObject
) -> None:
    e = case[0]
    wire = e.to_bytes()
    i = data.draw(st.integers(0, len(wire)), label="position")
    if data.draw(st.booleans(), label="insert"):
        mutated = wire[:i] + bytes([data.draw(st.integers(0, 255))]) + wire[i:]
    else:
        assume(i < len(wire))
        mutated = wire[:i] + wire[i + 1 :]
    _assert_tamper_evident(e, mutated)


def test_every_single_byte_change_of_one_entry_never_verifies() -> None:
    """Exhaustive companion of the property, for one entry: every position, 3 values."""
    e = create_entry(ALICE, TOPIC, 2, H1, 7 << 16, b"x", deps=[H2])
    wire = e.to_bytes()
    for i in range(len(wire)):
        for delta in (1, 0x80, 0xFF):
            _assert_tamper_evident(e, wire[:i] + bytes([wire[i] ^ delta]) + wire[i + 1 :])


# (c) garbage: random bytes and structured near-misses ---------------------------------

cbor_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.integers(0, 40),
        st.floats(allow_nan=True),
        st.binary(max_size=40),
        hashes,
        st.text(max_size=10),
        st.just(FORMAT_VERSION),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=10),
        st.dictionaries(st.one_of(st.integers(), st.text(max_size=5)), children, max_size=4),
    ),
    max_leaves=30,
)


@st.composite
def near_miss_headers(draw: st.DrawFn) -> list[Any]:
    """A 9-field array where each field is either valid-looking or a random CBOR value."""
    good = _fields(create_entry(ALICE, TOPIC, 2, H1, 5, b"p", deps=[H2]).header)
    return [draw(st.one_of(st.just(v), cbor_values)) for v in good]


def _decode_cert(data: bytes) -> object:
    return decode_certificate(data)


def _decode_fork(data: bytes) -> object:
    return decode_fork_proof(data)


def _decode_entry(data: bytes) -> object:
    return decode_entry(data)


DECODERS: list[Callable[[bytes], object]] = [_decode_entry, _decode_cert, _decode_fork]


def _only_validation_errors(decoder: Callable[[bytes], object], data: bytes) -> None:
    # The only allowed failures; anything else propagates and fails the test.
    with contextlib.suppress(DecodeError, ValidationError):
        decoder(data)


@pytest.mark.parametrize("decoder", DECODERS)
@given(data=st.binary(max_size=2300))
def test_property_random_bytes_raise_only_decode_errors(
    decoder: Callable[[bytes], object], data: bytes
) -> None:
    _only_validation_errors(decoder, data)


@pytest.mark.parametrize("decoder", DECODERS)
@given(value=cbor_values, sign=st.booleans(), canonical=st.booleans())
def test_property_random_cbor_values_raise_only_decode_errors(
    decoder: Callable[[bytes], object], value: Any, sign: bool, canonical: bool
) -> None:
    try:
        encoded = cbor2.dumps(value, canonical=canonical)
    except (ValueError, TypeError, OverflowError):  # hypothesis made an unencodable value
        return
    _only_validation_errors(decoder, encoded)
    _only_validation_errors(decoder, _signed(encoded) if sign else encoded + bytes(64))
    # The same value one level down, where certificates and fork proofs nest bytes.
    _only_validation_errors(decoder, cbor2.dumps([encoded, ALICE.sign(Domain.CERTIFICATE,
                                                                      encoded)]))
    _only_validation_errors(decoder, cbor2.dumps([_signed(encoded), _signed(encoded)]))


@given(fields=near_miss_headers())
def test_property_near_miss_headers_raise_only_decode_errors(fields: list[Any]) -> None:
    try:
        raw = cbor2.dumps(fields, canonical=True)
    except (ValueError, TypeError, OverflowError):
        return
    data = _signed(raw)
    try:
        e = decode_entry(data)
    except DecodeError:
        return
    # If it decoded, every field must obey the rules, and the entry must re-encode exactly.
    assert e.raw == raw
    assert e.header.encode() == raw
    verify_signature(e)
    # and it is usable inside a fork proof container without any other exception type
    _only_validation_errors(_decode_fork, cbor2.dumps([data, data]))
