"""``[governance]``: parsing (in-process) and ``p2pmsg run`` with it (real process):
federation list loaded and audited, SIGHUP reload, refused list, purge timer, and
fail-closed start with a stale list."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
from governance_helpers import Clinic
from test_cli_governance import _description, _issuer_hex
from test_daemon_lifecycle import Daemon, daemons, make_node, wait_until

from p2pmsg.cli import main as cli_main
from p2pmsg.daemon.config import ConfigError, load_config
from p2pmsg.governance import AuditKind, AuditLog, LocalDefault
from p2pmsg.governance.retention import DAY_MS
from p2pmsg.keyfile import load_identity
from p2pmsg.store.base import PayloadState
from p2pmsg.store.sqlite import SqliteStore

ISSUER = "aa" * 32
TOPIC = "5e" * 32


def _config(tmp_path: Path, governance: str) -> Path:
    path = tmp_path / "p2pmsg.toml"
    path.write_text(f"""
[node]
key = "node.key"
data_dir = "data"

[[topics]]
id = "{TOPIC}"
name = "ward"

[governance]
{governance}
""")
    return path


def test_governance_section_is_parsed(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, f"""
federation_list = "fed.bin"
issuer = "{ISSUER}"
mode = "deny-all"
allow_orgs = ["{'01' * 32}"]
deny_keys = ["{'02' * 32}"]
allow_persons = ["{'03' * 16}"]
deny_persons = ["{'04' * 16}"]
retention_days = 30
audit_retention_days = 400
legal_holds = ["ward"]
max_age_hours = 24
purge_interval = 60
[governance.room_retention_days]
ward = 7
"""), env={})
    gov = cfg.governance
    assert gov is not None
    assert gov.federation_list == tmp_path / "fed.bin"
    assert gov.audit_log == tmp_path / "data" / "audit.db"
    assert gov.issuer == bytes.fromhex(ISSUER)
    assert gov.local.default is LocalDefault.DENY_ALL
    assert gov.local.allow_orgs == {bytes.fromhex("01" * 32)}
    assert gov.local.deny_keys == {bytes.fromhex("02" * 32)}
    assert gov.local.allow_persons == {bytes.fromhex("03" * 16)}
    assert gov.local.deny_persons == {bytes.fromhex("04" * 16)}
    assert gov.audit_retention_ms == 400 * DAY_MS
    assert gov.retention.default_ms == 30 * DAY_MS
    assert gov.retention.per_room == {bytes.fromhex(TOPIC): 7 * DAY_MS}
    assert gov.retention.legal_holds == {bytes.fromhex(TOPIC)}
    assert gov.max_age_ms == 24 * 3_600_000 and gov.purge_interval == 60
    env = load_config(tmp_path / "p2pmsg.toml",
                      env={"P2PMSG_GOVERNANCE_RETENTION_DAYS": "2",
                           "P2PMSG_GOVERNANCE_AUDIT_LOG": "/var/audit.db"})
    assert env.governance is not None
    assert env.governance.retention.default_ms == 2 * DAY_MS
    assert env.governance.audit_log == Path("/var/audit.db")
    plain = tmp_path / "plain.toml"
    plain.write_text('[node]\nkey = "k"\ndata_dir = "d"\n')
    assert load_config(plain, env={}).governance is None


@pytest.mark.parametrize(("body", "fragment"), [
    ('federation_list = "f"', "required"),
    (f'federation_list = "f"\nissuer = "{ISSUER}"\nmode = "open"', "governance.mode"),
    (f'federation_list = "f"\nissuer = "{ISSUER}"\ncolour = 1', "governance.colour"),
    (f'federation_list = "f"\nissuer = "{ISSUER}"\nretention_days = -1', "retention_days"),
    (f'federation_list = "f"\nissuer = "{ISSUER}"\nlegal_holds = ["nope"]', "legal_holds"),
    (f'federation_list = "f"\nissuer = "{ISSUER}"\nallow_orgs = ["{"01" * 32}"]\n'
     f'deny_orgs = ["{"01" * 32}"]', "both allowed and denied"),
    (f'federation_list = "f"\nissuer = "{ISSUER}"\ndeny_persons = ["{"01" * 32}"]',
     "governance.deny_persons: expected 32 hex digits (16 bytes)"),
    (f'federation_list = "f"\nissuer = "{ISSUER}"\naudit_retention_days = "x"',
     "governance.audit_retention_days"),
])
def test_bad_governance_section_names_the_field(tmp_path: Path, body: str,
                                                fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(_config(tmp_path, body), env={})


def _issue(issuer_dir: Path, desc: Path, out: Path) -> None:
    assert cli_main(["federation", "issue", str(desc), "--key", str(issuer_dir / "org.key"),
                     "--out", str(out)]) == 0


def test_daemon_with_governance(tmp_path: Path) -> None:
    config = make_node(tmp_path, "gov", tcp_port=None)
    issuer_dir = tmp_path / "issuer"
    assert cli_main(["org", "init", str(issuer_dir)]) == 0
    cfg = load_config(config, env={})
    node = load_identity(cfg.key)
    clinic = Clinic()
    said = clinic.say(clinic.alice, "old message")
    with SqliteStore(cfg.store_path) as store:
        clinic.load(store)
    list_file = tmp_path / "federation.bin"
    _issue(issuer_dir, _description(tmp_path / "v1.toml", clinic, node.public_key), list_file)
    with config.open("a") as fh:
        fh.write(f"""
