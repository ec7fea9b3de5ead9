"""Link health: the pure parsers of +CSQ / +CEREG / +QENG (bridged.core.link_readings),
and the polling glue (bridged.shell.link_health)."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from bridged.core import link_readings
from bridged.core.at_codec import FinalResult
from bridged.core.link_readings import (
    LinkReadings,
    ModuleInfo,
    Registration,
    ServingCell,
    SignalQuality,
    csq_to_dbm,
    parse_cereg,
    parse_csq,
    parse_qeng,
    split_fields,
)
from bridged.emulator.basic_commands import ENGINEERING_LINE, SIGNAL_QUALITY_LINE
from bridged.shell.at_engine import ATEngine, CommandError, CommandTimeout, Priority, Response
from bridged.shell.link_health import IDENTIFY_TIMEOUT, LinkHealth, ModuleIdentity
from bridged.shell.modem import ModemState

# --------------------------------------------------------------------------- parsing


def test_the_parsers_import_nothing_that_does_io() -> None:
    """bridged.core.link_readings is pure: standard-library data types and nothing else."""
    source = Path(link_readings.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= {"__future__", "collections.abc", "dataclasses"}, imported


@pytest.mark.parametrize(
    ("rssi", "dbm"), [(0, -113), (1, -111), (22, -69), (30, -53), (31, -51), (32, None), (99, None)]
)
def test_csq_index_to_dbm(rssi: int, dbm: int | None) -> None:
    assert csq_to_dbm(rssi) == dbm


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([SIGNAL_QUALITY_LINE], SignalQuality(rssi=22, rssi_dbm=-69)),
        (["+CSQ: 0,0"], SignalQuality(rssi=0, rssi_dbm=-113)),
        (["+CSQ:31,99"], SignalQuality(rssi=31, rssi_dbm=-51)),
        (["+CSQ: 99,99"], SignalQuality(rssi=None, rssi_dbm=None)),  # unknown: absent
        (["+CSQ: ,99"], SignalQuality(rssi=None, rssi_dbm=None)),  # empty field: absent
        (["+CSQ: 45,99"], SignalQuality(rssi=None, rssi_dbm=None)),  # out of range
        (["+CSQ: x,y"], SignalQuality(rssi=None, rssi_dbm=None)),
        ([], None),
        (["+CEREG: 0,1"], None),
    ],
)
def test_parse_csq(lines: list[str], expected: SignalQuality | None) -> None:
    assert parse_csq(lines) == expected


@pytest.mark.parametrize(
    ("lines", "status", "registered"),
    [
        (["+CEREG: 0,1"], 1, True),  # home
        (['+CEREG: 2,5,"2F4A","0F4C7A21",9'], 5, True),  # roaming, with location
        (["+CEREG: 0,2"], 2, False),  # searching
        (["+CEREG: 0,3"], 3, False),  # denied
        (["+CEREG: 0,0"], 0, False),
        (["+CEREG: 1,4"], 4, False),
    ],
)
def test_parse_cereg(lines: list[str], status: int, registered: bool) -> None:
    registration = parse_cereg(lines)
    assert registration is not None
    assert (registration.status, registration.registered) == (status, registered)


@pytest.mark.parametrize("lines", [[], ["+CEREG: 0"], ["+CEREG: 0,"], ["+CEREG: 0,x"], ["OK"]])
def test_parse_cereg_without_a_status_is_none(lines: list[str]) -> None:
    assert parse_cereg(lines) is None


def test_parse_qeng_of_the_emulator() -> None:
    cell = parse_qeng([ENGINEERING_LINE])
    assert cell == ServingCell(
        earfcn=3736,
        earfcn_offset=2,
        pci=246,
        cell_id="0F4C7A21",
        rsrp_dbm=-87,
        rsrq_db=-9,
        rssi_dbm=-80,
        sinr_db=12,
        band=8,
        tac="2F4A",
        ecl=0,
    )


def test_parse_qeng_of_a_published_bc26_line() -> None:
    # From Quectel's QuecOpen sample code: values are whole dBm / dB, not tenths.
    cell = parse_qeng(['+QENG: 0,2507,2,146,"772F253",-90,-8,-83,16,5,"785F",0,140,3'])
    assert cell is not None
    assert (cell.rsrp_dbm, cell.rsrq_db, cell.rssi_dbm, cell.sinr_db) == (-90, -8, -83, 16)
    assert (cell.band, cell.ecl, cell.cell_id, cell.tac, cell.pci) == (5, 0, "772F253", "785F", 146)


def test_parse_qeng_empty_fields_are_none() -> None:
    cell = parse_qeng(['+QENG: 0,2506,,176,"0BF576D1",,,,,5,"3095",,,3'])
    assert cell is not None
    assert cell.earfcn == 2506 and cell.earfcn_offset is None and cell.band == 5
    assert (cell.rsrp_dbm, cell.rsrq_db, cell.rssi_dbm, cell.sinr_db, cell.ecl) == (None,) * 5


def test_parse_qeng_truncated_line_leaves_the_rest_none() -> None:
    cell = parse_qeng(['+QENG: 0,3736,2,246,"0F4C7A21",-101'])
    assert cell is not None
    assert cell.rsrp_dbm == -101
    assert (cell.rsrq_db, cell.sinr_db, cell.band, cell.tac, cell.ecl) == (None,) * 5


@pytest.mark.parametrize(
    ("field_index", "value"),
    [(5, "-864"), (5, "-157"), (5, "0"), (6, "-90"), (8, "120"), (11, "255"), (11, "-1")],
)
def test_parse_qeng_implausible_values_are_absent_not_wrong(field_index: int, value: str) -> None:
    fields = ["0", "3736", "2", "246", '"0F4C7A21"', "-87", "-9", "-80", "12", "8", '"2F4A"', "0"]
    fields[field_index] = value
    cell = parse_qeng(["+QENG: " + ",".join(fields)])
    assert cell is not None
    attribute = {5: "rsrp_dbm", 6: "rsrq_db", 8: "sinr_db", 11: "ecl"}[field_index]
    assert getattr(cell, attribute) is None
    assert cell.pci == 246  # the rest of the line is still read


def test_parse_qeng_skips_neighbour_cells() -> None:
    lines = ["+QENG: 1,3736,247,-99,-12", ENGINEERING_LINE, "+QENG: 1,3736,248,-103,-14"]
    cell = parse_qeng(lines)
    assert cell is not None and cell.pci == 246


@pytest.mark.parametrize("lines", [[], ["+QENG: 1,3736,247,-99,-12"], ["+QENG: x"], ["OK"]])
def test_parse_qeng_without_a_serving_cell_is_none(lines: list[str]) -> None:
    assert parse_qeng(lines) is None


def test_split_fields_respects_quotes() -> None:
    assert split_fields(' 0, "a,b",,  7 ,"x"') == ["0", "a,b", "", "7", "x"]


@given(st.lists(st.text(max_size=80), max_size=4))
def test_parsers_never_raise(lines: list[str]) -> None:
    for prefix in ("", "+CSQ: ", "+CEREG: ", "+QENG: "):
        prefixed = [prefix + line for line in lines]
        parse_csq(prefixed)
        parse_cereg(prefixed)
        parse_qeng(prefixed)


# --------------------------------------------------------------------------- polling


@dataclass
class FakeEngine:
    """Records commands; the test answers them one by one."""

    pending: list[tuple[str, Priority, defer.Deferred[Response]]] = field(default_factory=list)
    sent: list[tuple[str, Priority, float]] = field(default_factory=list)

    def command(
        self, line: str, *, timeout: float = 5.0, priority: Priority = Priority.NORMAL
    ) -> defer.Deferred[Response]:
        d: defer.Deferred[Response] = defer.Deferred()
        self.pending.append((line, priority, d))
        self.sent.append((line, priority, timeout))
        return d

    def answer(self, *lines: str) -> str:
        line, _, d = self.pending.pop(0)
        d.callback(Response(line, list(lines), FinalResult(ok=True)))
        return line

    def error(self) -> str:
        line, _, d = self.pending.pop(0)
        d.errback(CommandError(line, FinalResult(ok=False), []))
        return line

    def time_out(self) -> str:
        line, _, d = self.pending.pop(0)
        d.errback(CommandTimeout(line, 5.0, "response"))
        return line


@dataclass
class FakeModem:
    engine: Any = None
    state: ModemState = ModemState.INITIALISING
    ready_observers: list[Any] = field(default_factory=list)
    lost_observers: list[Any] = field(default_factory=list)

    def ready(self) -> None:
        self.state = ModemState.READY
        for listener in list(self.ready_observers):
            listener(object())

    def lost(self) -> None:
        self.state = ModemState.INITIALISING
        for listener in list(self.lost_observers):
            listener("test")


def answer_all(engine: FakeEngine) -> None:
    assert engine.answer(SIGNAL_QUALITY_LINE) == "AT+CSQ"
    assert engine.answer("+CEREG: 0,1") == "AT+CEREG?"
    assert engine.answer(ENGINEERING_LINE) == "AT+QENG=0"


@pytest.fixture
def setup() -> tuple[task.Clock, FakeModem, FakeEngine, LinkHealth]:
    clock = task.Clock()
    engine = FakeEngine()
    modem = FakeModem(engine=engine)
    health = LinkHealth(clock, modem, interval=30.0, command_timeout=2.0)  # type: ignore[arg-type]
    health.start()
    return clock, modem, engine, health


def test_no_poll_until_ready_then_one_at_a_time_at_low_priority(setup: Any) -> None:
    clock, modem, engine, health = setup
    clock.advance(100)
    assert engine.sent == []
    modem.ready()
    # One command at a time: the next is asked only when the previous is answered, so a
    # send queued meanwhile is written first.
    assert [c for c, _, _ in engine.sent] == ["AT+CSQ"]
    engine.answer(SIGNAL_QUALITY_LINE)
    assert [c for c, _, _ in engine.sent] == ["AT+CSQ", "AT+CEREG?"]
    engine.answer("+CEREG: 0,1")
    engine.answer(ENGINEERING_LINE)
    assert {(p, t) for _, p, t in engine.sent} == {(Priority.LOW, 2.0)}
    readings = health.readings
    assert readings.signal == SignalQuality(rssi=22, rssi_dbm=-69)
    assert readings.registration == Registration(mode=0, status=1)
    assert readings.cell is not None and readings.cell.rsrp_dbm == -87
    assert health.polls == 1


def test_polls_every_interval_and_skips_while_a_poll_runs(setup: Any) -> None:
    clock, modem, engine, health = setup
    modem.ready()
    answer_all(engine)
    clock.advance(29.9)
    assert engine.pending == []
    clock.advance(0.1)
    assert [c for c, _, _ in engine.pending] == ["AT+CSQ"]
    clock.advance(90)  # the module is slow: no second poll piles up behind the first
    assert len(engine.pending) == 1
    answer_all(engine)
    assert health.polls == 2


def test_error_leaves_only_that_value_absent(setup: Any) -> None:
    clock, modem, engine, health = setup
    modem.ready()
    answer_all(engine)
    clock.advance(30)
    engine.answer("+CSQ: 99,99")
    engine.error()  # CEREG
    engine.time_out()  # QENG
    assert health.readings == LinkReadings(
        signal=SignalQuality(rssi=None, rssi_dbm=None), registration=None, cell=None
    )


def test_module_lost_clears_values_and_stops_polling(setup: Any) -> None:
    clock, modem, engine, health = setup
    modem.ready()
    answer_all(engine)
    clock.advance(30)
    engine.answer(SIGNAL_QUALITY_LINE)  # a poll is half way when the module goes
    modem.lost()
    assert health.readings == LinkReadings()
    engine.answer("+CEREG: 0,1")  # a late answer is not taken
    assert engine.pending == []
    assert health.readings == LinkReadings()
    clock.advance(300)
    assert engine.pending == []
    modem.ready()  # back: polled again at once
    answer_all(engine)
    assert health.readings.registration == Registration(mode=0, status=1)


def test_stop_detaches(setup: Any) -> None:
    clock, modem, engine, health = setup
    health.stop()
    assert modem.ready_observers == [] and modem.lost_observers == []
    modem.ready()
    clock.advance(100)
    assert engine.sent == []


def test_interval_zero_disables() -> None:
    modem = FakeModem(engine=FakeEngine())
    health = LinkHealth(task.Clock(), modem, interval=0)  # type: ignore[arg-type]
    health.start()
    assert not health.enabled
    assert modem.ready_observers == []


def test_health_polls_never_go_ahead_of_queued_sends() -> None:
    """With the real AT engine: a poll command waits behind every NORMAL command."""
    clock = task.Clock()
    engine = ATEngine(clock, guard_time=0.0)
    transport = StringTransport()
    engine.makeConnection(transport)
    modem = FakeModem(engine=engine)
    health = LinkHealth(clock, modem, interval=60.0)  # type: ignore[arg-type]
    health.start()

    def written() -> list[bytes]:
        lines = transport.value().split(b"\r")
        return [line for line in lines if line]

    first = engine.command('AT+QSSLOPEN=1,0,"h",1,0', priority=Priority.NORMAL)
    modem.ready()  # poll queued (LOW) while the open is in flight
    second = engine.command("AT+QSSLCLOSE=1,1", priority=Priority.NORMAL)
    assert written() == [b'AT+QSSLOPEN=1,0,"h",1,0']
    engine.dataReceived(b"\r\nOK\r\n")
    clock.advance(0)
    assert written()[-1] == b"AT+QSSLCLOSE=1,1"  # the NORMAL command goes first
    engine.dataReceived(b"\r\nOK\r\n")
    clock.advance(0)
    assert written()[-1] == b"AT+CSQ"
    engine.dataReceived(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    clock.advance(0)
    assert first.called and second.called
    assert written()[-1] == b"AT+CEREG?"
    engine.dataReceived(b"\r\n+CEREG: 0,5\r\n\r\nOK\r\n")
    clock.advance(0)
    engine.dataReceived(b"\r\nERROR\r\n")  # QENG not supported: that value stays absent
    clock.advance(0)
    assert health.readings == LinkReadings(
        signal=SignalQuality(rssi=20, rssi_dbm=-73),
        registration=Registration(mode=0, status=5),
        cell=None,
    )


# --------------------------------------------------------------------------- identity


def test_module_identity_asks_ati_at_each_ready_and_keeps_the_answer() -> None:
    engine = FakeEngine()
    modem = FakeModem(engine=engine)
    identity = ModuleIdentity(modem)  # type: ignore[arg-type]
    assert identity.info == ModuleInfo() and engine.sent == []
    modem.ready()
    assert engine.sent == [("ATI", Priority.LOW, IDENTIFY_TIMEOUT)]
    engine.answer("Quectel_Ltd", "Quectel_BC26", "Revision: BC26NBR01A10")
    assert identity.info == ModuleInfo("Quectel_Ltd", "Quectel_BC26", "BC26NBR01A10")
    modem.ready()  # after a restart: asked again; an unanswered ATI keeps what was known
    engine.time_out()
    assert identity.info.firmware == "BC26NBR01A10"
