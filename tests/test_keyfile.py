"""Key files: 0600, refused when too readable, corruption and passphrases.

Passphrase tests run Argon2id with libsodium's INTERACTIVE limits (~64 MiB, a few
hundred ms each), so only a handful of them exist.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from p2pmsg.errors import KeyFileError
from p2pmsg.identity import Identity
from p2pmsg.keyfile import load_identity, save_identity

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX-only")

SEED = bytes(range(1, 33))


@pytest.fixture
def ident() -> Identity:
    return Identity.from_seed(SEED)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_plain_round_trip_and_mode(tmp_path: Path, ident: Identity) -> None:
    path = tmp_path / "node.key"
    old_umask = os.umask(0)  # even a permissive umask must not loosen the mode
    try:
        save_identity(path, ident)
    finally:
        os.umask(old_umask)
    assert _mode(path) == 0o600
    loaded = load_identity(path)
    assert loaded.public_key == ident.public_key
    assert loaded.seed() == SEED
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_file_does_not_contain_raw_seed_hex(tmp_path: Path, ident: Identity) -> None:
    path = tmp_path / "k"
    save_identity(path, ident)
    text = path.read_text()
    assert text.startswith("p2pmsg-secret-key v1 plain\n")
    assert SEED.hex() not in text


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601])
def test_refuses_readable_by_others(tmp_path: Path, ident: Identity, mode: int) -> None:
    path = tmp_path / "k"
    save_identity(path, ident)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=r"too open.*chmod 600"):
        load_identity(path)


def test_accepts_0400(tmp_path: Path, ident: Identity) -> None:
    path = tmp_path / "k"
    save_identity(path, ident)
    path.chmod(0o400)
    assert load_identity(path).public_key == ident.public_key


def test_refuses_overwrite(tmp_path: Path, ident: Identity) -> None:
    path = tmp_path / "k"
    save_identity(path, ident)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        save_identity(path, Identity.from_seed(bytes(32)))
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_refuses_overwrite_of_any_file(tmp_path: Path, ident: Identity) -> None:
    path = tmp_path / "k"
    path.write_text("something precious")
    with pytest.raises(KeyFileError, match="already exists"):
        save_identity(path, ident)
    assert path.read_text() == "something precious"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no such key file"):
        load_identity(tmp_path / "absent")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


GOOD_LINE = base64.b64encode(bytes(32) + bytes(4)).decode()  # wrong checksum on purpose


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a p2pmsg secret key file"),
        (b"hello\n", "not a p2pmsg secret key file"),
        (b"\xff\xfe\x00garbage", "unreadable"),
        (b"p2pmsg-secret-key v1 plain\n", "not a p2pmsg secret key file"),
        (b"p2pmsg-secret-key v1 plain\n!!!notbase64!!!\n", "bad base64"),
        (b"p2pmsg-secret-key v1 plain\n" + GOOD_LINE.encode() + b"\n", "checksum"),
        (b"p2pmsg-secret-key v1 plain\nAAAA\n", "checksum"),
        (b"p2pmsg-secret-key v1 rot13\nAAAA\n", "unknown key file kind"),
        (b"p2pmsg-secret-key v1 argon2id\nAAAA\n", "too short"),
    ],
)
def test_garbage_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = _write(tmp_path / "k", content)
    passphrase = b"pw" if b"argon2id" in content else None
    with pytest.raises(KeyFileError, match=message):
        load_identity(path, passphrase)


def test_truncated_file(tmp_path: Path, ident: Identity) -> None:
    good = tmp_path / "good"
    save_identity(good, ident)
    data = good.read_bytes()
    for cut in range(len(data) - 1):  # every proper prefix, except "all but the newline"
        path = _write(tmp_path / f"cut{cut}", data[:cut])
        with pytest.raises(KeyFileError):
            load_identity(path)


def test_flipped_base64_character_is_caught(tmp_path: Path, ident: Identity) -> None:
    good = tmp_path / "good"
    save_identity(good, ident)
    header, line = good.read_text().splitlines()
    for i in range(len(line.rstrip("="))):
        replacement = "A" if line[i] != "A" else "B"
        mutated = line[:i] + replacement + line[i + 1 :]
        path = _write(tmp_path / f"m{i}", f"{header}\n{mutated}\n".encode())
        with pytest.raises(KeyFileError):
            load_identity(path)


def test_plain_key_with_passphrase_is_refused(tmp_path: Path, ident: Identity) -> None:
    path = tmp_path / "k"
    save_identity(path, ident)
    with pytest.raises(KeyFileError, match="not passphrase-protected"):
        load_identity(path, b"secret")


def test_passphrase_round_trip_wrong_passphrase_and_missing(
    tmp_path: Path, ident: Identity
) -> None:
    path = tmp_path / "k"
    save_identity(path, ident, passphrase=b"correct horse")
    assert _mode(path) == 0o600
    text = path.read_text()
    assert text.startswith("p2pmsg-secret-key v1 argon2id\n")
    assert SEED.hex() not in text
    assert load_identity(path, b"correct horse").public_key == ident.public_key
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_identity(path, b"battery staple")
    with pytest.raises(KeyFileError, match="passphrase is needed"):
        load_identity(path)


def test_passphrase_file_corruption_is_caught(tmp_path: Path, ident: Identity) -> None:
    path = tmp_path / "k"
    save_identity(path, ident, passphrase=b"pw")
    header, line = path.read_text().splitlines()
    blob = bytearray(base64.b64decode(line))
    blob[-1] ^= 1  # inside the SecretBox MAC/ciphertext
    bad = _write(tmp_path / "bad", f"{header}\n{base64.b64encode(bytes(blob)).decode()}\n".encode())
    with pytest.raises(KeyFileError, match="wrong passphrase or corrupt"):
        load_identity(bad, b"pw")


def test_two_saves_with_same_passphrase_use_fresh_salts(tmp_path: Path, ident: Identity) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    save_identity(a, ident, passphrase=b"pw")
    save_identity(b, ident, passphrase=b"pw")
    assert a.read_text() != b.read_text()
