"""Configuration loading: messages point at file:line:column and key path; values are typed."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bridged.config import (
    BackoffBounds,
    Config,
    ConfigError,
    ControlConfig,
    DataFormat,
    DataFormatSetting,
    Endpoint,
    LogConfig,
    MetricsConfig,
    ModemConfig,
    QueueLimits,
    ReconnectPolicy,
    SerialConfig,
    SocketConfig,
    SslSettings,
    Timeouts,
    check_config_main,
    load_config,
    load_schema,
    module_profile,
    parse_config,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "bridged.yaml"

# Written into every test key: it must never show up in a message.
KEY_SENTINEL = "SENTINEL-7f3a-KEY-MATERIAL"
CERT_PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
KEY_PEM = f"-----BEGIN PRIVATE KEY-----\n{KEY_SENTINEL}\n-----END PRIVATE KEY-----\n"

# Seven lines, so `sockets:` is on line 8 in the cases below.
HEAD = """\
serial:
  device: /dev/ttyUSB0
ssl:
  seclevel: 2
  cacert: ca.pem
  clientcert: client.pem
  clientkey: client.key
"""

ONE_SOCKET = """\
sockets:
  - connect_id: 5
    listen: 127.0.0.1:7005
    remote: hf.quectel.com:8164
"""


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    """A directory with a valid CA, client certificate and 0600 client key."""
    (tmp_path / "ca.pem").write_text(CERT_PEM)
    (tmp_path / "client.pem").write_text(CERT_PEM)
    key = tmp_path / "client.key"
    key.write_text(KEY_PEM)
    key.chmod(0o600)
    return tmp_path


def write_config(directory: Path, text: str) -> Path:
    path = directory / "bridged.yaml"
    path.write_text(text)
    return path


def config_errors(directory: Path, text: str, *, check_files: bool = True) -> str:
    path = write_config(directory, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, check_files=check_files)
    return str(caught.value)


# --------------------------------------------------------------------------- bad configs

# (id, YAML, substrings expected in the message; "{file}" stands for the config path)
BAD_CONFIGS: list[tuple[str, str, list[str]]] = [
    (
        "connect_id 6",
        HEAD + ONE_SOCKET.replace("connect_id: 5", "connect_id: 6"),
        ["{file}:9:17: sockets[0].connect_id: 6 is out of range 0..5"],
    ),
    (
        "connect_id -1",
        HEAD + ONE_SOCKET.replace("connect_id: 5", "connect_id: -1"),
        ["{file}:9:17: sockets[0].connect_id: -1 is out of range 0..5"],
    ),
    (
        "connect_id not a number",
        HEAD + ONE_SOCKET.replace("connect_id: 5", "connect_id: '5'"),
        ["{file}:9:17: sockets[0].connect_id: expected an integer, got the string '5'"],
    ),
    (
        "duplicate connect_id",
        HEAD
        + ONE_SOCKET
        + """\
  - connect_id: 5
    listen: 127.0.0.1:7006
    remote: hf.quectel.com:8164
""",
        ["{file}:12:17: sockets[1].connect_id: 5 is already used by sockets[0] (line 9)"],
    ),
    (
        "duplicate listen",
        HEAD
        + ONE_SOCKET
        + """\
  - connect_id: 4
    listen: 127.0.0.1:7005
    remote: hf.quectel.com:8164
""",
        ["{file}:13:13: sockets[1].listen: 127.0.0.1:7005 collides with sockets[0].listen"],
    ),
    (
        "localhost collides with 127.0.0.1",
        HEAD
        + ONE_SOCKET
        + """\
  - connect_id: 4
    listen: localhost:7005
    remote: hf.quectel.com:8164
