"""The p2pmsg-tcp/1 handshake machines (sans-IO): success, wrong key, policy refusal,
a man in the middle who swaps ephemeral keys, replay, malformed hellos, and fuzzing
(garbage and bit flips only ever raise TransportError).

:class:`EphemeralSwapMitm` is reused by the loopback tests in test_tcp_transport.py.
"""

from __future__ import annotations

import itertools
import os

import nacl.bindings as sodium
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from p2pmsg_tcp.handshake import (
    HELLO_SIZE,
    MAGIC,
    VERSION,
    ClientHandshake,
    ServerHandshake,
    State,
    transcript_hash,
)
from p2pmsg_tcp.records import (
    HEADER_BYTES,
    RecordDecoder,
    RecordEncoder,
    new_pull_state,
    new_push_state,
)

from p2pmsg.errors import LocalProtocolError, TransportError
from p2pmsg.identity import Identity

ALICE = Identity.from_seed(b"A" * 32)  # dialer
BOB = Identity.from_seed(b"B" * 32)  # listener
MALLORY = Identity.from_seed(b"M" * 32)


def _drain(decoder: RecordDecoder) -> list[bytes]:
    out = []
    while (record := decoder.next_record()) is not None:
        out.append(record.data)
    return out


def run(
    client: ClientHandshake, server: ServerHandshake, mitm: EphemeralSwapMitm | None = None
) -> list[bytes]:
    """Shuttle bytes until nobody has anything to say; the list of client->server writes."""
    sent_by_client: list[bytes] = []
    for _ in range(10):
        c_out = client.data_to_send()
        if c_out:
            sent_by_client.append(c_out)
            server.receive_data(mitm.from_client(c_out) if mitm else c_out)
        s_out = server.data_to_send()
        if s_out:
            client.receive_data(mitm.from_server(s_out) if mitm else s_out)
        if not c_out and not s_out:
            break
    return sent_by_client


class EphemeralSwapMitm:
    """An active attacker between client and server that knows every session key.

    It replaces the client's ephemeral key with its own towards the server and the
    server's with another of its own towards the client, decrypts every handshake
    record and re-encrypts it for the other side. Only the node keys' signatures
    over the transcript (which contains the real ephemeral keys each side saw) can
    stop it.
    """

    def __init__(self) -> None:
        self.kp_towards_server = sodium.crypto_kx_keypair()  # we are the "client" there
        self.kp_towards_client = sodium.crypto_kx_keypair()  # we are the "server" there
        self._c_in = bytearray()
        self._s_in = bytearray()
        self._eph_c: bytes | None = None
        self._eph_s: bytes | None = None
        self._dec_c: RecordDecoder | None = None
        self._dec_s: RecordDecoder | None = None
        self._enc_to_s: RecordEncoder | None = None
        self._enc_to_c: RecordEncoder | None = None

    def _keys_with_client(self) -> tuple[bytes, bytes]:
        assert self._eph_c is not None
        pk, sk = self.kp_towards_client
        rx, tx = sodium.crypto_kx_server_session_keys(pk, sk, self._eph_c)
        return rx, tx

    def _keys_with_server(self) -> tuple[bytes, bytes]:
        assert self._eph_s is not None
        pk, sk = self.kp_towards_server
        rx, tx = sodium.crypto_kx_client_session_keys(pk, sk, self._eph_s)
        return rx, tx

    def from_client(self, data: bytes) -> bytes:
        """Bytes the client sent -> the bytes we forward to the server."""
        self._c_in += data
        out = bytearray()
        if self._eph_c is None and len(self._c_in) >= HELLO_SIZE:
            self._eph_c = bytes(self._c_in[5:HELLO_SIZE])
            del self._c_in[:HELLO_SIZE]
            out += MAGIC + bytes([VERSION]) + self.kp_towards_server[0]
        if self._eph_c is not None and self._dec_c is None and len(self._c_in) >= HEADER_BYTES:
            rx, _ = self._keys_with_client()
            self._dec_c = RecordDecoder(new_pull_state(bytes(self._c_in[:HEADER_BYTES]), rx))
            del self._c_in[:HEADER_BYTES]
            _, tx = self._keys_with_server()
            push, header = new_push_state(tx)
            self._enc_to_s = RecordEncoder(push)
            out += header
        if self._dec_c is not None and self._c_in:
            assert self._enc_to_s is not None
            self._dec_c.receive_data(bytes(self._c_in))
            self._c_in.clear()
            for plaintext in _drain(self._dec_c):
                out += self._enc_to_s.encode(plaintext)
        return bytes(out)

    def from_server(self, data: bytes) -> bytes:
        """Bytes the server sent -> the bytes we forward to the client."""
        self._s_in += data
        out = bytearray()
        if self._eph_s is None and len(self._s_in) >= HELLO_SIZE + HEADER_BYTES:
            self._eph_s = bytes(self._s_in[5:HELLO_SIZE])
            rx, _ = self._keys_with_server()
            header = bytes(self._s_in[HELLO_SIZE : HELLO_SIZE + HEADER_BYTES])
            self._dec_s = RecordDecoder(new_pull_state(header, rx))
            del self._s_in[: HELLO_SIZE + HEADER_BYTES]
            _, tx = self._keys_with_client()
            push, header = new_push_state(tx)
            self._enc_to_c = RecordEncoder(push)
            out += MAGIC + bytes([VERSION]) + self.kp_towards_client[0] + header
        if self._dec_s is not None and self._s_in:
            assert self._enc_to_c is not None
            self._dec_s.receive_data(bytes(self._s_in))
            self._s_in.clear()
            for plaintext in _drain(self._dec_s):
                out += self._enc_to_c.encode(plaintext)
        return bytes(out)


