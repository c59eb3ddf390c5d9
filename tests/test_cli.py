"""The ``p2pmsg`` command, run as a subprocess: set-up, append/log/verify, errors.

Every error case checks the contract of the CLI: a non-zero exit code from
docs/operations.md, exactly one line on stderr, and no traceback.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2pmsg.certs import decode_certificate, verify_certificate
from p2pmsg.cli import main as cli_main
from p2pmsg.daemon.config import load_config
from p2pmsg.entry import create_entry, decode_entry
from p2pmsg.forks import ForkProof
from p2pmsg.identity import Identity, short_id
from p2pmsg.keyfile import load_identity
from p2pmsg.messaging import OrgState, control_topic
from p2pmsg.store.sqlite import SqliteStore

TOPIC = "ab" * 32


def p2pmsg(*args: str | Path, cwd: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("P2PMSG_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "p2pmsg", *map(str, args)],
        capture_output=True, text=True, timeout=60, cwd=cwd, env=full_env, check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int,
                          *fragments: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("p2pmsg: error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def org_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("org") / "org"
    result = p2pmsg("org", "init", directory)
    assert result.returncode == 0, result.stderr
    return directory


def make_node(org_dir: Path, directory: Path, name: str = "ward-a") -> Path:
    """Set-up in-process (the subprocess path of ``node init`` has its own test)."""
    code = cli_main(["node", "init", str(directory), "--org", str(org_dir), "--name", name,
                     "--no-metrics"])
    assert code == 0
    return directory / "p2pmsg.toml"


def control_entries(config: Path) -> int:
    """Entries of the org's control log that ``node init`` put into the node's store."""
    cfg = load_config(config, env={})
    assert cfg.org_id is not None
    with SqliteStore(cfg.store_path) as store:
        return sum(h.seq for h in store.heads(control_topic(cfg.org_id)))


def test_org_init_writes_a_private_key_and_a_public_id(org_dir: Path) -> None:
    key = org_dir / "org.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    org = load_identity(key)
    assert (org_dir / "org.id").read_text().strip() == org.public_key.hex()
    again = p2pmsg("org", "init", org_dir)
    assert_one_line_error(again, 4, "already exists")
    assert load_identity(key).public_key == org.public_key


def test_node_init_creates_key_certificate_config_and_store(
    org_dir: Path, tmp_path: Path
) -> None:
    result = p2pmsg("node", "init", tmp_path / "n", "--org", org_dir, "--name", "ward-a")
    assert result.returncode == 0, result.stderr
    config_path = tmp_path / "n" / "p2pmsg.toml"
    assert str(config_path) in result.stdout
    cfg = load_config(config_path, env={})
    node = load_identity(cfg.key)
    assert stat.S_IMODE(cfg.key.stat().st_mode) == 0o600
    org_id = bytes.fromhex((org_dir / "org.id").read_text().strip())
    assert cfg.org_id == org_id and cfg.name == "ward-a"
    assert cfg.certificate is not None
    cert = decode_certificate(cfg.certificate.read_bytes())
    assert cert.device == node.public_key
    verify_certificate(cert, org_id, cert.valid_from + 1)
    with SqliteStore(cfg.store_path) as store:
        # the org's control log, root-signed, publishing this node's certificate
        assert store.topics() == [control_topic(org_id)]
        head = store.head(org_id, control_topic(org_id))
        assert head is not None and head.header.seq >= 1
    assert_one_line_error(p2pmsg("node", "init", tmp_path / "n", "--org", org_dir),
                          4, "already exists")


def test_node_init_person_derives_a_pseudonymous_person_id(
    org_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from p2pmsg.certs import person_id
    ids = []
    for n in ("laptop", "phone"):
        code = cli_main(["node", "init", str(tmp_path / n), "--org", str(org_dir), "--name", n,
                         "--no-metrics", "--person", "staff-4711"])
        assert code == 0
        cfg = load_config(tmp_path / n / "p2pmsg.toml", env={})
        assert cfg.certificate is not None
        ids.append(decode_certificate(cfg.certificate.read_bytes()).person)
    expected = person_id(load_identity(org_dir / "org.key"), "staff-4711")
    assert ids == [expected, expected]
    out = capsys.readouterr().out
    assert f"person id: {expected.hex()}" in out and "staff-4711" not in out
    for n in ("laptop", "phone"):  # the handle is written nowhere
        for path in (tmp_path / n).rglob("*"):
            if path.is_file():
                assert b"staff-4711" not in path.read_bytes(), path
    cfg = load_config(tmp_path / "phone" / "p2pmsg.toml", env={})
    with SqliteStore(cfg.store_path) as store:
        topic = control_topic(cfg.org_id)
        head = store.head(cfg.org_id, topic)
        assert head is not None
        entries = store.get_range(cfg.org_id, topic, 1, head.header.seq)
        items = [(e, store.get_payload(e.id)) for e in entries]
    state = OrgState.from_entries(cfg.org_id, items)  # type: ignore[arg-type]
    assert len(state.person_devices(expected)) == 2
    assert cli_main(["node", "init", str(tmp_path / "x"), "--org", str(org_dir),
                     "--no-metrics", "--person", ""]) != 0


def test_append_log_topics_verify(org_dir: Path, tmp_path: Path) -> None:
    config = make_node(org_dir, tmp_path / "n")
    node = load_identity(load_config(config, env={}).key)
    secret = "patient-identifier-4711"
    assert p2pmsg("append", "-c", config, TOPIC, "--text", secret).returncode == 0
    payload_file = tmp_path / "doc.bin"
    payload_file.write_bytes(os.urandom(3000))
    result = p2pmsg("append", "-c", config, TOPIC, "--file", payload_file)
    assert result.returncode == 0, result.stderr
    assert "seq 2" in result.stdout

    log = p2pmsg("log", "-c", config, TOPIC)
    assert log.returncode == 0, log.stderr
    rows = [line.split() for line in log.stdout.splitlines()]
    assert [r[0] for r in rows] == ["1", "2"]
    assert {r[1] for r in rows} == {short_id(node.public_key)}
    assert [r[3] for r in rows] == [f"{len(secret)}B", "3000B"]
    assert secret not in log.stdout + log.stderr
    assert node.public_key.hex() not in log.stdout  # short ids only

    tail = p2pmsg("log", "-c", config, TOPIC, "-n", "1")
    assert [line.split()[0] for line in tail.stdout.splitlines()] == ["2"]

    topics = p2pmsg("topics", "-c", config)
    assert TOPIC in topics.stdout and topics.stdout.split(TOPIC)[1].split()[1:3] == ["1", "2"]

    verify = p2pmsg("verify", "-c", config)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    expected = 2 + control_entries(config)
    assert f"{expected} entries verified" in verify.stdout and "0 failed logs" in verify.stdout

    # The config is also found through $P2PMSG_CONFIG and env overrides apply.
    env_log = p2pmsg("log", TOPIC, env={"P2PMSG_CONFIG": str(config)})
    assert env_log.stdout == log.stdout
    moved = p2pmsg("log", "-c", config, TOPIC,
                   env={"P2PMSG_NODE_DATA_DIR": str(tmp_path / "elsewhere")})
    assert_one_line_error(moved, 5, "no store file")


def test_verify_reports_a_bad_signature_and_forks(tmp_path: Path) -> None:
    author, topic = Identity.generate(), bytes(32)
    good = create_entry(author, topic, 1, None, 1, b"a")
    raw = bytearray(good.to_bytes())
    raw[-1] ^= 1  # last byte of the signature
    bad = decode_entry(bytes(raw))
    forged_next = create_entry(author, topic, 2, bad.id, 2, b"b")
    path = tmp_path / "store.db"
    with SqliteStore(path) as store:
        store.append([bad, forged_next])  # the store checks links, not signatures
    result = p2pmsg("verify", path)
    assert result.returncode == 8, result.stdout + result.stderr
    assert "FAIL" in result.stdout and "bad_signature" in result.stdout

    other = Identity.generate()
    first = create_entry(other, topic, 1, None, 1, b"x")
    second = create_entry(other, topic, 1, None, 1, b"y")
    fork_path = tmp_path / "forks.db"
    with SqliteStore(fork_path) as store:
        store.append([first])
        assert store.record_fork(ForkProof.of(first, second))
    reported = p2pmsg("verify", fork_path)
    assert reported.returncode == 0, reported.stdout
    assert "FORK" in reported.stdout and short_id(other.public_key) in reported.stdout
    assert p2pmsg("verify", "--fail-on-fork", fork_path).returncode == 8


def test_backup_copies_a_verifiable_store(org_dir: Path, tmp_path: Path) -> None:
    config = make_node(org_dir, tmp_path / "n")
    assert p2pmsg("append", "-c", config, TOPIC, "--text", "x").returncode == 0
    target = tmp_path / "backup.db"
    result = p2pmsg("backup", "-c", config, target)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    expected = 1 + control_entries(config)
    assert f"{expected} entries verified" in p2pmsg("verify", target).stdout
    assert_one_line_error(p2pmsg("backup", "-c", config, target), 5, "already exists")


# -- errors: one line, documented exit code, no traceback -------------------------------


def test_missing_config(tmp_path: Path) -> None:
    assert_one_line_error(p2pmsg("status", "-c", tmp_path / "absent.toml"), 3,
                          "no such configuration file")
    assert_one_line_error(p2pmsg("run", cwd=tmp_path), 3, "p2pmsg.toml")


def test_bad_toml_and_bad_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\nkey=", encoding="utf-8")
    assert_one_line_error(p2pmsg("status", "-c", bad), 3, "invalid TOML")
    bad.write_text('[node]\nkey = "k"\ndata_dir = "d"\n[tcp]\nlisten = "x"\n', encoding="utf-8")
    assert_one_line_error(p2pmsg("run", "-c", bad), 3, "tcp.listen")


def test_key_with_open_permissions_is_refused(org_dir: Path, tmp_path: Path) -> None:
    config = make_node(org_dir, tmp_path / "n")
    key = tmp_path / "n" / "node.key"
    key.chmod(0o644)
    assert_one_line_error(p2pmsg("append", "-c", config, TOPIC, "--text", "x"), 4,
                          "too open", "chmod 600")
    assert_one_line_error(p2pmsg("run", "-c", config), 4, "too open")
    assert_one_line_error(p2pmsg("node", "init", tmp_path / "m", "--org", key), 4, "too open")


def test_corrupt_store(org_dir: Path, tmp_path: Path) -> None:
    config = make_node(org_dir, tmp_path / "n")
    store = tmp_path / "n" / "data" / "store.db"
    store.write_bytes(b"this is not a database" * 100)
    assert_one_line_error(p2pmsg("log", "-c", config, TOPIC), 5)
    assert_one_line_error(p2pmsg("verify", store), 5)
    assert_one_line_error(p2pmsg("run", "-c", config), 5)
    assert store.read_bytes() == b"this is not a database" * 100


def test_missing_paths_and_bad_arguments(org_dir: Path, tmp_path: Path) -> None:
    assert_one_line_error(p2pmsg("verify", tmp_path / "nope.db"), 5, "no store file")
    assert_one_line_error(p2pmsg("node", "init", tmp_path / "x", "--org", tmp_path / "none"),
                          4, "no such key file")
    config = make_node(org_dir, tmp_path / "n")
    assert_one_line_error(p2pmsg("append", "-c", config, TOPIC, "--file", tmp_path / "no"),
                          11, "No such file")
    assert_one_line_error(p2pmsg("log", "-c", config, "not-a-topic"), 3, "not-a-topic")
    usage = p2pmsg("append", "-c", config, TOPIC)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_node_init_extends_the_org_control_log(org_dir: Path, tmp_path: Path) -> None:
    org_id = bytes.fromhex((org_dir / "org.id").read_text().strip())
    topic = control_topic(org_id)
    with SqliteStore(org_dir / "control.db") as log:
        before = log.head(org_id, topic)
    make_node(org_dir, tmp_path / "x", "ward-x")
    cfg = load_config(tmp_path / "x" / "p2pmsg.toml", env={})
    node = load_identity(cfg.key).public_key
    with SqliteStore(cfg.store_path) as store:
        head = store.head(org_id, topic)
        assert head is not None
        assert head.header.seq == (0 if before is None else before.header.seq) + 1
        entries = store.get_range(org_id, topic, 1, head.header.seq)
        state = OrgState.from_entries(
            org_id, [(e, store.get_payload(e.id)) for e in entries])  # type: ignore[misc]
    assert node in state.active_devices(time.time_ns() // 1_000_000)


def test_help_lists_every_command() -> None:
    result = p2pmsg("--help")
    assert result.returncode == 0
    for name in ("org", "node", "run", "status", "peers", "topics", "log", "append",
                 "verify", "backup", "send", "rooms", "read"):
        assert name in result.stdout
    assert "Exit codes" in result.stdout
