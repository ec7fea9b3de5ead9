"""The pure AT session, table-driven: bytes in at a virtual time, actions out."""

# ruff: noqa: E501  (one table row per line reads best)

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bridged.core.at_codec import ESC
from bridged.core.at_session import (
    Action,
    ATError,
    ATSession,
    Command,
    CommandError,
    Completed,
    DataPhase,
    Failed,
    Notify,
    Phase,
    ProtocolViolation,
    SessionTiming,
    SetTimer,
    Write,
    command_name,
)
from bridged.core.log_sink import DEBUG

TIMING = SessionTiming(
    prompt_delay=0.5,
    resync_attempts=2,
    resync_timeout=1.0,
    quiet_period=0.2,
    quiet_max=2.0,
    data_mode_quiet=12.0,
)


def writes(actions: list[Action]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Write))


def session_with(cmd: Command, *, prompt: bool = False) -> tuple[ATSession, list[Action]]:
    session = ATSession(TIMING)
    session.connection_made(0.0)
    actions = session.submit(cmd, 0.0)
    if prompt:
        actions += session.feed(b"\r\n> ", 0.1)
    return session, actions


@dataclass(frozen=True)
class Row:
    name: str
    data: DataPhase | None
    after_prompt: bool
    line: bytes
    outcome: type  # Completed, Failed, or None (still waiting)
    error: type | None
    writes_esc: bool
    phase: Phase


