"""The daemon's TOML configuration: parsing, env overrides, validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pmsg.daemon.config import ConfigError, load_config, parse_host_port, render_config

NODE_A = "aa" * 32
NODE_B = "bb" * 32
TOPIC = "cd" * 32


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p2pmsg.toml"
    path.write_text(text, encoding="utf-8")
    return path


FULL = f"""
[node]
key = "node.key"
certificate = "node.cert"
org_id = "{NODE_A}"
name = "ward-a"
data_dir = "data"
pid_file = "/run/p2pmsg.pid"

[tcp]
listen = "127.0.0.1:7420"

[quic]
listen = "[::1]:4433"

[mdns]
enabled = true
interfaces = ["10.1.2.3"]

[policy]
allow_all = false

[log]
level = "debug"
format = "json"

[metrics]
address = "127.0.0.1:9464"

[[peers]]
id = "{NODE_B}"
address = "tcp://192.0.2.11:7420"

[[topics]]
id = "{TOPIC}"
name = "ward-chat"
readers = ["{NODE_B}"]
"""


def test_full_config_is_parsed_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL), env={})
    assert cfg.key == tmp_path.resolve() / "node.key"
    assert cfg.data_dir == tmp_path.resolve() / "data"
    assert cfg.store_path == tmp_path.resolve() / "data" / "store.db"
    assert cfg.pid_file == Path("/run/p2pmsg.pid")
    assert cfg.org_id == bytes.fromhex(NODE_A)
    assert [(x.plugin, x.host, x.port) for x in cfg.listen] == [
        ("tcp", "127.0.0.1", 7420), ("quic", "::1", 4433)]
    assert cfg.peers[0].node_id == bytes.fromhex(NODE_B)
    assert cfg.peers[0].address == "tcp://192.0.2.11:7420"
    assert cfg.mdns_enabled and cfg.mdns_interfaces == ("10.1.2.3",)
    assert cfg.topics[0].readers == (bytes.fromhex(NODE_B),)
    assert cfg.topic_by_name("ward-chat") == bytes.fromhex(TOPIC)
    assert cfg.topic_by_name(TOPIC) == bytes.fromhex(TOPIC)
    assert (cfg.log_level, cfg.log_format) == ("debug", "json")
    assert cfg.metrics_address == ("127.0.0.1", 9464)


def test_environment_overrides_every_kind_of_field(tmp_path: Path) -> None:
    env = {
        "P2PMSG_NODE_DATA_DIR": "/var/lib/p2pmsg",
        "P2PMSG_LOG_LEVEL": "warning",
        "P2PMSG_MDNS_ENABLED": "false",
        "P2PMSG_MDNS_INTERFACES": "10.0.0.1, 10.0.0.2",
        "P2PMSG_TCP_LISTEN": "0.0.0.0:9000",
        "P2PMSG_METRICS_ADDRESS": "",
        "P2PMSG_PEERS": f"{NODE_A}@quic://198.51.100.7:4433",
    }
    cfg = load_config(write(tmp_path, FULL), env=env)
    assert cfg.data_dir == Path("/var/lib/p2pmsg")
    assert cfg.log_level == "warning"
    assert not cfg.mdns_enabled
    assert cfg.mdns_interfaces == ("10.0.0.1", "10.0.0.2")
    assert cfg.listen[0].port == 9000
    assert cfg.metrics_address is None
    assert [(p.node_id, p.address) for p in cfg.peers] == [
        (bytes.fromhex(NODE_A), "quic://198.51.100.7:4433")]


def test_env_can_supply_a_field_missing_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\nkey = "k"\n')
    with pytest.raises(ConfigError, match=r"node\.data_dir: required"):
        load_config(path, env={})
    cfg = load_config(path, env={"P2PMSG_NODE_DATA_DIR": "d"})
    assert cfg.data_dir == tmp_path.resolve() / "d"
    assert cfg.listen == () and cfg.metrics_address is None


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ('[node]\nkey = "k"\ndata_dir = "d"\nbogus = 1\n', {}, r"node\.bogus: unknown field"),
        ('[node]\nkey = 3\ndata_dir = "d"\n', {}, r"node\.key: expected str"),
        ('[node]\nkey = "k"\ndata_dir = "d"\n[tcp]\nlisten = "nope"\n', {},
         r"tcp\.listen: expected host:port"),
        ('[node]\nkey = "k"\ndata_dir = "d"\n[tcp]\nlisten = "h:99999"\n', {},
         r"tcp\.listen: port 99999 out of range"),
        ('[node]\nkey = "k"\ndata_dir = "d"\n[log]\nlevel = "loud"\n', {}, r"log\.level"),
        ('[node]\nkey = "k"\ndata_dir = "d"\n[[peers]]\nid = "zz"\naddress = "tcp://h:1"\n',
         {}, r"peers\[0\]\.id: not hexadecimal"),
        ('[node]\nkey = "k"\ndata_dir = "d"\n[[peers]]\nid = "aa"\naddress = "tcp://h:1"\n',
         {}, r"peers\[0\]\.id: expected 64 hex digits"),
        ('[node]\nkey = "k"\ndata_dir = "d"\n[[peers]]\nid = "' + NODE_A + '"\naddress = "h"\n',
         {}, r"peers\[0\]\.address"),
        ('[node]\nkey = "k"\ndata_dir = "d"\n[[topics]]\nname = "x"\n', {}, r"topics\[0\]"),
        ('[node]\nkey = "k"\ndata_dir = "d"\n[mdns]\ninterfaces = ["not-an-ip"]\n', {},
         r"mdns\.interfaces"),
        ('[node]\nkey = "k"\ndata_dir = "d"\n[wat]\n', {}, r"unknown section \[wat\]"),
        ('[node]\nkey = "k"\ndata_dir = "d"\n[attachments]\ninterval = 0\n', {},
         r"attachments\.interval: between"),
        ('[node]\nkey = "k"\ndata_dir = "d"\n[attachments]\nfetch = "yes"\n', {},
         r"attachments\.fetch: expected bool"),
        ('[node]\nkey = "k"\ndata_dir = "d"\n', {"P2PMSG_MDNS_ENABLED": "maybe"},
         r"P2PMSG_MDNS_ENABLED: expected true/false"),
        ('[node]\nkey = "k"\ndata_dir = "d"\n', {"P2PMSG_PEERS": "no-at-sign"},
         r"P2PMSG_PEERS"),
        ('[node\nkey = "k"\n', {}, r"invalid TOML"),
    ],
)
def test_invalid_configs_name_the_field(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, env=env)
    if not env:
        assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_attachment_fetching_is_on_by_default_and_configurable(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\nkey = "k"\ndata_dir = "d"\n')
    cfg = load_config(path, env={})
    assert cfg.fetch_attachments and cfg.fetch_interval == 5.0
    path.write_text('[node]\nkey = "k"\ndata_dir = "d"\n[attachments]\nfetch = false\n'
                    'interval = 30\n')
    cfg = load_config(path, env={})
    assert not cfg.fetch_attachments and cfg.fetch_interval == 30.0
    assert load_config(path, env={"P2PMSG_ATTACHMENTS_FETCH": "on"}).fetch_attachments


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.toml", env={})


def test_rendered_config_round_trips(tmp_path: Path) -> None:
    text = render_config(key="node.key", certificate="node.cert", org_id=bytes(32),
                         name="n", data_dir="data", tcp_listen="127.0.0.1:0",
                         metrics_address="127.0.0.1:0")
    cfg = load_config(write(tmp_path, text), env={})
    assert cfg.org_id == bytes(32)
    assert cfg.listen[0].plugin == "tcp"
    assert cfg.metrics_address == ("127.0.0.1", 0)
    assert not cfg.mdns_enabled and not cfg.allow_all


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:80", ("127.0.0.1", 80)),
    ("[::1]:0", ("::1", 0)),
    ("localhost:65535", ("localhost", 65535)),
])
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, "x") == expected


@pytest.mark.parametrize("text", ["::1:80", "host", ":80", "[::1]", "h:-1", "h:x"])
def test_parse_host_port_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_host_port(text, "x")


def test_a_configured_but_missing_plugin_is_a_clear_transport_error(tmp_path: Path) -> None:
    import dataclasses

    from p2pmsg.daemon.config import ListenConfig
    from p2pmsg.daemon.run import _transports, build_policy
    from p2pmsg.errors import TransportError
    from p2pmsg.identity import Identity

    cfg = load_config(write(tmp_path, '[node]\nkey = "k"\ndata_dir = "d"\n'), env={})
    cfg = dataclasses.replace(cfg, listen=(ListenConfig("carrier-pigeon", "h", 1),))
    with pytest.raises(TransportError, match=r"'carrier-pigeon' is not installed.*p2pmsg-carrier"):
        _transports(cfg, Identity.generate(), build_policy(cfg))