""",
        ["{file}:13:13: sockets[1].listen: localhost:7005 collides with sockets[0].listen"],
    ),
    (
        "metrics collides with a socket",
        HEAD + ONE_SOCKET + "metrics:\n  listen: 127.0.0.1:7005\n",
        ["{file}:13:11: metrics.listen: 127.0.0.1:7005 collides with sockets[0].listen"],
    ),
    (
        "seclevel 3 in a per-socket override",
        HEAD + ONE_SOCKET + "    ssl: {seclevel: 3}\n",
        [
            "{file}:12:21: sockets[0].ssl.seclevel: 3 is not one of 0, 1, 2 "
            "(0 none, 1 server auth, 2 mutual)"
        ],
    ),
    (
        "sslversion 5",
        HEAD.replace("seclevel: 2", "sslversion: 5") + ONE_SOCKET,
        ["{file}:4:15: ssl.sslversion: 5 is not one of 0, 1, 2, 3, 4 (0 SSL3.0,"],
    ),
    (
        "timeout 9",
        HEAD + ONE_SOCKET + "    ssl: {timeout: 9}\n",
        ["{file}:12:20: sockets[0].ssl.timeout: 9 is out of range 10..300 (seconds)"],
    ),
    (
        "timeout 301",
        HEAD.replace("seclevel: 2", "timeout: 301") + ONE_SOCKET,
        ["{file}:4:12: ssl.timeout: 301 is out of range 10..300 (seconds)"],
    ),
    (
        "debug 5",
        HEAD.replace("seclevel: 2", "debug: 5") + ONE_SOCKET,
        ["{file}:4:10: ssl.debug: 5 is out of range 0..4"],
    ),
    (
        "baudrate not a module rate",
        HEAD.replace("ttyUSB0", "ttyUSB0\n  baudrate: 100000") + ONE_SOCKET,
        ["{file}:3:13: serial.baudrate: 100000 is not one of 4800, 9600,", "921600"],
    ),
    (
        "dataformat bin",
        HEAD + ONE_SOCKET + "    ssl: {dataformat: bin}\n",
        [
            "{file}:12:23: sockets[0].ssl.dataformat: 'bin' is not allowed; expected hex, "
            "text, or {{send: hex|text, recv: hex|text}}"
        ],
    ),
    (
        "mode typo",
        HEAD + ONE_SOCKET + "    mode: ondemand\n",
        ["{file}:12:11: sockets[0].mode: 'ondemand' is not one of", "did you mean 'on-demand'?"],
    ),
    (
        "unknown top-level key",
        HEAD + ONE_SOCKET.replace("sockets:", "sokets:"),
        [
            "{file}:8:1: sokets: unknown key 'sokets'; did you mean 'sockets'?",
            "{file}:1:1: sockets: required key is missing",
        ],
    ),
    (
        "unknown nested key",
        HEAD + ONE_SOCKET + "    reconect: {max: 5}\n",
        ["{file}:12:5: sockets[0].reconect: unknown key 'reconect'; did you mean 'reconnect'?"],
    ),
    (
        "unknown key without a close match",
        HEAD + ONE_SOCKET + "    colour: blue\n",
        ["{file}:12:5: sockets[0].colour: unknown key 'colour' (allowed here: connect_id,"],
    ),
    (
        "missing remote",
        HEAD + ONE_SOCKET.replace("    remote: hf.quectel.com:8164\n", ""),
        ["{file}:9:5: sockets[0].remote: required key is missing"],
    ),
    (
        "YAML syntax error",
        HEAD + ONE_SOCKET + "    ssl: {seclevel: 1\n",
        ["{file}:13:1: YAML syntax: expected ',' or '}}'"],
    ),
    (
        "YAML duplicate key",
        HEAD + ONE_SOCKET + "    remote: example.com:443\n",
        ["{file}:12:5: sockets[0].remote: duplicate key (first given on line 11)"],
    ),
    ("empty file", "", ["{file}: the file is empty"]),
    ("only comments", "# nothing here\n", ["{file}: the file is empty"]),
    ("top level is a list", "- 1\n", ["{file}:1:1: expected a mapping, got a list"]),
    (
        "listen on all interfaces without allow_remote",
        HEAD + ONE_SOCKET.replace("127.0.0.1:7005", "0.0.0.0:7000"),
        [
            "{file}:10:13: sockets[0].listen: 0.0.0.0:7000 is not a loopback address",
            "allow_remote: true",
        ],
    ),
    (
        "listen on a host name without allow_remote",
        HEAD + ONE_SOCKET.replace("127.0.0.1:7005", "gateway.lan:7000"),
        ["{file}:10:13: sockets[0].listen: gateway.lan:7000: only IP addresses and 'localhost'"],
    ),
    (
        "IPv6 without brackets",
        HEAD + ONE_SOCKET.replace("127.0.0.1:7005", "'::1:7005'"),
        ["{file}:10:13: sockets[0].listen: IPv6 addresses need brackets, e.g. '[::1]:7005'"],
    ),
    (
        "port 0",
        HEAD + ONE_SOCKET.replace("127.0.0.1:7005", "127.0.0.1:0"),
        ["{file}:10:13: sockets[0].listen: port '0' is not a number in 1..65535"],
    ),
    (
        "remote without port",
        HEAD + ONE_SOCKET.replace("hf.quectel.com:8164", "hf.quectel.com"),
        ["{file}:11:13: sockets[0].remote: 'hf.quectel.com' has no port"],
    ),
    (
        "metrics on all interfaces",
        HEAD + ONE_SOCKET + "metrics:\n  listen: 0.0.0.0:9464\n",
        ["{file}:13:11: metrics.listen: 0.0.0.0:9464 is not a loopback address"],
    ),
    (
        "seclevel 2 without clientkey",
        HEAD.replace("  clientkey: client.key\n", "") + ONE_SOCKET,
        [
            "{file}:4:13: ssl.seclevel: seclevel 2 (mutual) needs cacert, clientcert and "
            "clientkey; clientkey is not set for sockets[0]"
        ],
    ),
    (
        "seclevel 1 overridden per socket without cacert",
        HEAD + ONE_SOCKET + "    ssl: {seclevel: 1, cacert: null}\n",
        ["{file}:12:21: sockets[0].ssl.seclevel: seclevel 1 (server auth) needs cacert"],
    ),
    (
        "default seclevel without cacert",
        "serial: {device: /dev/ttyUSB0}\n" + ONE_SOCKET,
        ["{file}:3:5: sockets[0]: seclevel 1 (server auth) needs cacert", "is the default"],
    ),
    (
        "cacert does not exist",
        HEAD.replace("cacert: ca.pem", "cacert: missing.pem") + ONE_SOCKET,
        ["{file}:5:11: ssl.cacert: cannot read ", "missing.pem: No such file or directory"],
    ),
    (
        "cacert is a directory",
        HEAD.replace("cacert: ca.pem", "cacert: .") + ONE_SOCKET,
        ["{file}:5:11: ssl.cacert: ", "is a directory, not a PEM file"],
    ),
    (
        "cacert is not PEM",
        HEAD.replace("cacert: ca.pem", "cacert: bridged.yaml") + ONE_SOCKET,
        ["{file}:5:11: ssl.cacert: ", "is not a PEM file (it must start with '-----BEGIN')"],
    ),
    (
        "client key given as certificate",
        HEAD.replace("clientcert: client.pem", "clientcert: client.key") + ONE_SOCKET,
        ["{file}:6:15: ssl.clientcert: ", "is not a PEM certificate"],
    ),
    (
        "control.mode unquoted",
        HEAD + ONE_SOCKET + "control:\n  mode: 0660\n",
        [
            "{file}:13:9: control.mode: expected a string (a quoted octal string such as "
            "'0660'), got the number 0660 (= 432)"
        ],
    ),
    (
        "control.mode open to others",
        HEAD + ONE_SOCKET + "control:\n  mode: '0666'\n",
        ["{file}:13:9: control.mode: 0666 gives others access"],
    ),
    (
        "reconnect initial above max",
        HEAD + ONE_SOCKET + "    reconnect: {initial: 90, max: 60}\n",
        ["{file}:12:35: sockets[0].reconnect.max: max must be at least initial (90)"],
    ),
    (
        "health_interval between 0 and 5",
        HEAD + ONE_SOCKET + "modem:\n  health_interval: 2\n",
        ["{file}:13:20: modem.health_interval: 2 is not allowed; expected 0 (disabled) or 5..3600"],
    ),
    (
        "serial device not absolute",
        HEAD.replace("/dev/ttyUSB0", "ttyUSB0") + ONE_SOCKET,
        ["{file}:2:11: serial.device: 'ttyUSB0' is not valid; expected an absolute path"],
    ),
    (
        "seven sockets",
        HEAD
        + "sockets:\n"
        + "".join(
            f"  - {{connect_id: {i % 6}, listen: '127.0.0.1:{7000 + i}', remote: 'h.example:1'}}\n"
            for i in range(7)
        ),
        ["{file}:9:3: sockets: has 7 entries, at most 6 allowed"],
    ),
    ("no sockets", HEAD + "sockets: []\n", ["{file}:8:10: sockets: needs at least 1 entry"]),
    (
        "NaN",
        HEAD + ONE_SOCKET + "modem:\n  prompt_delay: .nan\n",
        ["{file}:13:17: modem.prompt_delay: NaN is not allowed here"],
    ),
    (
        "control character",
        HEAD + ONE_SOCKET + "log: {level: info\x01}\n",
        ["{file}:12:18: YAML syntax: control character 0x01 is not allowed"],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(text, expected, id=name) for name, text, expected in BAD_CONFIGS],
)
def test_bad_config_is_reported_with_position_and_key_path(
    conf_dir: Path, text: str, expected: list[str]
) -> None:
    message = config_errors(conf_dir, text)
    file = str(conf_dir / "bridged.yaml")
    for fragment in expected:
        assert fragment.format(file=file) in message


def test_all_errors_are_reported_sorted_by_line(conf_dir: Path) -> None:
    text = HEAD.replace("seclevel: 2", "seclevel: 7") + ONE_SOCKET + "    ssl: {timeout: 5}\n"
    text = text.replace("connect_id: 5", "connect_id: 9")
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(conf_dir, text))
    lines = [issue.line for issue in caught.value.issues]
    assert lines == [4, 9, 12]
    assert str(caught.value).count("\n") == 2


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read: No such file"):
        load_config(tmp_path / "nope.yaml")


def test_non_loopback_listen_is_accepted_with_allow_remote(conf_dir: Path) -> None:
    text = HEAD + ONE_SOCKET.replace("127.0.0.1:7005", "0.0.0.0:7000") + "    allow_remote: true\n"
    config = load_config(write_config(conf_dir, text))
    assert config.sockets[0].listen == Endpoint("0.0.0.0", 7000)
    assert config.sockets[0].allow_remote is True


@pytest.mark.parametrize("host", ["localhost", "127.0.0.2", "[::1]", "[::ffff:127.0.0.1]"])
def test_loopback_listen_addresses(conf_dir: Path, host: str) -> None:
    text = HEAD + ONE_SOCKET.replace("127.0.0.1:7005", f"'{host}:7005'")
    assert load_config(write_config(conf_dir, text)).sockets[0].listen.port == 7005


def test_wildcard_listen_collides_with_specific_address(conf_dir: Path) -> None:
    second = "  - {connect_id: 1, listen: '[::]:7005', remote: 'h.example:1', allow_remote: true}\n"
    message = config_errors(conf_dir, HEAD + ONE_SOCKET + second)
    assert "sockets[1].listen: [::]:7005 collides with sockets[0].listen" in message


# --------------------------------------------------------------------------- certificate files


def test_client_key_readable_by_others_is_rejected_with_the_fix(conf_dir: Path) -> None:
    key = conf_dir / "client.key"
    key.chmod(0o644)
    message = config_errors(conf_dir, HEAD + ONE_SOCKET)
    assert f":7:14: ssl.clientkey: {key} is accessible by group or others (mode 0644)" in message
    assert f"chmod 600 {key}" in message


def test_client_key_0600_is_accepted(conf_dir: Path) -> None:
    assert stat.S_IMODE((conf_dir / "client.key").stat().st_mode) == 0o600
    config = load_config(write_config(conf_dir, HEAD + ONE_SOCKET))
    assert config.sockets[0].ssl.clientkey == conf_dir / "client.key"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a mode-000 file")
def test_unreadable_cacert_reports_the_os_error(conf_dir: Path) -> None:
    (conf_dir / "ca.pem").chmod(0o000)
    message = config_errors(conf_dir, HEAD + ONE_SOCKET)
    assert ":5:11: ssl.cacert: cannot read " in message
    assert "ermission denied" in message


def test_cacert_denied_by_access_check(conf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulates the non-root case on a root test runner: os.access says no.
    ca = conf_dir / "ca.pem"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != ca and real_access(p, mode))
    message = config_errors(conf_dir, HEAD + ONE_SOCKET)
    assert f":5:11: ssl.cacert: cannot read {ca}: permission denied for uid" in message


def test_cacert_failing_to_open_reports_the_os_error(
    conf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # os.access can be wrong (ACLs, NFS, LSMs); opening the file is the real test.
    ca = conf_dir / "ca.pem"
    real_open = open

    def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(file) == ca:
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded_open)
    message = config_errors(conf_dir, HEAD + ONE_SOCKET)
    assert f":5:11: ssl.cacert: cannot read {ca}: Permission denied" in message


KEY_FAILURES = {
    "readable by others": (KEY_PEM, 0o644),
    "not PEM": (f"{KEY_SENTINEL}\n", 0o600),
    "encrypted": (KEY_PEM.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"), 0o600),
    "certificate label": (KEY_PEM.replace("PRIVATE KEY", "CERTIFICATE"), 0o600),
    "truncated": (KEY_PEM.split("-----END")[0], 0o600),
    "ctrl-z inside": (KEY_PEM.replace(KEY_SENTINEL, KEY_SENTINEL + "\x1a"), 0o600),
}


@pytest.mark.parametrize("case", list(KEY_FAILURES))
def test_key_content_never_appears_in_messages(conf_dir: Path, case: str) -> None:
    content, mode = KEY_FAILURES[case]
    key = conf_dir / "client.key"
    key.write_text(content)
    key.chmod(mode)
    # The key file also stands in for the CA and client certificate, and the config file
    # itself names it, so every message about it is checked.
    text = HEAD.replace("ca.pem", "client.key").replace("client.pem", "client.key") + ONE_SOCKET
    message = config_errors(conf_dir, text)
    assert "client.key" in message
    assert KEY_SENTINEL not in message


def test_relative_cert_paths_resolve_against_the_config_directory(
    conf_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    config = load_config(write_config(conf_dir, HEAD + ONE_SOCKET))
    assert config.ssl.cacert == conf_dir / "ca.pem"
    assert config.sockets[0].ssl.clientcert == conf_dir / "client.pem"


def test_control_group_must_exist(conf_dir: Path) -> None:
    text = HEAD + ONE_SOCKET + "control:\n  group: no-such-group-xyz\n"
    assert "control.group: no such group 'no-such-group-xyz'" in config_errors(conf_dir, text)
    assert load_config(write_config(conf_dir, text), check_files=False).control.group == (
        "no-such-group-xyz"
    )


def test_check_files_false_skips_file_checks(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, HEAD + ONE_SOCKET), check_files=False)
    assert config.ssl.cacert == tmp_path / "ca.pem"


# --------------------------------------------------------------------------- values


def test_defaults_are_applied(tmp_path: Path) -> None:
    text = """\
