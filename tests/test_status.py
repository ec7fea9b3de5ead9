"""``bridged status``: the pure renderer, ATI parsing and the JSON round trip."""

from __future__ import annotations

import json

import pytest

from bridged.core.link_readings import ModuleInfo, parse_ati
from bridged.ops.status import (
    ClientStatus,
    LinkStatus,
    SerialStatus,
    SocketStatus,
    Status,
    format_age,
    render_status,
    status_reply,
)

NOW = 1_000_000.0


def socket_status(**changes: object) -> SocketStatus:
    fields: dict[str, object] = {
        "connect_id": 0,
        "listen": "127.0.0.1:1883",
        "remote": "mqtt.example.com:8883",
        "mode": "persistent",
        "state": "open",
        "state_since": NOW - 125,
        "client": ClientStatus("127.0.0.1:50122", NOW - 61),
        "tx_bytes": 1536,
        "rx_bytes": 12,
        "queued_bytes": 0,
        "opens": 3,
        "open_failures": 2,
        "last_error": "socket 0: open failed: timeout (-7)",
        "last_error_at": NOW - 3700,
    }
    fields.update(changes)
    return SocketStatus(**fields)  # type: ignore[arg-type]


def status(**changes: object) -> Status:
    fields: dict[str, object] = {
        "version": "1.2.3",
        "now": NOW,
        "started_at": NOW - 7260,
        "serial": SerialStatus("/dev/bc26", 115200, "ready", 0),
        "module": ModuleInfo("Quectel_Ltd", "Quectel_BC26", "BC26NBR01A10"),
        "link": LinkStatus("registered, home network", True, -97, 4, 1, NOW - 20),
        "sockets": (socket_status(),),
    }
    fields.update(changes)
    return Status(**fields)  # type: ignore[arg-type]


def test_one_screen() -> None:
    assert render_status(status()) == (
        "bridged 1.2.3, up 2h01m\n"
        "serial   /dev/bc26 at 115200 baud: ready\n"
        "module   Quectel_BC26, firmware BC26NBR01A10\n"
        "network  registered, home network; RSRP -97 dBm, SINR 4 dB, ECL 1 (read 20s ago)\n"
        "\n"
        "socket 0 127.0.0.1:1883 -> mqtt.example.com:8883 (persistent)\n"
        "  state   open for 2m05s\n"
        "  client  127.0.0.1:50122, connected for 1m01s\n"
        "  bytes   1.5 kB sent, 12 B received\n"
        "  opens   3 ok, 2 failed\n"
        "  error   socket 0: open failed: timeout (-7) 1h01m ago\n"
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"serial": SerialStatus("/dev/bc26", 9600, "serial-down", 4)},
            "serial   /dev/bc26 at 9600 baud: serial-down (reopened 4 times)\n",
        ),
        ({"module": ModuleInfo()}, "module   not identified yet\n"),
        ({"link": None}, "network  not polled (modem.health_interval is 0)\n"),
        ({"link": LinkStatus(None, None, None, None, None, None)}, "network  no reading yet\n"),
        (
            {"link": LinkStatus("not registered, searching", False, None, None, None, NOW - 5)},
            "network  not registered, searching; RSRP ?, SINR ?, ECL ? (read 5s ago)\n",
        ),
        (
            {"sockets": (socket_status(client=None, last_error=None, queued_bytes=2_500_000),)},
            "  client  none\n  bytes   1.5 kB sent, 12 B received, 2.5 MB queued\n"
            "  opens   3 ok, 2 failed\n",
        ),
        (
            {"sockets": (socket_status(mode="on-demand", idle_timeout=300.0, idle_closes=2),)},
            "  opens   3 ok, 2 failed\n  idle    closed after 5m00s without traffic (2 so far)\n",
        ),
    ],
)
def test_what_is_missing_or_wrong_says_so(changes: dict[str, object], expected: str) -> None:
    assert expected in render_status(status(**changes))


def test_json_round_trip() -> None:
    original = status()
    assert Status.from_json(json.loads(json.dumps(original.to_json()))) == original
    no_link = status(link=None, sockets=(socket_status(client=None),))
    assert Status.from_json(json.loads(json.dumps(no_link.to_json()))) == no_link


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-1, "0s"),
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m00s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (86399, "23h59m"),
        (86400 * 3 + 3600 * 4, "3d04h"),
    ],
)
def test_ages(seconds: float, text: str) -> None:
    assert format_age(seconds) == text


def test_ati() -> None:
    assert parse_ati(["Quectel_Ltd", "Quectel_BC26", "Revision: BC26NBR01A10"]) == ModuleInfo(
        "Quectel_Ltd", "Quectel_BC26", "BC26NBR01A10"
    )
    assert parse_ati([]) == ModuleInfo()
    assert parse_ati(["", "Revision:"]) == ModuleInfo()


def test_the_control_socket_reply() -> None:
    line, final = status_reply(status)
    assert final == "OK" and Status.from_json(json.loads(line)) == status()

    def broken() -> Status:
        raise RuntimeError("a bug")

    assert status_reply(broken) == ["UNAVAILABLE: reading the status failed; see the bridged log"]