def test_handshake_authenticates_both_sides_and_data_flows() -> None:
    client, server = ClientHandshake(ALICE, BOB.public_key), ServerHandshake(BOB)
    run(client, server)
    assert client.complete and server.complete
    c, s = client.result(), server.result()
    assert c.remote_id == BOB.public_key
    assert s.remote_id == ALICE.public_key
    s.decoder.receive_data(c.encoder.encode(b"to bob"))
    c.decoder.receive_data(s.encoder.encode(b"to alice"))
    assert _drain(s.decoder) == [b"to bob"]
    assert _drain(c.decoder) == [b"to alice"]


def test_bytes_after_the_handshake_reach_the_record_decoder() -> None:
    client, server = ClientHandshake(ALICE, BOB.public_key), ServerHandshake(BOB)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    assert server.complete
    m4 = server.data_to_send()
    early = server.result().encoder.encode(b"sent right after M4")
    client.receive_data(m4 + early)  # one TCP segment carrying both
    assert client.complete
    assert _drain(client.result().decoder) == [b"sent right after M4"]


def test_wrong_expected_peer_fails_having_sent_only_the_hello() -> None:
    client = ClientHandshake(ALICE, MALLORY.public_key)  # expects Mallory, reaches Bob
    server = ServerHandshake(BOB)
    m1 = client.data_to_send()
    server.receive_data(m1)
    with pytest.raises(TransportError, match="mismatch"):
        client.receive_data(server.data_to_send())
    assert client.state is State.FAILED
    assert client.data_to_send() == b""  # never sends its identity or signature
    assert len(m1) == HELLO_SIZE
    assert not server.complete
    with pytest.raises(LocalProtocolError):
        client.result()
    with pytest.raises(LocalProtocolError):
        client.receive_data(b"more")


def test_policy_refusal_happens_before_the_server_signs() -> None:
    asked: list[bytes] = []

    def refuse(peer: bytes) -> bool:
        asked.append(peer)
        return False

    client, server = ClientHandshake(ALICE, BOB.public_key), ServerHandshake(BOB, allow_peer=refuse)
    with pytest.raises(TransportError, match="policy"):
        run(client, server)
    assert asked == [ALICE.public_key]
    assert server.data_to_send() == b""
    assert not client.complete


def test_mitm_swapping_ephemeral_keys_cannot_complete() -> None:
    mitm = EphemeralSwapMitm()
    client, server = ClientHandshake(ALICE, BOB.public_key), ServerHandshake(BOB)
    with pytest.raises(TransportError, match="signature"):
        run(client, server, mitm)
    assert not client.complete
    assert not server.complete


def test_honest_relay_through_the_mitm_harness_works() -> None:
    """Control for the test above: the harness itself relays correctly."""

    class Passthrough(EphemeralSwapMitm):
        def from_client(self, data: bytes) -> bytes:
            return data

        def from_server(self, data: bytes) -> bytes:
            return data

    client, server = ClientHandshake(ALICE, BOB.public_key), ServerHandshake(BOB)
    run(client, server, Passthrough())
    assert client.complete and server.complete


