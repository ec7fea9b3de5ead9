"""Configuration of the serial trace: serial.trace, trace_payload, trace_max_bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridged.config import ConfigError, parse_config
from bridged.shell.daemon import modem_options
from bridged.shell.serial_tap import SerialTraceOptions

SOCKET = "sockets:\n  - {connect_id: 0, listen: '127.0.0.1:7000', remote: 'h.ex:443'}\n"
SSL = "ssl: {seclevel: 0}\n"


def _parse(serial: str) -> object:
    return parse_config(serial + SSL + SOCKET, base_dir=Path("/etc/bridged"), check_files=False)


def test_no_trace_by_default() -> None:
    config = _parse("serial: {device: /dev/ttyS0}\n")
    assert config.serial.trace is None  # type: ignore[attr-defined]
    assert modem_options(config).trace is None  # type: ignore[arg-type]


def test_trace_path_is_relative_to_the_config_file_and_reaches_the_modem() -> None:
    config = _parse(
        "serial: {device: /dev/ttyS0, trace: traces/line.trace, trace_payload: false,"
        " trace_max_bytes: 50000}\n"
    )
    assert modem_options(config).trace == SerialTraceOptions(  # type: ignore[arg-type]
        Path("/etc/bridged/traces/line.trace"), keep_payload=False, max_bytes=50000
    )


@pytest.mark.parametrize(
    ("serial", "message"),
    [
        ("serial: {device: /dev/ttyS0, trace_max_bytes: 10}\n", "trace_max_bytes"),
        ("serial: {device: /dev/ttyS0, trace_payload: maybe}\n", "trace_payload"),
        ("serial: {device: /dev/ttyS0, trace: ''}\n", "trace"),
    ],
)
def test_bad_trace_settings_are_refused(serial: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _parse(serial)
