"""Regenerate docs/test-vectors/*.json from fixed seeds, deterministically.

Usage::

    .venv/bin/python tools/gen_vectors.py           # rewrite the vector files
    .venv/bin/python tools/gen_vectors.py --check   # exit 1 if the files are stale

Everything here is derived from fixed labels (seeds are BLAKE2b-256 of a label) and
Ed25519 signatures are deterministic, so the output never changes unless the wire
format does. tests/test_vectors.py checks that the library reproduces every vector
byte for byte, rejects every negative vector with the stated reason, and that these
files are what this script produces.

Negative vectors are *signed correctly* wherever the signature is not the point, so
the stated reason is the one an implementation must report, not a side effect. The
order of checks an implementation follows is documented in docs/test-vectors/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import cbor2

from p2pmsg.certs import DeviceCertificate, Role, issue_certificate, person_id
from p2pmsg.entry import (
    FORMAT_VERSION,
    MAX_DEPS,
    MAX_ENTRY_SIZE,
    MAX_PAYLOAD_SIZE,
    Entry,
    Header,
    create_entry,
    decode_entry,
    payload_hash,
)
from p2pmsg.errors import Reason
from p2pmsg.forks import ForkProof
from p2pmsg.identity import SIGNATURE_SIZE, Domain, Identity
from p2pmsg.messaging.content import (
    Attachment,
    AttachmentDescriptor,
    Content,
    Redaction,
    Text,
    encode_content,
)
from p2pmsg.messaging.crypto import associated_data, encrypt_content, encrypt_for_entry, refs_of
from p2pmsg.messaging.kinds import Kind
from p2pmsg.messaging.payloads import (
    ClearRefs,
    RelayAdd,
    RelayRemove,
    Sealed,
    decode_room_payload,
    encode_room_payload,
)

__all__ = ["OUT_DIR", "annotated_dump", "build_all", "main"]

OUT_DIR = Path(__file__).resolve().parent.parent / "docs" / "test-vectors"
BASE_MS = 1_700_000_000_000
"""2023-11-14T22:13:20Z, the physical part of every vector timestamp."""


def _h(data: bytes) -> str:
    return data.hex()


def seed_for(label: str) -> bytes:
    """The 32-byte secret seed of a vector key: BLAKE2b-256 of ``p2pmsg vector key <label>``."""
    return hashlib.blake2b(f"p2pmsg vector key {label}".encode(), digest_size=32).digest()


def topic_for(label: str) -> bytes:
    return hashlib.blake2b(f"p2pmsg vector topic {label}".encode(), digest_size=32).digest()


def hlc(ms: int, counter: int = 0) -> int:
    return ms << 16 | counter


def _header_json(h: Header) -> dict[str, Any]:
    return {
        "version": h.version,
        "author": _h(h.author),
        "topic": _h(h.topic),
        "seq": h.seq,
        "backlink": None if h.backlink is None else _h(h.backlink),
        "timestamp": h.timestamp,
        "payload_hash": _h(h.payload_hash),
        "payload_size": h.payload_size,
        "deps": [_h(d) for d in h.deps],
    }


def _entry_case(name: str, description: str, key_label: str, entry: Entry,
                payload: bytes) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "secret_seed": _h(seed_for(key_label)),
        "public_key": _h(entry.header.author),
        "topic": _h(entry.header.topic),
        "header": _header_json(entry.header),
        "header_bytes": _h(entry.raw),
        "signing_input": _h(Domain.ENTRY.value + entry.raw),
        "signature": _h(entry.signature),
        "entry_bytes": _h(entry.to_bytes()),
        "entry_id": _h(entry.id),
        "payload": _h(payload),
        "payload_hash": _h(payload_hash(payload)),
    }


def _sign_raw(identity: Identity, raw: bytes) -> bytes:
    """Entry wire bytes for arbitrary header bytes, correctly signed."""
    return raw + identity.sign(Domain.ENTRY, raw)


def _fields(h: Header) -> list[Any]:
    return [h.version, h.author, h.topic, h.seq, h.backlink, h.timestamp,
            h.payload_hash, h.payload_size, list(h.deps)]


def _canon(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


def _with_raw_item(fields: list[Any], index: int, item: bytes) -> bytes:
    """A header array whose item ``index`` is the given (hand-made) encoding.

    A definite array is its head followed by its items' encodings, so this swaps one
    item's bytes for a non-canonical spelling of the same value.
    """
    items = [_canon(v) for v in fields]
    items[index] = item
    return bytes([0x80 | len(fields)]) + b"".join(items)


def build_entries() -> tuple[dict[str, Any], dict[str, Entry]]:
    """The entry vectors, and the entries by name (reused by the fork vectors)."""
    alice = Identity.from_seed(seed_for("alice"))
    bob = Identity.from_seed(seed_for("bob"))
    room = topic_for("room-1")
    other_room = topic_for("room-2")

    e1 = create_entry(alice, room, 1, None, hlc(BASE_MS), b"hello")
    e2 = create_entry(alice, room, 2, e1.id, hlc(BASE_MS, 1), b"")
    p3 = bytes(range(256)) + bytes(44)  # 300 bytes: a two-byte size head
    e3 = create_entry(bob, room, 1, None, hlc(BASE_MS + 1500), p3, deps=[e2.id, e1.id])
    far_backlink = hashlib.blake2b(b"p2pmsg vector backlink", digest_size=32).digest()
    p4 = b"x" * 65_536  # the smallest size with a four-byte head
    e4 = create_entry(bob, other_room, 1 << 32, far_backlink, hlc(BASE_MS + 86_400_000, 65535),
                      p4)
    deps16 = sorted(hashlib.blake2b(bytes([i]), digest_size=32).digest() for i in range(MAX_DEPS))
    e5 = create_entry(alice, other_room, 1, None, hlc(BASE_MS, 7), b"\x00", deps=deps16)

    positive = [
        _entry_case("first-entry", "seq 1: backlink null, no deps, 5-byte payload",
                    "alice", e1, b"hello"),
        _entry_case("second-entry", "seq 2 of the same log: backlink = id of first-entry, "
                    "empty payload, HLC counter 1", "alice", e2, b""),
        _entry_case("entry-with-deps", "another author in the same topic; two deps in "
                    "byte order; 300-byte payload", "bob", e3, p3),
        _entry_case("large-integers", "seq 2^32 (9-byte head) with an arbitrary backlink, "
                    "timestamp with counter 65535, 65536-byte payload", "bob", e4, p4),
        _entry_case("max-deps", f"exactly MAX_DEPS = {MAX_DEPS} deps", "alice", e5, b"\x00"),
    ]

    neg: list[dict[str, Any]] = []

    def add(name: str, reason: Reason, entry: bytes, description: str, **extra: Any) -> None:
        case: dict[str, Any] = {"name": name, "description": description,
                                "entry_bytes": _h(entry), "expected_reason": reason.value}
        case.update(extra)
        neg.append(case)

    base = _fields(e1.header)

    def with_field(i: int, value: Any) -> bytes:
        f = list(base)
        f[i] = value
        return _sign_raw(alice, _canon(f))

    # --- decode: MALFORMED
    add("too-short", Reason.MALFORMED, e1.to_bytes()[-SIGNATURE_SIZE:],
        "64 bytes: a signature and no header")
    add("not-cbor", Reason.MALFORMED, _sign_raw(alice, b"\xff\x00"), "header is not CBOR")
    add("truncated-header", Reason.MALFORMED, _sign_raw(alice, e1.raw[:-3]),
        "the header array ends early")
    add("header-is-map", Reason.MALFORMED,
        _sign_raw(alice, _canon({0: 1})), "header is a map, not an array")
    add("eight-fields", Reason.MALFORMED, _sign_raw(alice, _canon(base[:8])),
        "version 1 header with 8 fields")
    add("short-author", Reason.MALFORMED, with_field(1, alice.public_key[:31]),
        "author is 31 bytes")
    add("author-is-text", Reason.MALFORMED, with_field(1, "a" * 32), "author is a text string")
    add("short-topic", Reason.MALFORMED, with_field(2, room[:31]), "topic is 31 bytes")
    add("seq-zero", Reason.MALFORMED, with_field(3, 0), "seq 0")
    add("seq-negative", Reason.MALFORMED, with_field(3, -1), "seq -1 (major type 1)")
    add("seq-too-big", Reason.MALFORMED, with_field(3, 1 << 63), "seq 2^63 > MAX_SEQ")
    add("seq1-with-backlink", Reason.MALFORMED, with_field(4, far_backlink),
        "seq 1 carries a backlink")
    f = list(base)
    f[3] = 2
    add("seq2-without-backlink", Reason.MALFORMED, _sign_raw(alice, _canon(f)),
        "seq 2 with a null backlink")
    add("timestamp-negative", Reason.MALFORMED, with_field(5, -1), "timestamp -1")
    add("timestamp-bignum", Reason.MALFORMED, with_field(5, 1 << 64),
        "timestamp 2^64 (a tag-2 bignum, above MAX_TIMESTAMP)")
    add("short-payload-hash", Reason.MALFORMED, with_field(6, bytes(31)),
        "payload hash 31 bytes")
    add("payload-size-negative", Reason.MALFORMED, with_field(7, -1), "payload size -1")
    add("deps-not-array", Reason.MALFORMED, with_field(8, bytes(32)), "deps is a byte string")
    add("deps-unsorted", Reason.MALFORMED, with_field(8, [deps16[1], deps16[0]]),
        "deps out of byte order")
    add("deps-duplicate", Reason.MALFORMED, with_field(8, [deps16[0], deps16[0]]),
        "the same dep twice")
    add("dep-short", Reason.MALFORMED, with_field(8, [bytes(31)]), "a 31-byte dep")
    add("version-not-int", Reason.MALFORMED, with_field(0, "1"), "version is a text string")
    # --- decode: NON_CANONICAL
    add("non-shortest-int", Reason.NON_CANONICAL,
        _sign_raw(alice, _with_raw_item(base, 3, b"\x18\x01")),
        "seq 1 written as 0x18 0x01 (a two-byte head for a value below 24)")
    add("indefinite-array", Reason.NON_CANONICAL,
        _sign_raw(alice, b"\x9f" + e1.raw[1:] + b"\xff"),
        "header as an indefinite-length array (0x9f ... 0xff)")
    add("indefinite-deps", Reason.NON_CANONICAL,
        _sign_raw(alice, e1.raw[:-1] + b"\x9f\xff"), "deps as an empty indefinite-length array")
    add("trailing-byte", Reason.NON_CANONICAL, _sign_raw(alice, e1.raw + b"\x00"),
        "one byte after the header array, before the signature")
    add("long-length-head", Reason.NON_CANONICAL,
        _sign_raw(alice, _with_raw_item(base, 1, b"\x59\x00\x20" + alice.public_key)),
        "the author byte string with a 3-byte length head (0x59 0x0020)")
    # --- decode: TOO_LARGE
    add("entry-too-large", Reason.TOO_LARGE, bytes(MAX_ENTRY_SIZE + 1),
        f"{MAX_ENTRY_SIZE + 1} bytes > MAX_ENTRY_SIZE")
    add("payload-size-too-large", Reason.TOO_LARGE, with_field(7, MAX_PAYLOAD_SIZE + 1),
        "payload size MAX_PAYLOAD_SIZE + 1")
    deps17 = sorted(hashlib.blake2b(bytes([i]), digest_size=32).digest()
                    for i in range(MAX_DEPS + 1))
    add("too-many-deps", Reason.TOO_LARGE, with_field(8, deps17), "MAX_DEPS + 1 deps")
    # --- decode: UNKNOWN_VERSION
    add("version-2", Reason.UNKNOWN_VERSION, with_field(0, FORMAT_VERSION + 1),
        "version 2 with the version-1 layout")
    add("version-2-other-arity", Reason.UNKNOWN_VERSION, _sign_raw(alice, _canon([2, b"x"])),
        "version 2 with another field count")
    # --- signature
    flipped = bytearray(e1.to_bytes())
    flipped[-1] ^= 0x01
    add("flipped-signature-bit", Reason.BAD_SIGNATURE, bytes(flipped),
        "last bit of the signature of first-entry flipped")
    add("signed-by-another-key", Reason.BAD_SIGNATURE, _sign_raw(bob, e1.raw),
        "first-entry's header signed by bob, author says alice")
    add("signed-in-cert-domain", Reason.BAD_SIGNATURE,
        e1.raw + alice.sign(Domain.CERTIFICATE, e1.raw),
        "first-entry's header signed by alice in the certificate domain")
    # --- linkage (with "prev": the trusted head, null = empty log)
    e3_again = create_entry(alice, room, 3, e2.id, hlc(BASE_MS, 2), b"three")
    add("seq-gap", Reason.SEQ_GAP, e3_again.to_bytes(), "seq 3 after head seq 1",
        prev=_h(e1.to_bytes()))
    add("seq-gap-empty-log", Reason.SEQ_GAP, e2.to_bytes(), "seq 2 into an empty log",
        prev=None)
    wrong_back = create_entry(alice, room, 2, far_backlink, hlc(BASE_MS, 1), b"")
    add("backlink-mismatch", Reason.BACKLINK_MISMATCH, wrong_back.to_bytes(),
        "seq 2 whose backlink is not the id of the head", prev=_h(e1.to_bytes()))
    other_log = create_entry(alice, other_room, 2, e1.id, hlc(BASE_MS, 1), b"")
    add("wrong-log", Reason.WRONG_LOG, other_log.to_bytes(),
        "seq 2 in another topic than the head", prev=_h(e1.to_bytes()))
    # --- payload
    add("payload-mismatch", Reason.PAYLOAD_MISMATCH, e1.to_bytes(),
        "first-entry with payload 'hellO'", payload=_h(b"hellO"))
    add("payload-size-mismatch", Reason.PAYLOAD_MISMATCH, e1.to_bytes(),
        "first-entry with payload 'hello!' (size 6, header says 5)", payload=_h(b"hello!"))

    doc = {
        "description": "p2pmsg entry format v1 test vectors; see docs/protocol.md and "
                       "docs/test-vectors/README.md. Generated by tools/gen_vectors.py.",
        "entry_domain": _h(Domain.ENTRY.value),
        "positive": positive,
        "negative": neg,
    }
    named = {"first-entry": e1, "second-entry": e2, "entry-with-deps": e3,
             "large-integers": e4, "max-deps": e5}
    return doc, named


def _cert_json(c: DeviceCertificate) -> dict[str, Any]:
    return {"version": c.version, "org": _h(c.org), "device": _h(c.device),
            "role": c.role.value, "display_name": c.display_name,
            "valid_from": c.valid_from, "valid_until": c.valid_until,
            "person": None if c.person is None else _h(c.person)}


def build_certificates() -> dict[str, Any]:
    org = Identity.from_seed(seed_for("org-root"))
    other_org = Identity.from_seed(seed_for("other-org-root"))
    device = Identity.from_seed(seed_for("alice")).public_key
    day = 86_400_000
    positive = []
    certs = {}
    person = person_id(org, "staff-4711")
    for name, role, display, start, end, who in [
        ("member", Role.MEMBER, "Station 3B, Tablet 1", BASE_MS, BASE_MS + 365 * day, None),
        ("node", Role.NODE, "Klinikum Nord Knoten \u00e4\u00f6\u00fc", BASE_MS, BASE_MS + day,
         None),
        ("admin", Role.ADMIN, "A", 0, (1 << 64) - 1, None),
        ("member-with-person", Role.MEMBER, "Dr. A, Phone", BASE_MS, BASE_MS + 365 * day,
         person),
    ]:
        c = issue_certificate(org, device, role, display, start, end, person=who)
        certs[name] = c
        positive.append({
            "name": name,
            "org_secret_seed": _h(seed_for("org-root")),
            "fields": _cert_json(c),
            "body_bytes": _h(c.body()),
            "signing_input": _h(Domain.CERTIFICATE.value + c.body()),
            "signature": _h(c.signature),
            "certificate_bytes": _h(c.to_bytes()),
            "check": {"org_root": _h(org.public_key), "now_ms": c.valid_from},
            **({} if who is None else {"person_handle": "staff-4711"}),
        })
    member = certs["member"]
    neg: list[dict[str, Any]] = []

    def add(name: str, reason: Reason, data: bytes, description: str, *,
            org_root: bytes = org.public_key, now_ms: int = BASE_MS) -> None:
        neg.append({"name": name, "description": description, "certificate_bytes": _h(data),
                    "org_root": _h(org_root), "now_ms": now_ms,
                    "expected_reason": reason.value})

    def signed(body: list[Any], key: Identity = org) -> bytes:
        b = _canon(body)
        return _canon([b, key.sign(Domain.CERTIFICATE, b)])

    mb = [1, org.public_key, device, "member", member.display_name, member.valid_from,
          member.valid_until]
    add("expired", Reason.CERT_EXPIRED, member.to_bytes(), "checked at valid_until (exclusive)",
        now_ms=member.valid_until)
    add("not-yet-valid", Reason.CERT_EXPIRED, member.to_bytes(), "checked before valid_from",
        now_ms=member.valid_from - 1)
    add("wrong-issuer", Reason.CERT_WRONG_ISSUER, member.to_bytes(),
        "expected another organisation root", org_root=other_org.public_key)
    add("forged-issuer", Reason.BAD_SIGNATURE, signed(mb, other_org),
        "names org-root but signed by other-org-root")
    bad = bytearray(member.to_bytes())
    bad[-1] ^= 0x80
    add("bad-signature", Reason.BAD_SIGNATURE, bytes(bad), "last signature bit flipped")
    b = _canon(mb)
    add("entry-domain-signature", Reason.BAD_SIGNATURE,
        _canon([b, org.sign(Domain.ENTRY, b)]), "body signed in the entry domain")
    add("unknown-version", Reason.UNKNOWN_VERSION, signed([3, *mb[1:], person]), "version 3")
    add("v2-without-person", Reason.MALFORMED, signed([2, *mb[1:]]),
        "version 2 with 7 fields (the person id is missing)")
    add("v2-short-person", Reason.MALFORMED, signed([2, *mb[1:], person[:15]]),
        "15-byte person id")
    add("v1-with-person", Reason.MALFORMED, signed([*mb, person]),
        "version 1 with 8 fields")
    add("unknown-role", Reason.MALFORMED, signed([*mb[:3], "root", *mb[4:]]), "role 'root'")
    add("empty-window", Reason.MALFORMED, signed([*mb[:5], BASE_MS, BASE_MS]),
        "valid_from == valid_until")
    add("empty-name", Reason.MALFORMED, signed([*mb[:4], "", *mb[5:]]), "empty display name")
    add("short-device", Reason.MALFORMED, signed([*mb[:2], device[:31], *mb[3:]]),
        "31-byte device key")
    add("six-fields", Reason.MALFORMED, signed(mb[:6]), "body with 6 fields")
    add("not-a-pair", Reason.MALFORMED, _canon([b]), "outer array of one element")
    add("garbage", Reason.MALFORMED, b"\xff\xfe", "not CBOR")
    add("non-canonical-outer", Reason.NON_CANONICAL,
        b"\x9f" + member.to_bytes()[1:] + b"\xff", "outer array with indefinite length")
    add("too-large", Reason.TOO_LARGE, bytes(1025), "1025 bytes > MAX_CERT_SIZE")
    return {
        "description": "p2pmsg device certificate v1 and v2 (person) test vectors. Check: "
                       "decode_certificate(certificate_bytes), then verify_certificate("
                       "cert, org_root, now_ms). person_handle: the person id is "
                       "person_id(org root, handle). Generated by tools/gen_vectors.py.",
        "certificate_domain": _h(Domain.CERTIFICATE.value),
        "positive": positive,
        "negative": neg,
    }


def build_fork_proofs(named: dict[str, Entry]) -> dict[str, Any]:
    alice = Identity.from_seed(seed_for("alice"))
    room = topic_for("room-1")
    e1, e2 = named["first-entry"], named["second-entry"]
    e2b = create_entry(alice, room, 2, e1.id, hlc(BASE_MS, 1), b"a different second entry")
    proof = ForkProof.of(e2, e2b)
    positive = [{
        "name": "seq-2-equivocation",
        "description": "alice signed two different entries at seq 2 of room-1",
        "first": _h(proof.first.to_bytes()),
        "second": _h(proof.second.to_bytes()),
        "first_id": _h(proof.first.id),
        "second_id": _h(proof.second.id),
        "author": _h(alice.public_key),
        "topic": _h(room),
        "seq": 2,
        "proof_bytes": _h(proof.to_bytes()),
    }]
    neg: list[dict[str, Any]] = []

    def add(name: str, reason: Reason, data: bytes, description: str) -> None:
        neg.append({"name": name, "description": description, "proof_bytes": _h(data),
                    "expected_reason": reason.value})

    a, b = proof.first.to_bytes(), proof.second.to_bytes()
    add("same-entry-twice", Reason.MALFORMED, _canon([a, a]), "one entry twice is no fork")
    add("wrong-order", Reason.MALFORMED, _canon([b, a]), "entries not in ascending id order")
    add("different-seq", Reason.MALFORMED,
        _canon(sorted([e1.to_bytes(), e2.to_bytes()],
                      key=lambda x: decode_entry(x).id)), "seq 1 and seq 2")
    forged = create_entry(Identity.from_seed(seed_for("mallory")), room, 2, e1.id,
                          hlc(BASE_MS, 1), b"framed")
    forged_bytes = forged.raw.replace(forged.header.author, alice.public_key) + forged.signature
    forged_entry = decode_entry(forged_bytes)
    pair = sorted([(e2.id, e2.to_bytes()), (forged_entry.id, forged_bytes)])
    add("one-bad-signature", Reason.BAD_SIGNATURE, _canon([p[1] for p in pair]),
        "mallory tries to frame alice: the second header is not signed by alice")
    add("three-entries", Reason.MALFORMED, _canon([a, b, a]), "array of three")
    add("garbage", Reason.MALFORMED, b"\x82\x41", "truncated CBOR")
    add("inner-non-canonical", Reason.NON_CANONICAL,
        _canon([_sign_raw(alice, _with_raw_item(_fields(proof.first.header), 3, b"\x18\x02")),
                b]),
        "first entry's header has a non-shortest integer")
    return {
        "description": "p2pmsg fork proof v1 test vectors. Check: decode_fork_proof("
                       "proof_bytes) (which decodes and verifies). Generated by "
                       "tools/gen_vectors.py.",
        "positive": positive,
        "negative": neg,
    }


def _sealed_case(name: str, description: str, content: Content, seq: int,
                 version: int = 2) -> dict[str, Any]:
    key = hashlib.blake2b(b"p2pmsg vector epoch key", digest_size=32).digest()
    epoch = hashlib.blake2b(b"p2pmsg vector epoch id", digest_size=32).digest()
    topic, author = topic_for("room-1"), Identity.from_seed(seed_for("alice")).public_key
    nonce = hashlib.blake2b(f"p2pmsg vector nonce {name}".encode(), digest_size=24).digest()
    refs = refs_of(content)
    assert refs is not None
    plaintext = encode_content(content)
    if version == 1:
        payload = encrypt_for_entry(key, epoch, topic, author, seq, plaintext, nonce=nonce,
                                    version=1)
        ad = associated_data(topic, author, seq, epoch)
    else:
        payload = encrypt_content(key, epoch, topic, author, seq, content, nonce=nonce)
        ad = associated_data(topic, author, seq, epoch, refs)
    sealed = decode_room_payload(payload)
    assert isinstance(sealed, Sealed)
    return {
        "name": name, "description": description, "version": version,
        "epoch_key": _h(key), "epoch": _h(epoch), "topic": _h(topic), "author": _h(author),
        "seq": seq, "nonce": _h(nonce), "plaintext": _h(plaintext),
        "refs": {"blobs": [_h(b) for b in refs.blobs],
                 "redacts": None if refs.redacts is None else _h(refs.redacts)}
        if version != 1 else None,
        "associated_data": _h(ad), "ciphertext": _h(sealed.ciphertext),
        "payload_bytes": _h(payload),
    }


def build_sealed() -> dict[str, Any]:
    """SEALED room payloads (v2 with clear refs, v1 legacy) and negative cases."""
    root = hashlib.blake2b(b"p2pmsg vector blob root", digest_size=32).digest()
    target = hashlib.blake2b(b"p2pmsg vector redacted entry", digest_size=32).digest()
    file_key = hashlib.blake2b(b"p2pmsg vector file key", digest_size=32).digest()
    doc = Attachment(Kind.DOCUMENT, AttachmentDescriptor(root, 1234, "application/pdf",
                                                         file_key, "befund.pdf"))
    positive = [
        _sealed_case("v2-text", "a text: empty clear refs", Text("Befund anbei"), 3),
        _sealed_case("v2-document", "a document: its blob root in the clear", doc, 4),
        _sealed_case("v2-redaction", "a redaction: the redacted entry id in the clear",
                     Redaction(target, "falscher Patient"), 5),
        _sealed_case("v1-text", "version 1 (no clear refs) still decodes and opens",
                     Text("Befund anbei"), 3, version=1),
    ]
    negative: list[dict[str, Any]] = []
    by_name = {c["name"]: c for c in positive}

    def add(name: str, stage: str, reason: Reason, payload: bytes, description: str) -> None:
        base = by_name["v2-document"]
        negative.append({"name": name, "description": description, "stage": stage,
                         "epoch_key": base["epoch_key"], "topic": base["topic"],
                         "author": base["author"], "seq": base["seq"],
                         "payload_bytes": _h(payload), "expected_reason": reason.value})

    doc_case = by_name["v2-document"]
    head = [38, 2, bytes.fromhex(doc_case["epoch"]), bytes.fromhex(doc_case["nonce"]),
            bytes.fromhex(doc_case["ciphertext"])]
    other = hashlib.blake2b(b"p2pmsg vector other root", digest_size=32).digest()
    add("v2-without-refs", "decode", Reason.MALFORMED, _canon(head),
        "version 2 needs the two refs fields")
    add("unsorted-blobs", "decode", Reason.MALFORMED,
        _canon([*head, sorted([root, other], reverse=True), None]),
        "clear blob roots must be sorted and unique")
    add("too-many-blobs", "decode", Reason.MALFORMED,
        _canon([*head, [bytes([i]) * 32 for i in range(17)], None]),
        "at most 16 clear blob roots")
    add("short-redacts", "decode", Reason.MALFORMED, _canon([*head, [], target[:31]]),
        "redacts is an entry id (32 bytes) or null")
    add("refs-rewritten", "decrypt", Reason.PAYLOAD_MISMATCH,
        _canon([*head, [other], None]),
        "the clear refs are in the AEAD associated data: rewriting them breaks decryption")
    add("downgraded-to-v1", "decrypt", Reason.PAYLOAD_MISMATCH, _canon([38, 1, *head[2:]]),
        "a v2 ciphertext relabelled as v1 (refs dropped) does not open")
    key = bytes.fromhex(doc_case["epoch_key"])
    topic, author = bytes.fromhex(doc_case["topic"]), bytes.fromhex(doc_case["author"])
    hidden = encrypt_for_entry(key, bytes.fromhex(doc_case["epoch"]), topic, author,
                               doc_case["seq"], encode_content(doc),
                               nonce=bytes.fromhex(doc_case["nonce"]), refs=ClearRefs())
    add("refs-disagree", "content", Reason.MALFORMED, hidden,
        "opens, but the clear refs (none) are not the content's (its blob root): "
        "the author hid the attachment from relays; members reject the content")
    return {"ad_domain_v1": _h(b"p2pmsg/room-message/v1\x00"),
            "ad_domain_v2": _h(b"p2pmsg/room-message/v2\x00"),
            "positive": positive, "negative": negative}


def _head_len(first: int) -> int:
    info = first & 0x1F
    return 1 + {24: 1, 25: 2, 26: 4, 27: 8}.get(info, 0)


def _hexline(data: bytes, indent: int, note: str) -> list[str]:
    """Hex in rows of 16 bytes, the note on the first row, continuation rows marked."""
    rows = [data[i : i + 16] for i in range(0, len(data), 16)] or [b""]
    out = []
    for n, row in enumerate(rows):
        text = " " * indent + row.hex(" ")
        out.append(f"{text:<56}# {note if n == 0 else '...'}")
    return out


def annotated_dump(entry: Entry) -> str:
    """The entry's wire bytes, one CBOR item per line with its meaning (docs/protocol.md).

    Every line is ``<hex bytes>  # note``; concatenating the hex of all lines gives
    the entry bytes exactly (tests/test_vectors.py checks the copy in the docs).
    """
    raw = entry.raw
    h = entry.header
    names = [
        ("version", f"unsigned({h.version})"),
        ("author", "bytes(32)"),
        ("topic", "bytes(32)"),
        ("seq", f"unsigned({h.seq})"),
        ("backlink", "null" if h.backlink is None else "bytes(32)"),
        ("timestamp", f"unsigned({h.timestamp}) = {h.timestamp >> 16} ms << 16 | "
                      f"{h.timestamp & 0xFFFF}"),
        ("payload_hash", "bytes(32) = BLAKE2b-256(payload)"),
        ("payload_size", f"unsigned({h.payload_size})"),
        ("deps", f"array({len(h.deps)})"),
    ]
    lines = _hexline(raw[:1], 0, "header: array(9), major type 4, additional info 9")
    pos = 1
    for field, desc in names:
        first = raw[pos]
        major = first >> 5
        head = _head_len(first)
        if major == 2:  # byte string: head, then content
            length = int.from_bytes(raw[pos + 1 : pos + head], "big") if head > 1 else first & 0x1F
            lines += _hexline(raw[pos : pos + head], 2, f"{field}: {desc} head")
            lines += _hexline(raw[pos + head : pos + head + length], 4, f"{field} content")
            pos += head + length
        elif major == 4:  # deps array: head, then each bstr
            lines += _hexline(raw[pos : pos + head], 2, f"{field}: {desc}")
            pos += head
            for i in range(len(h.deps)):
                lines += _hexline(raw[pos : pos + 2], 4, f"deps[{i}]: bytes(32) head")
                lines += _hexline(raw[pos + 2 : pos + 34], 6, f"deps[{i}] content")
                pos += 34
        else:
            lines += _hexline(raw[pos : pos + head], 2, f"{field}: {desc}")
            pos += head
    assert pos == len(raw), "dump must cover the whole header"
    lines += _hexline(entry.signature, 0, "signature: 64 raw bytes (not CBOR)")
    return "\n".join(lines)


def build_room_payloads() -> dict[str, Any]:
    """Plaintext room payloads: RELAY_ADD / RELAY_REMOVE (docs/messaging.md, "Relays")."""
    node = Identity.from_seed(seed_for("relay-node")).public_key
    org = Identity.from_seed(seed_for("relay-org")).public_key
    positive = []
    for name, description, payload, fields in (
        ("relay-add", "declare a node of an organisation a relay of the room",
         RelayAdd(node, org), {"node": _h(node), "org": _h(org)}),
        ("relay-remove", "the node stops relaying the room", RelayRemove(node),
         {"node": _h(node)}),
    ):
        data = encode_room_payload(payload)
        assert decode_room_payload(data) == payload
        kind = Kind.RELAY_ADD if isinstance(payload, RelayAdd) else Kind.RELAY_REMOVE
        positive.append({"name": name, "description": description, "kind": int(kind),
                         "version": 1, "fields": fields, "payload_bytes": _h(data)})
    negative = [
        {"name": name, "description": description, "payload_bytes": _h(_canon(value)),
         "expected_reason": Reason.MALFORMED.value}
        for name, description, value in (
            ("relay-add-without-org", "RELAY_ADD names the node and its organisation",
             [39, 1, node]),
            ("relay-add-extra-field", "no extra fields in version 1", [39, 1, node, org, 0]),
            ("relay-add-short-node", "a node key is 32 bytes", [39, 1, node[:31], org]),
            ("relay-remove-with-org", "RELAY_REMOVE names the node only", [40, 1, node, org]),
            ("relay-remove-text-node", "the node is a byte string", [40, 1, node.hex()]),
        )
    ]
    newer = _canon([39, 2, node, org, "a field of a later version"])
    unknown = [{"name": "relay-add-v2", "description": "a newer version is kept as an "
                "unknown payload (never parsed, never an error)", "payload_bytes": _h(newer),
                "kind": 39, "version": 2}]
    return {"positive": positive, "negative": negative, "unknown": unknown}


def build_all() -> dict[str, str]:
    """File name -> exact file text for every vector file."""
    entries, named = build_entries()
    docs = {
        "entries.json": entries,
        "certificates.json": build_certificates(),
        "fork-proofs.json": build_fork_proofs(named),
        "sealed.json": build_sealed(),
        "room-payloads.json": build_room_payloads(),
    }
    return {name: json.dumps(d, indent=2, ensure_ascii=False) + "\n" for name, d in docs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    parser.add_argument("--dump", action="store_true",
                        help="print the annotated dump of first-entry (for docs/protocol.md)")
    args = parser.parse_args(argv)
    if args.dump:
        print(annotated_dump(build_entries()[1]["first-entry"]))
        return 0
    stale = []
    for name, text in build_all().items():
        path = OUT_DIR / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale test vectors: {', '.join(stale)}; run tools/gen_vectors.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