TEXT = DataPhase(b"hello", counted=True)
HEX = DataPhase(b"68656C6C6F")
ROWS = [
    Row("ok answers a plain command", None, False, b"\r\nOK\r\n", Completed, None, False, Phase.IDLE),
    Row("error fails it", None, False, b"\r\nERROR\r\n", Failed, CommandError, False, Phase.IDLE),
    Row("a '>' for a plain command", None, False, b"\r\n> ", Failed, ProtocolViolation, False, Phase.SILENT),
    Row("'>' ends the prompt wait", HEX, False, b"\r\n> ", type(None), None, False, Phase.PROMPT_DELAY),
    Row("OK instead of '>' (hex)", HEX, False, b"\r\nOK\r\n", Failed, ProtocolViolation, True, Phase.QUIET),
    Row("OK instead of '>' (text)", TEXT, False, b"\r\nOK\r\n", Failed, ProtocolViolation, False, Phase.SILENT),
    Row("an info line instead of '>'", HEX, False, b"\r\n+CSQ: 1,2\r\n", Failed, ProtocolViolation, True, Phase.QUIET),
    Row("ERROR instead of '>'", HEX, False, b"\r\nERROR\r\n", Failed, CommandError, False, Phase.IDLE),
    Row("+CME ERROR instead of '>'", TEXT, False, b"\r\n+CME ERROR: 3\r\n", Failed, CommandError, False, Phase.IDLE),
    Row("OK in the prompt delay", TEXT, True, b"\r\nOK\r\n", Failed, ProtocolViolation, False, Phase.SILENT),
    Row("a second '>' in the prompt delay", HEX, True, b"\r\n> ", Failed, ProtocolViolation, False, Phase.SILENT),
    Row("ERROR in the prompt delay", HEX, True, b"\r\nERROR\r\n", Failed, CommandError, False, Phase.IDLE),
    Row("a URC in the prompt wait", HEX, False, b'\r\n+QSSLURC: "closed",1,2\r\n', type(None), None, False, Phase.PROMPT),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_what_each_line_does_in_each_phase(row: Row) -> None:
    cmd = Command("AT+QSSLSEND=1,0,5" if row.data else "AT+QSSLCLOSE=1,0", 5.0, row.data)
    session, _ = session_with(cmd, prompt=row.after_prompt)
    actions = session.feed(row.line, 0.2)
    finished = [a for a in actions if isinstance(a, Completed | Failed)]
    if row.outcome is type(None):
        assert finished == []
    else:
        assert [type(a) for a in finished] == [row.outcome]
        if row.error is not None:
            assert isinstance(finished[0], Failed) and type(finished[0].error) is row.error
    assert (ESC in writes(actions)) is row.writes_esc
    assert session.phase is row.phase


def test_quiet_is_bounded_under_urcs_and_urcs_still_pass() -> None:
    session = ATSession(TIMING)
    session.connection_made(0.0)
    session.fail_all(ATError("x"), 0.0)  # idle: a resync all the same
    assert session.phase is Phase.QUIET
    t = 0.0
    urcs = 0
    while session.phase is Phase.QUIET and t < 10:
        t += 0.1
        urcs += sum(
            isinstance(a, Notify) for a in session.feed(b'\r\n+QSSLURC: "closed",1,1\r\n', t)
        )
        urcs += sum(isinstance(a, Notify) for a in session.feed(b"\r\nOK\r\n", t))  # noise
        if session.deadline is not None and session.deadline <= t:
            session.timer_fired(t)
    assert session.phase is Phase.PROBING
    assert t <= TIMING.quiet_max + 0.1
    assert urcs == round(t / 0.1)


def test_every_phase_but_idle_has_a_deadline() -> None:
    session = ATSession(TIMING)
    session.connection_made(0.0)
    actions = session.submit(Command("AT+X", 1.0), 0.0)
    assert SetTimer(1.0) in actions
    for t in (1.0, 1.2, 2.2, 3.2):  # timeout, quiet, probe, probe
        session.timer_fired(t)
        assert session.phase is Phase.IDLE or session.deadline is not None


def test_an_urgent_command_reaches_a_module_that_answers_no_probe() -> None:
    """The recovery ladder's AT+QRST=1 must go out while resync probes in vain."""
    session = ATSession(TIMING)
    session.connection_made(0.0)
    session.submit(Command("AT+X", 1.0), 0.0)
    t = 1.0
    while not session.unresponsive:
        assert session.deadline is not None
        t = session.deadline
        session.timer_fired(t)
    normal = session.submit(Command("AT+Y", 1.0), t)
    assert writes(normal) == b""  # waits for the module to answer again
    urgent = session.submit(Command("AT+QRST=1", 2.0, urgent=True), t)
    assert writes(urgent) == b"AT+QRST=1\r"
    assert session.deadline == t + 2.0


def test_the_data_mode_silence_survives_a_serial_reopen_and_ends_at_a_boot() -> None:
    session = ATSession(TIMING)
    session.connection_made(0.0)
    session.submit(Command("AT+QSSLSEND=1,1,5", 5.0, TEXT), 0.0)
    session.feed(b"\r\nOK\r\n", 0.1)  # not '>': the send is aborted, silence follows
    assert session.phase is Phase.SILENT
    session.connection_lost(ATError("port closed"))
    actions = session.connection_made(1.0)  # the module may still be in data mode
    assert session.phase is Phase.SILENT and writes(actions) == b""
    assert session.deadline == 0.1 + TIMING.data_mode_quiet
    session.feed(b"\r\nRDY\r\n", 2.0)  # it rebooted: no data mode any more
    assert session.phase is Phase.QUIET


class RecordingLog:
    """A log sink that keeps (level, text) of every line, fields filled in."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _keep(self, level: str, format: str | None, fields: dict[str, object]) -> None:
        self.lines.append((level, (format or "").format(**fields)))

    def debug(self, format: str | None = None, **kwargs: object) -> None:
        self._keep("debug", format, kwargs)

    def info(self, format: str | None = None, **kwargs: object) -> None:
        self._keep("info", format, kwargs)

    def warn(self, format: str | None = None, **kwargs: object) -> None:
        self._keep("warn", format, kwargs)

    def error(self, format: str | None = None, **kwargs: object) -> None:
        self._keep("error", format, kwargs)


def test_the_session_logs_to_the_sink_it_is_given() -> None:
    """The pure session imports no logging framework: its lines go to the injected sink."""
    log = RecordingLog()
    session = ATSession(TIMING, log=log)
    session.connection_made(0.0)
    session.submit(Command("AT+CSQ", timeout=1.0), 0.0)
    session.feed(b"\r\n+CSQ: 23,99\r\n\r\nOK\r\n", 0.1)
    session.feed(b"\r\nOK\r\n", 0.2)  # an answer nobody asked for
    assert ("debug", "AT> AT+CSQ") in log.lines
    assert ("info", "answer nobody can own discarded: OK") in log.lines


@pytest.fixture
def debug_off() -> Iterator[None]:
    DEBUG.on = False
    try:
        yield
    finally:
        DEBUG.on = True


def test_a_session_builds_no_debug_line_when_debug_is_off(debug_off: None) -> None:
    """At level info (setup_logging turns the switch off) a send's three AT trace lines
    are never built: each would cost Twisted ~10 µs to drop. Other levels still log."""
    log = RecordingLog()
    session = ATSession(TIMING, log=log)
    session.connection_made(0.0)
    session.submit(Command("AT+QSSLSEND=1,0,2", 5.0, DataPhase(b"6869")), 0.0)
    session.feed(b"\r\n> ", 0.1)
    session.timer_fired(0.1 + TIMING.prompt_delay)
    session.feed(b"\r\nOK\r\n", 0.7)
    session.feed(b"\r\nOK\r\n", 0.8)  # an answer nobody asked for
    assert [level for level, _ in log.lines] == ["info"]


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("AT+QSSLSEND=1,0,730", "AT+QSSLSEND"),
        ("AT+CMEE?", "AT+CMEE"),
        ("AT+QSSLCFG=?", "AT+QSSLCFG"),
        ("AT+CSQ", "AT+CSQ"),
        ("ATI", "ATI"),
    ],
)
def test_a_command_is_named_by_what_precedes_its_parameters(line: str, name: str) -> None:
    assert command_name(line) == name
    assert Command(line, 1.0).name == name