serial: {device: /dev/ttyUSB0}
ssl: {seclevel: 0}
sockets:
  - {connect_id: 0, listen: '127.0.0.1:7000', remote: 'example.com:443'}
"""
    config = load_config(write_config(tmp_path, text))
    assert config == Config(
        serial=SerialConfig(device="/dev/ttyUSB0"),
        ssl=SslSettings(seclevel=0),
        sockets=(
            SocketConfig(
                connect_id=0,
                listen=Endpoint("127.0.0.1", 7000),
                remote=Endpoint("example.com", 443),
                ssl=SslSettings(seclevel=0),
            ),
        ),
    )
    assert config.serial == SerialConfig(
        device="/dev/ttyUSB0", baudrate=115200, reopen_backoff=BackoffBounds(initial=1, max=30)
    )
    assert config.modem == ModemConfig(
        prompt_delay=None,  # the module profile's
        command_timeout=5,
        init_retries=3,
        guard_time=0.0,
        health_interval=60,
        max_consecutive_timeouts=3,
        allow_reset=True,
    )
    sock = config.sockets[0]
    assert sock.mode == "on-demand"
    assert sock.allow_remote is False
    assert sock.reconnect == ReconnectPolicy(initial=1, max=60, jitter=0.2, open_retries=3)
    assert sock.queue == QueueLimits(send_max_bytes=65536, recv_buffer_bytes=65536)
    assert sock.ssl == SslSettings(
        seclevel=0,
        sslversion=4,
        dataformat=DataFormatSetting(DataFormat.TEXT, DataFormat.HEX),  # "dataformat",0,1
        timeout=90,
    )
    assert config.metrics == MetricsConfig(listen=Endpoint("127.0.0.1", 9464))
    assert config.log == LogConfig(level="info")
    assert config.control == ControlConfig(
        socket=Path("/run/bridged/control.sock"), group=None, mode=0o660
    )


def _schema_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """{"modem.prompt_delay": 0.5, ...} from the schema's default annotations."""
    defaults = {}
    for section, body in schema["properties"].items():
        for key, prop in body.get("properties", {}).items():
            if "default" in prop and not isinstance(prop["default"], dict):
                defaults[f"{section}.{key}"] = prop["default"]
            for inner, inner_prop in prop.get("properties", {}).items():
                if "default" in inner_prop:
                    defaults[f"{section}.{key}.{inner}"] = inner_prop["default"]
    for key, prop in schema["$defs"]["socket"]["properties"].items():
        if "default" in prop:
            defaults[f"sockets.{key}"] = prop["default"]
        for inner, inner_prop in prop.get("properties", {}).items():
            if "default" in inner_prop:
                defaults[f"sockets.{key}.{inner}"] = inner_prop["default"]
    return defaults


