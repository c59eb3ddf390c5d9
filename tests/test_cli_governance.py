"""The GDPR/federation commands of ``p2pmsg``, run as subprocesses.

Each command: a happy path against a node whose store holds a real room (two
organisations, three devices) and one bad input, which must give the documented
exit code and exactly one line on stderr without a traceback.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from governance_helpers import Clinic
from test_cli import assert_one_line_error, make_node, p2pmsg

from p2pmsg.daemon.config import load_config
from p2pmsg.daemon.state import writer_lock
from p2pmsg.governance import AuditKind, AuditLog, verify_audit_export, verify_tombstone
from p2pmsg.governance.federation import decode_federation_list
from p2pmsg.keyfile import load_identity
from p2pmsg.store.base import PayloadState
from p2pmsg.store.sqlite import SqliteStore


@pytest.fixture(scope="module")
def org_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("org") / "org"
    assert p2pmsg("org", "init", directory).returncode == 0
    return directory


@pytest.fixture(scope="module")
def issuer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("issuer") / "issuer"
    assert p2pmsg("org", "init", directory).returncode == 0
    return directory


def _issuer_hex(issuer_dir: Path) -> str:
    return (issuer_dir / "org.id").read_text().strip()


def _description(path: Path, clinic: Clinic, node_id: bytes, version: int = 1) -> Path:
    path.write_text(f"""\
version = {version}
max_age_hours = 240

[[organisations]]
id = "{clinic.a.id.hex()}"
name = "St. Example Hospital"
kind = "hospital"
nodes = ["{node_id.hex()}"]
addresses = ["tcp://192.0.2.1:7420"]

[[organisations]]
id = "{clinic.b.id.hex()}"
name = "Rehab Clinic B"
kind = "clinic"
""")
    return path


class Setup:
    """A stopped node with a governance section and a room in its store."""

    def __init__(self, org_dir: Path, issuer_dir: Path, tmp: Path, retention: str = "",
                 bob_person: bytes | None = None) -> None:
        self.config = make_node(org_dir, tmp / "node")
        cfg = load_config(self.config, env={})
        self.node = load_identity(cfg.key)
        self.clinic = Clinic(bob_person=bob_person)
        self.messages = [self.clinic.say(self.clinic.alice, "hello-from-alice"),
                         self.clinic.say(self.clinic.bob, "hello-from-bob"),
                         self.clinic.say(self.clinic.bert, "hello-from-bert")]
        with SqliteStore(cfg.store_path) as store:
            self.clinic.load(store)
        desc = _description(tmp / "fed.toml", self.clinic, self.node.public_key)
        self.list_file = tmp / "federation.bin"
        result = p2pmsg("federation", "issue", desc, "--key", issuer_dir / "org.key",
                        "--out", self.list_file)
        assert result.returncode == 0, result.stderr
        with self.config.open("a") as fh:
            fh.write(f"""
[[topics]]
id = "{self.clinic.topic.hex()}"
name = "ward"