def test_replayed_server_flight_is_rejected() -> None:
    client1, server1 = ClientHandshake(ALICE, BOB.public_key), ServerHandshake(BOB)
    server1.receive_data(client1.data_to_send())
    recorded_m2 = server1.data_to_send()
    client2 = ClientHandshake(ALICE, BOB.public_key)  # fresh ephemeral key
    client2.data_to_send()
    with pytest.raises(TransportError):
        client2.receive_data(recorded_m2)


def test_replayed_client_flight_is_rejected() -> None:
    client1, server1 = ClientHandshake(ALICE, BOB.public_key), ServerHandshake(BOB)
    m1 = client1.data_to_send()
    server1.receive_data(m1)
    client1.receive_data(server1.data_to_send())
    m3 = client1.data_to_send()
    server2 = ServerHandshake(BOB)  # new session, new ephemeral key
    server2.receive_data(m1)
    server2.data_to_send()
    with pytest.raises(TransportError):
        server2.receive_data(m3)


def test_signature_cannot_be_reflected() -> None:
    """A node talking to itself: the client signature is never valid as the server's."""
    assert transcript_hash(b"C", *(bytes(32),) * 4) != transcript_hash(b"S", *(bytes(32),) * 4)
    client, server = ClientHandshake(BOB, BOB.public_key), ServerHandshake(BOB)
    run(client, server)  # legitimate self-connection still works
    assert client.complete and server.complete


@pytest.mark.parametrize(
    ("hello", "message"),
    [
        (b"HTTP/1.1 200 OK\r\n" + bytes(40), "not a p2pmsg-tcp peer"),
        (MAGIC + bytes([VERSION + 1]) + os.urandom(32), "version"),
        (MAGIC + bytes([VERSION]) + bytes(32), "cryptography"),  # low-order X25519 key
    ],
)
def test_bad_hello_is_rejected(hello: bytes, message: str) -> None:
    server = ServerHandshake(BOB)
    with pytest.raises(TransportError, match=message):
        server.receive_data(hello)
    assert server.data_to_send() == b""


def test_wrong_magic_fails_on_the_first_byte() -> None:
    with pytest.raises(TransportError):
        ServerHandshake(BOB).receive_data(b"G")


def test_eof_during_handshake() -> None:
    client, server = ClientHandshake(ALICE, BOB.public_key), ServerHandshake(BOB)
    server.receive_data(client.data_to_send()[:10])
    with pytest.raises(TransportError, match="closed"):
        server.receive_data(b"")


def test_expected_peer_must_be_a_key() -> None:
    with pytest.raises(ValueError):
        ClientHandshake(ALICE, b"short")


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6))
def test_any_segmentation_completes(cuts: list[int]) -> None:
    client, server = ClientHandshake(ALICE, BOB.public_key), ServerHandshake(BOB)

    def deliver(data: bytes, to: ClientHandshake | ServerHandshake) -> None:
        points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
        for a, b in itertools.pairwise(points):
            to.receive_data(data[a:b])

    for _ in range(3):
        deliver(client.data_to_send(), server)
        deliver(server.data_to_send(), client)
    assert client.complete and server.complete


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=200), max_size=6), eof=st.booleans())
def test_fuzz_server_garbage_only_raises_transport_error(chunks: list[bytes], eof: bool) -> None:
    server = ServerHandshake(BOB)
    try:
        for chunk in chunks:
            server.receive_data(chunk)
            server.data_to_send()
        if eof:
            server.receive_data(b"")
    except TransportError:
        return
    assert not server.complete
    assert not eof


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=200), max_size=6), eof=st.booleans())
def test_fuzz_client_garbage_only_raises_transport_error(chunks: list[bytes], eof: bool) -> None:
    client = ClientHandshake(ALICE, BOB.public_key)
    client.data_to_send()
    try:
        for chunk in chunks:
            client.receive_data(chunk)
            # Nothing may leave the client before the server proved its key.
            assert client.data_to_send() == b""
        if eof:
            client.receive_data(b"")
    except TransportError:
        return
    assert not client.complete
    assert not eof