# A socket's timeout keys -> the channel's Timeouts fields the configuration holds.
TIMEOUT_FIELDS = {
    "idle_timeout": "idle",
    "half_close_timeout": "half_close",
    "handover_wait": "handover_wait",
    "send_stall_timeout": "send_stall",
}


def test_schema_defaults_match_the_dataclass_defaults() -> None:
    socket = SocketConfig(connect_id=0, listen=Endpoint("a", 1), remote=Endpoint("b", 1))
    objects: dict[str, Any] = {
        "serial": SerialConfig(device="/dev/x"),
        "modem": ModemConfig(),
        "ssl": SslSettings(),
        "sockets": socket,
        "metrics": MetricsConfig(),
        "log": LogConfig(),
        "control": ControlConfig(),
    }
    defaults = _schema_defaults(load_schema())
    assert len(defaults) > 30
    for dotted, default in defaults.items():
        if dotted == "metrics.enabled":
            continue  # expressed as Config.metrics being None
        section, *names = dotted.split(".")
        actual = objects[section]
        if section == "sockets" and names[0] in TIMEOUT_FIELDS:
            actual, names = socket.timeouts, [TIMEOUT_FIELDS[names[0]]]
        for name in names:
            actual = getattr(actual, name)
        if isinstance(actual, Endpoint | Path):
            actual = str(actual)
        if dotted == "control.mode":
            actual = f"0{actual:o}"
        if isinstance(actual, DataFormatSetting):
            default = (
                DataFormatSetting.both(DataFormat.from_word(default))
                if isinstance(default, str)
                else DataFormatSetting(
                    DataFormat.from_word(default["send"]), DataFormat.from_word(default["recv"])
                )
            )
        assert actual == default, dotted