[governance]
federation_list = "{self.list_file}"
issuer = "{_issuer_hex(issuer_dir)}"
controller = "St. Example Hospital, Musterstr. 1"
dpo_contact = "dpo@example.org"
{retention}
""")
        self.store_path = cfg.store_path
        self.audit_path = cfg.data_dir / "audit.db"


def test_federation_issue_and_show(org_dir: Path, issuer_dir: Path, tmp_path: Path) -> None:
    s = Setup(org_dir, issuer_dir, tmp_path)
    flist = decode_federation_list(s.list_file.read_bytes())
    assert flist.version == 1 and len(flist.organisations) == 2
    assert flist.issuer.hex() == _issuer_hex(issuer_dir)
    shown = p2pmsg("federation", "show", s.list_file, "--issuer", _issuer_hex(issuer_dir))
    assert shown.returncode == 0, shown.stderr
    assert "St. Example Hospital" in shown.stdout and "Rehab Clinic B" in shown.stdout
    assert s.node.public_key.hex() in shown.stdout
    via_config = p2pmsg("federation", "show", "-c", s.config, s.list_file)
    assert via_config.returncode == 0 and "configured issuer" in via_config.stdout
    # bad input: another issuer -> verification failed (8)
    assert_one_line_error(p2pmsg("federation", "show", s.list_file, "--issuer", "11" * 32),
                          8, "another issuer")


def test_federation_issue_rejects_a_bad_description(issuer_dir: Path, tmp_path: Path) -> None:
    desc = tmp_path / "bad.toml"
    desc.write_text('version = 1\n[[organisations]]\nid = "ab"\nname = "x"\nkind = "spaceship"\n')
    result = p2pmsg("federation", "issue", desc, "--key", issuer_dir / "org.key",
                    "--out", tmp_path / "out.bin")
    assert_one_line_error(result, 3, "kind")
    assert not (tmp_path / "out.bin").exists()


def test_records_from_configuration(org_dir: Path, issuer_dir: Path, tmp_path: Path) -> None:
    s = Setup(org_dir, issuer_dir, tmp_path, retention='retention_days = 30')
    result = p2pmsg("records", "-c", s.config)
    assert result.returncode == 0, result.stderr
    assert "Record of processing activities" in result.stdout
    assert "St. Example Hospital, Musterstr. 1" in result.stdout
    assert "Rehab Clinic B" in result.stdout and "30 days" in result.stdout
    # bad input: a config without [governance]
    plain = make_node(org_dir, tmp_path / "plain")
    assert_one_line_error(p2pmsg("records", "-c", plain), 3, "[governance]")


def test_retention_purge_dry_run_then_for_real(
    org_dir: Path, issuer_dir: Path, tmp_path: Path
) -> None:
    s = Setup(org_dir, issuer_dir, tmp_path, retention="retention_days = 1")
    dry = p2pmsg("retention", "purge", "--dry-run", "-c", s.config)
    assert dry.returncode == 0, dry.stderr
    assert "would erase 3 payloads" in dry.stdout
    with SqliteStore(s.store_path) as store:
        assert all(isinstance(store.get_payload(m.id), bytes) for m in s.messages)
    real = p2pmsg("retention", "purge", "-c", s.config)
    assert real.returncode == 0, real.stderr
    assert "erased 3 payloads" in real.stdout
    assert "attachments: deleted 0 of purged messages, 0 past retention" in real.stdout
    with SqliteStore(s.store_path) as store:
        assert all(store.get_payload(m.id) is PayloadState.ERASED for m in s.messages)
    with AuditLog(s.audit_path, s.node) as audit:
        [purge] = audit.query(kinds=[AuditKind.PURGE])
        assert purge.details == {"topic": s.clinic.topic.hex(), "erased": 3}
    # bad input: the node is running (writer lock held) -> 7, nothing purged
    with writer_lock(s.store_path.parent):
        assert_one_line_error(p2pmsg("retention", "purge", "-c", s.config), 7, "running")


def test_legal_hold_suspends_purge(org_dir: Path, issuer_dir: Path, tmp_path: Path) -> None:
    s = Setup(org_dir, issuer_dir, tmp_path,
              retention='retention_days = 1\nlegal_holds = ["ward"]')
    dry = p2pmsg("retention", "purge", "--dry-run", "-c", s.config)
    assert dry.returncode == 0, dry.stderr
    assert "would erase 0 payloads; 3 held" in dry.stdout


def test_erase_prints_a_verifiable_tombstone(
    org_dir: Path, issuer_dir: Path, tmp_path: Path
) -> None:
    s = Setup(org_dir, issuer_dir, tmp_path)
    bob = s.clinic.bob.public_key.hex()
    result = p2pmsg("erase", "-c", s.config, "--device", bob, "--request", "ticket-17",
                    "--out", tmp_path / "stone.bin")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["erased"] == 1 and out["devices"] == [bob] and out["request"] == "ticket-17"
    stone = verify_tombstone(bytes.fromhex(out["tombstone"]), s.node.public_key)
    assert stone.erased == (s.messages[1].id,)
    assert (tmp_path / "stone.bin").read_bytes().hex() == out["tombstone"]
    with SqliteStore(s.store_path) as store:
        assert store.get_payload(s.messages[1].id) is PayloadState.ERASED
        assert isinstance(store.get_payload(s.messages[0].id), bytes)
    # bad input: not a device key
    assert_one_line_error(p2pmsg("erase", "-c", s.config, "--device", "xyz"), 3, "--device")


def test_erase_by_person_covers_every_device_of_the_person(
    org_dir: Path, issuer_dir: Path, tmp_path: Path
) -> None:
    person = bytes(range(16))
    s = Setup(org_dir, issuer_dir, tmp_path, bob_person=person)
    bundle = tmp_path / "person.json"
    exported = p2pmsg("export", "person", "-c", s.config, "--person", person.hex(),
                      "--out", bundle)
    assert exported.returncode == 0, exported.stderr
    assert [e["id"] for e in json.loads(bundle.read_text())["entries"]] == [
        s.messages[1].id.hex()]
    result = p2pmsg("erase", "-c", s.config, "--person", person.hex(), "--request", "t-18")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["devices"] == [s.clinic.bob.public_key.hex()] and out["erased"] == 1
    with SqliteStore(s.store_path) as store:
        assert store.get_payload(s.messages[1].id) is PayloadState.ERASED
    # bad input: not a person id; an unknown person; nothing to erase
    assert_one_line_error(p2pmsg("erase", "-c", s.config, "--person", "ab"), 3, "--person")
    assert_one_line_error(p2pmsg("erase", "-c", s.config, "--person", "ff" * 16), 3,
                          "no device of this person")
    assert_one_line_error(p2pmsg("erase", "-c", s.config), 3, "--device or --person")


def test_export_room_and_person_then_verify_bundle(
    org_dir: Path, issuer_dir: Path, tmp_path: Path
) -> None:
    s = Setup(org_dir, issuer_dir, tmp_path)
    room = tmp_path / "room.json"
    result = p2pmsg("export", "room", "ward", "-c", s.config, "--out", room)
    assert result.returncode == 0, result.stderr
    assert (room.stat().st_mode & 0o777) == 0o600
    ok = p2pmsg("verify-bundle", room)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 problems" in ok.stdout
    person = tmp_path / "person.json"
    result = p2pmsg("export", "person", "-c", s.config, "--device",
                    s.clinic.alice.public_key.hex(), "--out", person)
    assert result.returncode == 0, result.stderr
    bundle = json.loads(person.read_text())
    assert bundle["scope"] == "person" and bundle["entries"]
    assert p2pmsg("verify-bundle", person).returncode == 0
    # bad input: a tampered bundle fails verification (8)
    data = json.loads(room.read_text())
    record = next(r for r in data["entries"] if r["payload"])
    record["payload"] = ("00" if record["payload"][:2] != "00" else "11") + record["payload"][2:]
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(data))
    bad = p2pmsg("verify-bundle", tampered)
    assert bad.returncode == 8 and "FAIL" in bad.stdout
    # bad input: a room this node does not hold (5)
    assert_one_line_error(p2pmsg("export", "room", "ee" * 32, "-c", s.config,
                                 "--out", tmp_path / "x.json"), 5, "no room")


def test_audit_list_verify_export(org_dir: Path, issuer_dir: Path, tmp_path: Path) -> None:
    s = Setup(org_dir, issuer_dir, tmp_path)
    assert p2pmsg("export", "room", "ward", "-c", s.config,
                  "--out", tmp_path / "r.json").returncode == 0
    assert p2pmsg("erase", "-c", s.config, "--device",
                  s.clinic.bert.public_key.hex()).returncode == 0
    listed = p2pmsg("audit", "list", "-c", s.config)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[2] for line in listed.stdout.splitlines()] == ["export", "erasure"]
    only = p2pmsg("audit", "list", "-c", s.config, "--kind", "erasure", "--since", "2000-01-01")
    assert [line.split()[2] for line in only.stdout.splitlines()] == ["erasure"]
    none = p2pmsg("audit", "list", "-c", s.config, "--since", "99999999999999")
    assert none.returncode == 0 and none.stdout == ""
    verified = p2pmsg("audit", "verify", "-c", s.config)
    assert verified.returncode == 0 and "2 records" in verified.stdout
    head = verified.stdout.split("head ")[1].split()[:2]
    anchored = p2pmsg("audit", "verify", "-c", s.config, "--anchor", ":".join(head))
    assert anchored.returncode == 0 and "anchor 2 matches" in anchored.stdout
    assert_one_line_error(p2pmsg("audit", "verify", "-c", s.config, "--anchor", "2:zz"),
                          3, "--anchor")
    assert_one_line_error(p2pmsg("audit", "verify", "-c", s.config, "--anchor",
                                 f"3:{head[1]}"), 8, "truncated")
    out = tmp_path / "audit.jsonl"
    assert p2pmsg("audit", "export", "-c", s.config, "--out", out).returncode == 0
    with out.open() as fh:
        assert verify_audit_export(fh, s.node.public_key) == 2
    # bad input: unknown kind (3); a tampered record fails verification (8)
    assert_one_line_error(p2pmsg("audit", "list", "-c", s.config, "--kind", "nope"), 3, "--kind")
    with sqlite3.connect(s.audit_path) as db:
        db.execute("UPDATE audit SET details = '{\"erased\":0}' WHERE seq = 2")
    assert_one_line_error(p2pmsg("audit", "verify", "-c", s.config), 8, "altered")


def test_exposure_of_a_device(org_dir: Path, issuer_dir: Path, tmp_path: Path) -> None:
    s = Setup(org_dir, issuer_dir, tmp_path)
    result = p2pmsg("exposure", "-c", s.config, "--device", s.clinic.bert.public_key.hex())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("1 rooms")
    assert lines[1].startswith(s.clinic.topic.hex()) and "member_now=True" in lines[1]
    assert "messages=3" in lines[1]
    stranger = p2pmsg("exposure", "-c", s.config, "--device", "22" * 32)
    assert stranger.returncode == 0 and stranger.stdout.splitlines()[0].endswith("0 rooms")
    assert_one_line_error(p2pmsg("exposure", "-c", s.config, "--device", "22"), 3, "--device")
