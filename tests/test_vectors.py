"""The published test vectors (docs/test-vectors/) against the library, byte for byte.

Positive vectors are rebuilt from their seeds and fields and must match exactly;
every value is also recomputed independently (nacl, hashlib, cbor2) so the vectors
describe the format, not just this implementation. Negative vectors must be rejected
with exactly the stated reason, following the check order in
docs/test-vectors/README.md.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import cbor2
import nacl.signing
import pytest

from p2pmsg.certs import (
    Role,
    decode_certificate,
    issue_certificate,
    person_id,
    verify_certificate,
)
from p2pmsg.entry import create_entry, decode_entry
from p2pmsg.errors import Reason, ValidationError
from p2pmsg.forks import ForkProof, decode_fork_proof
from p2pmsg.identity import Domain, Identity
from p2pmsg.validate import verify_link, verify_payload, verify_signature

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "docs" / "test-vectors"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


ENTRIES = _load("entries.json")
CERTS = _load("certificates.json")
FORKS = _load("fork-proofs.json")
X = bytes.fromhex


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in cases]


def _gen_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_vectors", ROOT / "tools" / "gen_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vector_files_are_what_the_generator_produces() -> None:
    """The committed files are current: run tools/gen_vectors.py if this fails."""
    for name, text in _gen_module().build_all().items():
        assert (VECTORS / name).read_text(encoding="utf-8") == text, name


def test_vectors_cover_every_decode_and_validation_reason() -> None:
    entry_reasons = {c["expected_reason"] for c in ENTRIES["negative"]}
    cert_reasons = {c["expected_reason"] for c in CERTS["negative"]}
    assert entry_reasons == {r.value for r in Reason} - {
        "fork", "cert_expired", "cert_wrong_issuer",
        "expired", "rollback", "wrong_issuer"}  # governance statements, not entries
    assert {"cert_expired", "cert_wrong_issuer", "bad_signature", "malformed",
            "unknown_version", "non_canonical", "too_large"} <= cert_reasons
    assert len(ENTRIES["positive"]) >= 5 and len(FORKS["positive"]) >= 1
    assert {c["fields"]["version"] for c in CERTS["positive"]} == {1, 2}


# --------------------------------------------------------------------------- entries


@pytest.mark.parametrize("case", ENTRIES["positive"], ids=_ids(ENTRIES["positive"]))
def test_entry_vector_reproduced(case: dict[str, Any]) -> None:
    seed = X(case["secret_seed"])
    ident = Identity.from_seed(seed)
    assert ident.public_key.hex() == case["public_key"]
    assert bytes(nacl.signing.SigningKey(seed).verify_key).hex() == case["public_key"]
    h = case["header"]
    payload = X(case["payload"])
    e = create_entry(ident, X(h["topic"]), h["seq"],
                     None if h["backlink"] is None else X(h["backlink"]), h["timestamp"],
                     payload, [X(d) for d in h["deps"]])
    assert e.raw.hex() == case["header_bytes"]
    assert e.signature.hex() == case["signature"]
    assert e.to_bytes().hex() == case["entry_bytes"]
    assert e.id.hex() == case["entry_id"]
    assert e.signing_input().hex() == case["signing_input"]


@pytest.mark.parametrize("case", ENTRIES["positive"], ids=_ids(ENTRIES["positive"]))
def test_entry_vector_independently_consistent(case: dict[str, Any]) -> None:
    """Recompute each derived value without p2pmsg: the vector defines the format."""
    header_bytes, sig, entry_bytes = X(case["header_bytes"]), X(case["signature"]), X(
        case["entry_bytes"])
    h = case["header"]
    assert X(ENTRIES["entry_domain"]) == b"p2pmsg/entry/v1\x00"
    assert X(case["signing_input"]) == b"p2pmsg/entry/v1\x00" + header_bytes
    nacl.signing.VerifyKey(X(case["public_key"])).verify(X(case["signing_input"]), sig)
    assert entry_bytes == header_bytes + sig
    assert hashlib.blake2b(entry_bytes, digest_size=32).hexdigest() == case["entry_id"]
    payload = X(case["payload"])
    assert hashlib.blake2b(payload, digest_size=32).hexdigest() == case["payload_hash"]
    assert h["payload_hash"] == case["payload_hash"] and h["payload_size"] == len(payload)
    fields = [h["version"], X(h["author"]), X(h["topic"]), h["seq"],
              None if h["backlink"] is None else X(h["backlink"]), h["timestamp"],
              X(h["payload_hash"]), h["payload_size"], [X(d) for d in h["deps"]]]
    assert cbor2.loads(header_bytes) == fields
    assert cbor2.dumps(fields, canonical=True) == header_bytes
    assert h["author"] == case["public_key"] and h["topic"] == case["topic"]


@pytest.mark.parametrize("case", ENTRIES["positive"], ids=_ids(ENTRIES["positive"]))
def test_entry_vector_decodes_and_verifies(case: dict[str, Any]) -> None:
    e = decode_entry(X(case["entry_bytes"]))
    assert e.id.hex() == case["entry_id"]
    assert e.raw.hex() == case["header_bytes"]
    verify_signature(e)
    verify_payload(e.header, X(case["payload"]))


def test_entry_vectors_chain() -> None:
    by_name = {c["name"]: c for c in ENTRIES["positive"]}
    first = decode_entry(X(by_name["first-entry"]["entry_bytes"]))
    second = decode_entry(X(by_name["second-entry"]["entry_bytes"]))
    verify_link(None, first)
    verify_link(first, second)


def _entry_reason(case: dict[str, Any]) -> str:
    """The documented check order: decode, link (if prev given), signature, payload."""
    try:
        e = decode_entry(X(case["entry_bytes"]))
        if "prev" in case:
            prev = None if case["prev"] is None else decode_entry(X(case["prev"]))
            verify_link(prev, e)
        verify_signature(e)
        if "payload" in case:
            verify_payload(e.header, X(case["payload"]))
    except ValidationError as exc:
        return exc.reason.value
    return "accepted"


@pytest.mark.parametrize("case", ENTRIES["negative"], ids=_ids(ENTRIES["negative"]))
def test_entry_negative_vector(case: dict[str, Any]) -> None:
    assert _entry_reason(case) == case["expected_reason"]


# --------------------------------------------------------------------------- certificates


@pytest.mark.parametrize("case", CERTS["positive"], ids=_ids(CERTS["positive"]))
def test_certificate_vector(case: dict[str, Any]) -> None:
    org = Identity.from_seed(X(case["org_secret_seed"]))
    f = case["fields"]
    assert org.public_key.hex() == f["org"]
    person = None if f["person"] is None else X(f["person"])
    if "person_handle" in case:
        assert person_id(org, case["person_handle"]) == person
    cert = issue_certificate(org, X(f["device"]), Role(f["role"]), f["display_name"],
                             f["valid_from"], f["valid_until"], person=person)
    assert cert.version == f["version"] == (1 if person is None else 2)
    assert cert.body().hex() == case["body_bytes"]
    assert cert.signature.hex() == case["signature"]
    assert cert.to_bytes().hex() == case["certificate_bytes"]
    # independent: signing input, signature, CBOR layout
    assert X(case["signing_input"]) == X(CERTS["certificate_domain"]) + X(case["body_bytes"])
    assert X(CERTS["certificate_domain"]) == b"p2pmsg/device-cert/v1\x00"
    nacl.signing.VerifyKey(X(f["org"])).verify(X(case["signing_input"]), X(case["signature"]))
    assert cbor2.loads(X(case["certificate_bytes"])) == [X(case["body_bytes"]),
                                                         X(case["signature"])]
    assert cbor2.loads(X(case["body_bytes"])) == [
        f["version"], X(f["org"]), X(f["device"]), f["role"], f["display_name"],
        f["valid_from"], f["valid_until"], *([] if person is None else [person])]
    decoded = decode_certificate(X(case["certificate_bytes"]))
    assert decoded == cert
    verify_certificate(decoded, X(case["check"]["org_root"]), case["check"]["now_ms"])


@pytest.mark.parametrize("case", CERTS["negative"], ids=_ids(CERTS["negative"]))
def test_certificate_negative_vector(case: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as exc:
        cert = decode_certificate(X(case["certificate_bytes"]))
        verify_certificate(cert, X(case["org_root"]), case["now_ms"])
    assert exc.value.reason.value == case["expected_reason"]


# --------------------------------------------------------------------------- fork proofs


@pytest.mark.parametrize("case", FORKS["positive"], ids=_ids(FORKS["positive"]))
def test_fork_proof_vector(case: dict[str, Any]) -> None:
    a, b = decode_entry(X(case["first"])), decode_entry(X(case["second"]))
    assert (a.id.hex(), b.id.hex()) == (case["first_id"], case["second_id"])
    assert a.id < b.id
    proof = ForkProof.of(b, a)
    assert proof.to_bytes().hex() == case["proof_bytes"]
    assert cbor2.loads(X(case["proof_bytes"])) == [X(case["first"]), X(case["second"])]
    decoded = decode_fork_proof(X(case["proof_bytes"]))
    assert decoded == proof
    assert decoded.log_id == (X(case["author"]), X(case["topic"]))
    assert decoded.seq == case["seq"]


@pytest.mark.parametrize("case", FORKS["negative"], ids=_ids(FORKS["negative"]))
def test_fork_proof_negative_vector(case: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as exc:
        decode_fork_proof(X(case["proof_bytes"]))
    assert exc.value.reason.value == case["expected_reason"]


# --------------------------------------------------------------------------- docs


def test_annotated_dump_in_protocol_doc_matches_vector() -> None:
    """The hex dump in docs/protocol.md is the first-entry vector, byte for byte."""
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- dump: first-entry -->\s*```text\n(.*?)```", text, re.S)
    assert match, "docs/protocol.md lost its annotated dump"
    hex_bytes = "".join(line.split("#", 1)[0] for line in match.group(1).splitlines())
    dumped = bytes.fromhex(hex_bytes.replace(" ", ""))
    first = next(c for c in ENTRIES["positive"] if c["name"] == "first-entry")
    assert dumped.hex() == first["entry_bytes"]


def test_signature_domains_in_vectors_match_library() -> None:
    assert X(ENTRIES["entry_domain"]) == Domain.ENTRY.value
    assert X(CERTS["certificate_domain"]) == Domain.CERTIFICATE.value


# -- sealed.json: SEALED room payloads (v2 clear refs) -----------------------------------

SEALED = _load("sealed.json")


def _clear_refs(case: dict[str, Any]) -> list[Any]:
    refs = case["refs"]
    return [[X(b) for b in refs["blobs"]], None if refs["redacts"] is None else X(refs["redacts"])]


def _independent_ad(case: dict[str, Any]) -> bytes:
    place = (X(case["topic"]) + X(case["author"]) + case["seq"].to_bytes(8, "big")
             + X(case["epoch"]))
    if case["version"] == 1:
        return X(SEALED["ad_domain_v1"]) + place
    return X(SEALED["ad_domain_v2"]) + place + cbor2.dumps(_clear_refs(case), canonical=True)


@pytest.mark.parametrize("case", SEALED["positive"], ids=_ids(SEALED["positive"]))
def test_sealed_vector(case: dict[str, Any]) -> None:
    from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt

    from p2pmsg.messaging.content import encode_content
    from p2pmsg.messaging.crypto import decrypt_content
    from p2pmsg.messaging.payloads import Sealed, decode_room_payload, encode_room_payload

    ad = _independent_ad(case)
    assert ad == X(case["associated_data"])
    plaintext = crypto_aead_xchacha20poly1305_ietf_decrypt(
        X(case["ciphertext"]), ad, X(case["nonce"]), X(case["epoch_key"]))
    assert plaintext == X(case["plaintext"])
    wire = [38, case["version"], X(case["epoch"]), X(case["nonce"]), X(case["ciphertext"])]
    if case["version"] != 1:
        wire += _clear_refs(case)
    assert cbor2.dumps(wire, canonical=True) == X(case["payload_bytes"])
    sealed = decode_room_payload(X(case["payload_bytes"]))
    assert isinstance(sealed, Sealed) and sealed.version == case["version"]
    assert encode_room_payload(sealed) == X(case["payload_bytes"])
    content = decrypt_content(X(case["epoch_key"]), X(case["topic"]), X(case["author"]),
                              case["seq"], sealed)
    assert encode_content(content) == X(case["plaintext"])


@pytest.mark.parametrize("case", SEALED["negative"], ids=_ids(SEALED["negative"]))
def test_sealed_negative_vector(case: dict[str, Any]) -> None:
    from p2pmsg.errors import DecodeError
    from p2pmsg.messaging.crypto import RefsMismatchError, decrypt_content
    from p2pmsg.messaging.errors import DecryptionError
    from p2pmsg.messaging.payloads import Sealed, decode_room_payload

    expected = {"decode": DecodeError, "decrypt": DecryptionError,
                "content": RefsMismatchError}[case["stage"]]
    with pytest.raises(ValidationError) as info:
        sealed = decode_room_payload(X(case["payload_bytes"]))
        assert isinstance(sealed, Sealed)
        decrypt_content(X(case["epoch_key"]), X(case["topic"]), X(case["author"]),
                        case["seq"], sealed)
    assert type(info.value) is expected
    assert info.value.reason.value == case["expected_reason"]


# -- room-payloads.json: plaintext room payloads (relay declarations) ---------------------

ROOM_PAYLOADS = _load("room-payloads.json")


@pytest.mark.parametrize("case", ROOM_PAYLOADS["positive"], ids=_ids(ROOM_PAYLOADS["positive"]))
def test_room_payload_vector(case: dict[str, Any]) -> None:
    from p2pmsg.messaging.payloads import decode_room_payload, encode_room_payload

    fields = case["fields"]
    wire = [case["kind"], case["version"], X(fields["node"])]
    if "org" in fields:
        wire.append(X(fields["org"]))
    assert cbor2.dumps(wire, canonical=True) == X(case["payload_bytes"])  # independently
    payload = decode_room_payload(X(case["payload_bytes"]))
    assert payload.node == X(fields["node"])  # type: ignore[union-attr]
    assert getattr(payload, "org", None) == (X(fields["org"]) if "org" in fields else None)
    assert encode_room_payload(payload) == X(case["payload_bytes"])


@pytest.mark.parametrize("case", ROOM_PAYLOADS["negative"], ids=_ids(ROOM_PAYLOADS["negative"]))
def test_room_payload_negative_vector(case: dict[str, Any]) -> None:
    from p2pmsg.errors import DecodeError
    from p2pmsg.messaging.payloads import decode_room_payload

    with pytest.raises(DecodeError) as info:
        decode_room_payload(X(case["payload_bytes"]))
    assert info.value.reason.value == case["expected_reason"]


@pytest.mark.parametrize("case", ROOM_PAYLOADS["unknown"], ids=_ids(ROOM_PAYLOADS["unknown"]))
def test_room_payload_unknown_vector(case: dict[str, Any]) -> None:
    from p2pmsg.messaging.payloads import UnknownPayload, decode_room_payload

    data = X(case["payload_bytes"])
    assert decode_room_payload(data) == UnknownPayload(case["kind"], case["version"], data)