def test_per_socket_ssl_overrides_merge_over_defaults(conf_dir: Path) -> None:
    text = (
        HEAD
        + ONE_SOCKET
        + "    ssl: {seclevel: 1, timeout: 120, dataformat: text, clientkey: null}\n"
        + "  - {connect_id: 1, listen: '127.0.0.1:7001', remote: 'h.example:443'}\n"
    )
    config = load_config(write_config(conf_dir, text))
    merged, inherited = config.sockets[0].ssl, config.sockets[1].ssl
    assert merged == dataclasses.replace(
        config.ssl,
        seclevel=1,
        timeout=120,
        dataformat=DataFormatSetting.both(DataFormat.TEXT),
        clientkey=None,
    )
    assert merged.cacert == conf_dir / "ca.pem"
    assert inherited == config.ssl
    assert config.ssl.seclevel == 2


def test_two_loads_are_equal_and_a_change_shows_in_one_socket(conf_dir: Path) -> None:
    text = HEAD + ONE_SOCKET + "  - {connect_id: 1, listen: '127.0.0.1:7001', remote: 'h.ex:1'}\n"
    path = write_config(conf_dir, text)
    first, second = load_config(path), load_config(path)
    assert first == second
    assert hash(first) == hash(second)
    write_config(conf_dir, text.replace("h.ex:1", "h.ex:2"))
    changed = load_config(path)
    assert changed != first
    assert changed.sockets[0] == first.sockets[0]
    assert changed.sockets[1] != first.sockets[1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.sockets[0].connect_id = 3  # type: ignore[misc]


def test_metrics_can_be_disabled(conf_dir: Path) -> None:
    text = HEAD + ONE_SOCKET + "metrics: {enabled: false, listen: '0.0.0.0:7005'}\n"
    assert load_config(write_config(conf_dir, text)).metrics is None


def test_control_mode_accepts_octal_strings(conf_dir: Path) -> None:
    for written in ("'0640'", "'640'", "'0o600'"):
        text = HEAD + ONE_SOCKET + f"control: {{mode: {written}}}\n"
        mode = load_config(write_config(conf_dir, text)).control.mode
        assert mode == int(written.strip("'").removeprefix("0o"), 8)


def test_parse_config_from_text() -> None:
    text = "serial: {device: /dev/ttyS0}\nssl: {seclevel: 0, cacert: ca.pem}\n" + ONE_SOCKET
    config = parse_config(text, base_dir=Path("/etc/bridged"), check_files=False)
    assert config.ssl.cacert == Path("/etc/bridged/ca.pem")
    with pytest.raises(ConfigError, match=r"^<config>:2:1: YAML syntax"):
        parse_config("serial: [\n")


# --------------------------------------------------------------------------- example and schema


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE, check_files=False)
    assert [s.mode for s in config.sockets] == ["persistent", "on-demand"]
    assert config.sockets[1].ssl.seclevel == 1
    assert config.sockets[0].ssl.seclevel == 2
    assert config.serial.device.startswith("/dev/serial/by-id/")