[governance]
federation_list = "{list_file}"
issuer = "{_issuer_hex(issuer_dir)}"
retention_days = 1
purge_interval = 1
reload_interval = 0.1
""")
    daemon = Daemon(config)
    audit_path = cfg.data_dir / "audit.db"

    def kinds() -> list[AuditKind]:
        with AuditLog(audit_path, node) as log:
            return [r.kind for r in log.query()]

    with daemons(daemon):
        daemon.start()
        assert "governance=True" in daemon.log.read_text()
        wait_until(lambda: AuditKind.PURGE in kinds(), "the purge timer")
        assert kinds()[0] is AuditKind.FEDERATION_LIST_CHANGED
        # A new list (version 2) + SIGHUP: loaded and audited.
        _issue(issuer_dir, _description(tmp_path / "v2.toml", clinic, node.public_key, 2),
               tmp_path / "v2.bin")
        (tmp_path / "v2.bin").replace(list_file)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: kinds().count(AuditKind.FEDERATION_LIST_CHANGED) == 2, "reload")
        assert "event=federation_list_loaded" in daemon.log.read_text()
        # A corrupt list is refused (and audited); the trusted one stays.
        list_file.write_bytes(b"garbage")
        wait_until(lambda: AuditKind.FEDERATION_LIST_REFUSED in kinds(), "refusal")
        assert daemon.proc.poll() is None
        assert daemon.signal(signal.SIGTERM) == 0
    with SqliteStore(cfg.store_path) as store:
        assert store.get_payload(said.id) is PayloadState.ERASED
    with AuditLog(audit_path, node) as log:
        assert log.verify() == len(log.query())


def test_daemon_fails_closed_with_a_stale_list(tmp_path: Path) -> None:
    config = make_node(tmp_path, "stale", tcp_port=None)
    issuer_dir = tmp_path / "issuer"
    assert cli_main(["org", "init", str(issuer_dir)]) == 0
    node = load_identity(load_config(config, env={}).key)
    desc = _description(tmp_path / "old.toml", Clinic(), node.public_key)
    two_hours_ago = time.time_ns() // 1_000_000 - 2 * 3_600_000
    desc.write_text(desc.read_text().replace("version = 1",
                                             f"version = 1\nissued_ms = {two_hours_ago}"))
    list_file = tmp_path / "federation.bin"
    _issue(issuer_dir, desc, list_file)
    with config.open("a") as fh:
        fh.write(f"""
[governance]
federation_list = "{list_file}"
issuer = "{_issuer_hex(issuer_dir)}"
max_age_hours = 1
""")
    daemon = Daemon(config)
    with daemons(daemon):
        daemon.start()
        wait_until(lambda: "event=federation_stale" in daemon.log.read_text(), "stale line")
        line = next(ln for ln in daemon.log.read_text().splitlines()
                    if "event=federation_stale" in ln)
        assert "refusing all peers" in line and "status=stale" in line
        assert daemon.signal(signal.SIGTERM) == 0