@settings(max_examples=300, deadline=None)
@given(
    flight=st.integers(min_value=0, max_value=3),
    position=st.integers(min_value=0),
    bit=st.integers(0, 7),
)
def test_fuzz_any_bit_flip_in_the_handshake_fails_it(flight: int, position: int, bit: int) -> None:
    client, server = ClientHandshake(ALICE, BOB.public_key), ServerHandshake(BOB)
    machines: list[tuple[ClientHandshake | ServerHandshake, ClientHandshake | ServerHandshake]] = [
        (client, server),
        (server, client),
        (client, server),
        (server, client),
    ]
    try:
        for i, (sender, receiver) in enumerate(machines):
            data = bytearray(sender.data_to_send())
            if i == flight:
                data[position % len(data)] ^= 1 << bit
            if data:
                receiver.receive_data(bytes(data))
    except TransportError:
        return
    # A flipped length prefix can make a side wait for bytes that never come:
    # the handshake must not have completed, and the eventual EOF must fail it.
    stalled = client if not client.complete else server
    assert not stalled.complete
    with pytest.raises(TransportError):
        stalled.receive_data(b"")


def test_vectors() -> None:
    """The test vectors of docs/protocol-tcp.md section 6, through the real machines."""
    client_node = Identity.from_seed(bytes([1]) * 32)
    server_node = Identity.from_seed(bytes([2]) * 32)
    eph_c = sodium.crypto_kx_seed_keypair(bytes([3]) * 32)
    eph_s = sodium.crypto_kx_seed_keypair(bytes([4]) * 32)
    v = {
        "client node key": "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
        "server node key": "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
        "eph_c": "85788f6e8c1818fd4314b841a87ffb91af60d95aa98338496cd17ba1cbf1532b",
        "eph_s": "5fd61ddf41b10f75d39b50e9a30228c7fee22cc8afdb1780e48612babf8ebe11",
        "key_c2s": "c742572495ff85e51f12074a11dff826cd54ef069b106b7611d7253449109711",
        "key_s2c": "1987abd82e2edfebc8135342977481ed3bb6186b95d5d8537a5131ee6d023a64",
        "th_C": "145f7edfe31606541c63a54d8672f33d3d130d615603d1e5c5c607361078ccea",
        "th_S": "e535ee38f937fd490d4a9305da2d79532fe5943e3424407a2cbf6e9d34ab7e4d",
        "sig_c": "77e17b6738c7e61bbd6904a540852d18cedac81ae1bd38ffa812f5aa1747fa0d"
        "d3cdff72507ba2c956bf2a4fd4b589fe601500589645709c2d601b18c4104d05",
        "sig_s": "339f5dabe58615b321f0534a2aa2115e063d6f858b9d8a1e0c4bda8cbc10ced0"
        "7c28cc9881d821200d65fe88848ebd454e04cdfb4089bc8bdfad51974ea45004",
    }
    vec = {k: bytes.fromhex(x) for k, x in v.items()}
    assert client_node.public_key == vec["client node key"]
    assert server_node.public_key == vec["server node key"]
    assert (eph_c[0], eph_s[0]) == (vec["eph_c"], vec["eph_s"])
    keys = (vec["eph_c"], vec["eph_s"], client_node.public_key, server_node.public_key)
    assert transcript_hash(b"C", *keys) == vec["th_C"]
    assert transcript_hash(b"S", *keys) == vec["th_S"]

    client = ClientHandshake(client_node, server_node.public_key, ephemeral=eph_c)
    server = ServerHandshake(server_node, ephemeral=eph_s)
    m1 = client.data_to_send()
    assert m1 == bytes.fromhex("5032505401") + vec["eph_c"]
    server.receive_data(m1)
    m2 = server.data_to_send()
    assert m2[:HELLO_SIZE] == bytes.fromhex("5032505401") + vec["eph_s"]
    assert len(m2) == 114
    # The server's first record decrypts under key_s2c to its node key.
    s2c = RecordDecoder(new_pull_state(m2[HELLO_SIZE : HELLO_SIZE + HEADER_BYTES], vec["key_s2c"]))
    s2c.receive_data(m2[HELLO_SIZE + HEADER_BYTES :])
    assert _drain(s2c) == [server_node.public_key]
    client.receive_data(m2)
    m3 = client.data_to_send()
    assert len(m3) == 141
    c2s = RecordDecoder(new_pull_state(m3[:HEADER_BYTES], vec["key_c2s"]))
    c2s.receive_data(m3[HEADER_BYTES:])
    assert _drain(c2s) == [client_node.public_key + vec["sig_c"]]
    server.receive_data(m3)
    m4 = server.data_to_send()
    assert len(m4) == 85
    s2c.receive_data(m4)
    assert _drain(s2c) == [vec["sig_s"]]
    client.receive_data(m4)
    assert client.complete and server.complete