def test_example_config_validates_against_the_editor_schema() -> None:
    editor_schema = REPO / "config" / "bridged.schema.json"
    schema = json.loads(editor_schema.read_text())
    assert schema == load_schema()  # the editor copy is the packaged schema
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(EXAMPLE.read_text()))


def test_example_config_with_files_in_place(tmp_path: Path, conf_dir: Path) -> None:
    text = EXAMPLE.read_text().replace("/etc/bridged/", f"{conf_dir}/")
    assert isinstance(load_config(write_config(tmp_path, text)), Config)


# --------------------------------------------------------------------------- check_config_main


def test_check_config_main_success(conf_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(conf_dir, HEAD + ONE_SOCKET)
    assert check_config_main(path) == 0
    out, err = capsys.readouterr()
    assert out == f"bridged: configuration file {path} test is successful\n"
    assert err == ""


def test_check_config_main_failure(conf_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(conf_dir, HEAD + ONE_SOCKET.replace("connect_id: 5", "connect_id: 6"))
    assert check_config_main(str(path)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{path}:9:17: sockets[0].connect_id: 6 is out of range 0..5\n" in err
    assert err.endswith(f"bridged: configuration file {path} test failed\n")


# --------------------------------------------------------------------------- Endpoint


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("127.0.0.1:7000", Endpoint("127.0.0.1", 7000)),
        ("[::1]:7000", Endpoint("::1", 7000)),
        ("hf.quectel.com:8164", Endpoint("hf.quectel.com", 8164)),
        ("localhost:65535", Endpoint("localhost", 65535)),
    ],
)
def test_endpoint_parse(text: str, endpoint: Endpoint) -> None:
    assert Endpoint.parse(text) == endpoint
    assert str(endpoint) == text


@pytest.mark.parametrize(
    "text", ["7000", ":7000", "host:", "host:65536", "host:+1", "[::1]", "[nope]:1", "a b:1"]
)
def test_endpoint_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        Endpoint.parse(text)


@given(
    host=st.one_of(
        st.ip_addresses().map(str),
        st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z](\.[a-z][a-z0-9]{0,10}){0,8}", fullmatch=True),
    ),
    port=st.integers(1, 65535),
)
def test_endpoint_str_round_trips(host: str, port: int) -> None:
    endpoint = Endpoint(host, port)
    assert Endpoint.parse(str(endpoint)) == endpoint


# --------------------------------------------------------------------------- module model

TWO_SOCKETS = """\
sockets:
  - {connect_id: 0, listen: '127.0.0.1:7000', remote: 'h.example:1'}
  - {connect_id: 1, listen: '127.0.0.1:7001', remote: 'h.example:1'}
"""


def test_a_second_socket_on_a_bc660k_is_an_error_naming_the_module(conf_dir: Path) -> None:
    message = config_errors(conf_dir, HEAD + TWO_SOCKETS + "modem:\n  model: bc660k\n")
    assert (
        "sockets[1].connect_id: 1: the BC660K-GL (modem.model) has only connectID 0 (one socket)"
        in message
    )
    assert "sockets[0]" not in message


def test_the_models_limits_cover_sslversion(conf_dir: Path) -> None:
    text = HEAD.replace("seclevel: 2", "seclevel: 2\n  sslversion: 0") + TWO_SOCKETS
    message = config_errors(conf_dir, text + "modem:\n  model: bc950k\n")
    assert "ssl.sslversion: sslversion 0 is not supported by the BC950K-GL" in message
    # Reported once where it was set, not per socket.
    assert message.count("sslversion 0") == 1


def test_model_and_profile_file_are_read(conf_dir: Path) -> None:
    one = "sockets:\n  - {connect_id: 0, listen: '127.0.0.1:7000', remote: 'h.example:1'}\n"
    config = load_config(write_config(conf_dir, HEAD + one + "modem:\n  model: auto\n"))
    assert (config.modem.model, module_profile(config)) == ("auto", None)
    (conf_dir / "module.yaml").write_text("base: bc660k\nprompt_delay: 0.2\n")
    config = load_config(
        write_config(conf_dir, HEAD + one + "modem:\n  profile_file: module.yaml\n")
    )
    profile = module_profile(config)
    assert profile is not None and (profile.context_id, profile.prompt_delay) == (0, 0.2)
    assert config.modem.model == "bc26"  # the default; the file wins
    # The file's module has one socket: a second is refused, naming the file.
    message = config_errors(conf_dir, HEAD + TWO_SOCKETS + "modem:\n  profile_file: module.yaml\n")
    assert "the BC660K-GL (" in message and "module.yaml) has only connectID 0" in message


@pytest.mark.parametrize(
    ("profile_file", "modem_prompt_delay", "expected"),
    [
        ("base: bc26\nprompt_delay: 0.2\n", None, 0.2),  # the profile's measured value
        ("base: bc26\nprompt_delay: 0.2\n", 0.4, 0.4),  # written in the configuration: wins
        ("base: bc26\nprompt_delay: 0.2\n", 0.5, 0.5),  # even when it is the old default
        (None, None, 0.5),  # a built-in model: its profile's (the note's 0.5 s)
    ],
)
def test_the_daemon_waits_the_profile_files_prompt_delay_unless_the_config_sets_one(
    conf_dir: Path, profile_file: str | None, modem_prompt_delay: float | None, expected: float
) -> None:
    """Issue 15: a profile file's prompt_delay (bridged selftest measures it) is the wait
    after '>' the daemon's AT session uses, unless modem.prompt_delay is written."""
    from twisted.internet.testing import MemoryReactorClock

    from bridged.shell.daemon import Daemon

    modem = "modem:\n"
    if profile_file is not None:
        (conf_dir / "module.yaml").write_text(profile_file)
        modem += "  profile_file: module.yaml\n"
    if modem_prompt_delay is not None:
        modem += f"  prompt_delay: {modem_prompt_delay}\n"
    config = load_config(write_config(conf_dir, HEAD + ONE_SOCKET + modem))
    daemon = Daemon(MemoryReactorClock(), config)
    assert daemon.modem.engine is not None
    assert daemon.modem.engine.timing.prompt_delay == expected


def test_a_reload_applies_a_changed_profile_files_prompt_delay(conf_dir: Path) -> None:
    """SIGHUP after bridged selftest rewrote the profile file (same path, same
    configuration text): the new prompt_delay is the daemon's wait from then on."""
    from twisted.internet import defer
    from twisted.internet.testing import MemoryReactorClock

    from bridged.shell.daemon import Daemon

    (conf_dir / "module.yaml").write_text("base: bc26\nprompt_delay: 0.2\n")
    path = write_config(conf_dir, HEAD + ONE_SOCKET + "modem:\n  profile_file: module.yaml\n")
    daemon = Daemon(MemoryReactorClock(), load_config(path))
    (conf_dir / "module.yaml").write_text("base: bc26\nprompt_delay: 0.3\n")
    reloaded = defer.Deferred.fromCoroutine(daemon.reload(load_config(path)))
    assert reloaded.called  # nothing to wait for: the module was never opened
    assert daemon.modem.options.prompt_delay == 0.3  # taken at the serial reopen


def test_prompt_delay_null_means_the_profiles(conf_dir: Path) -> None:
    config = load_config(write_config(conf_dir, HEAD + ONE_SOCKET + "modem:\n  prompt_delay:\n"))
    assert config.modem.prompt_delay is None
    assert config.modem.prompt_delay_for(module_profile(config)) == 0.5


def test_a_bad_profile_file_is_a_configuration_error(conf_dir: Path) -> None:
    (conf_dir / "module.yaml").write_text("base: bc99\n")
    message = config_errors(conf_dir, HEAD + ONE_SOCKET + "modem:\n  profile_file: module.yaml\n")
    assert "modem.profile_file: base: must be one of" in message


def test_an_unknown_model_is_refused(conf_dir: Path) -> None:
    message = config_errors(conf_dir, HEAD + ONE_SOCKET + "modem:\n  model: bc96\n")
    assert "modem.model" in message and "bc660k" in message


# --------------------------------------------------------------------------- socket timeouts


def test_socket_timeouts_are_the_channels_by_mode_unless_written(conf_dir: Path) -> None:
    text = (
        HEAD
        + "sockets:\n"
        + "  - {connect_id: 0, listen: '127.0.0.1:7000', remote: 'h.example:1'}\n"
        + "  - {connect_id: 1, listen: '127.0.0.1:7001', remote: 'h.example:1',"
        + " mode: persistent}\n"
        + "  - {connect_id: 2, listen: '127.0.0.1:7002', remote: 'h.example:1',"
        + " idle_timeout: 30, half_close_timeout: 5, handover_wait: 0, send_stall_timeout: 25}\n"
    )
    on_demand, persistent, written = load_config(write_config(conf_dir, text)).sockets
    # on-demand: an idle connection costs airtime, closed after 300 s; persistent: never.
    assert on_demand.timeouts == Timeouts(idle=300.0, half_close=60.0, handover_wait=2.0)
    assert persistent.timeouts == Timeouts(idle=0.0, half_close=60.0, handover_wait=2.0)
    assert written.timeouts == Timeouts(
        idle=30.0, half_close=5.0, handover_wait=0.0, send_stall=25.0
    )


# --------------------------------------------------------------------------- dataformat


def test_dataformat_per_direction_or_for_both(conf_dir: Path) -> None:
    text = (
        HEAD
        + "  dataformat: {send: text, recv: hex}\n"
        + TWO_SOCKETS.replace(
            "remote: 'h.example:1'}\n  - {connect_id: 1",
            "remote: 'h.example:1', ssl: {dataformat: text}}\n  - {connect_id: 1",
        )
    )
    config = load_config(write_config(conf_dir, text))
    assert config.ssl.dataformat == DataFormatSetting(DataFormat.TEXT, DataFormat.HEX)
    assert [s.ssl.dataformat for s in config.sockets] == [
        DataFormatSetting.both(DataFormat.TEXT),
        DataFormatSetting(DataFormat.TEXT, DataFormat.HEX),
    ]


@pytest.mark.parametrize(
    ("written", "command", "chunk_format"),
    [
        ("hex", '"dataformat",1,1', DataFormat.HEX),
        ("text", '"dataformat",0,0', DataFormat.TEXT),
        ("{send: text, recv: hex}", '"dataformat",0,1', DataFormat.TEXT),
        ("{send: hex, recv: text}", '"dataformat",1,0', DataFormat.HEX),
    ],
)
def test_the_configured_words_become_the_modules_digits(
    conf_dir: Path, written: str, command: str, chunk_format: DataFormat
) -> None:
    """One mapping (core.at_codec.DataFormat): what the file says is what QSSLCFG writes,
    and the send direction is how the socket's chunks are encoded."""
    from twisted.internet.testing import MemoryReactorClock

    from bridged.core.qssl_commands import configure_lines
    from bridged.shell.bridge import SocketBridge
    from bridged.shell.daemon import socket_setup

    text = HEAD + ONE_SOCKET + f"    ssl: {{dataformat: {written}}}\n"
    (sock,) = load_config(write_config(conf_dir, text)).sockets
    lines = configure_lines(1, sock.connect_id, socket_setup(sock).settings)
    assert f"AT+QSSLCFG=1,5,{command}" in lines
    reactor = MemoryReactorClock()
    assert SocketBridge(sock, reactor, reactor, lambda: None).data_format is chunk_format


@pytest.mark.parametrize(
    "value", ["{send: text}", "{send: text, recv: bin}", "{send: text, recv: hex, x: 1}"]
)
def test_a_bad_per_direction_dataformat_is_refused(conf_dir: Path, value: str) -> None:
    message = config_errors(conf_dir, HEAD + ONE_SOCKET + f"    ssl: {{dataformat: {value}}}\n")
    assert "sockets[0].ssl.dataformat" in message
