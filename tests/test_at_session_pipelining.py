"""The AT session's part in pipelined sends (issue 15), table-driven on a virtual clock:
an error tells whether the module took any of the data (``CommandError.prompted``), and
an earlier send's ``+QSSLSEND`` result may fall anywhere in the next send's phases
without disturbing it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bridged.core.at_codec import SendResult
from bridged.core.at_session import (
    ATSession,
    Command,
    CommandError,
    Completed,
    DataPhase,
    Failed,
    Notify,
    Phase,
    SessionTiming,
    Write,
)

TIMING = SessionTiming(prompt_delay=0.5, data_mode_quiet=12.0)
SEND = "AT+QSSLSEND=1,0,5"
HEX = DataPhase(b"68656C6C6F")


def started(data: DataPhase | None = HEX) -> ATSession:
    session = ATSession(TIMING)
    session.connection_made(0.0)
    session.submit(Command(SEND if data else "AT+QSSLCLOSE=1,0", 5.0, data), 0.0)
    return session


@dataclass(frozen=True)
class ErrorRow:
    name: str
    before: tuple[tuple[bytes, float], ...]  # what the module said first, and when
    error: bytes
    prompted: bool  # the module may have taken data: the chunk must not be sent again


PROMPT = ((b"\r\n> ", 0.1),)
ERROR_ROWS = [
    ErrorRow("ERROR instead of '>': nothing taken", (), b"\r\nERROR\r\n", False),
    ErrorRow("+CME ERROR instead of '>': nothing taken", (), b"\r\n+CME ERROR: 3\r\n", False),
    ErrorRow("ERROR in the prompt delay", PROMPT, b"\r\nERROR\r\n", True),
    ErrorRow("ERROR after the data", PROMPT, b"\r\nERROR\r\n", True),
]  # fmt: skip


@pytest.mark.parametrize("row", ERROR_ROWS, ids=[r.name for r in ERROR_ROWS])
def test_an_error_says_whether_the_module_was_in_data_mode(row: ErrorRow) -> None:
    session = started()
    for line, at in row.before:
        session.feed(line, at)
    at = 0.2
    if row.name.endswith("after the data"):
        session.timer_fired(0.6)  # the prompt delay is over: the payload goes out
        assert session.phase is Phase.AFTER_DATA
        at = 0.7
    (failed,) = [a for a in session.feed(row.error, at) if isinstance(a, Failed)]
    assert isinstance(failed.error, CommandError)
    assert failed.error.prompted is row.prompted
    assert session.phase is Phase.IDLE  # an ERROR is an answer: no resync


def test_a_plain_command_error_is_not_prompted() -> None:
    session = started(data=None)
    (failed,) = [a for a in session.feed(b"\r\nERROR\r\n", 0.1) if isinstance(a, Failed)]
    assert isinstance(failed.error, CommandError) and not failed.error.prompted


@dataclass(frozen=True)
class ResultRow:
    name: str
    phase: Phase  # the next send's phase when the earlier result arrives


RESULT_ROWS = [
    ResultRow("while waiting for '>'", Phase.PROMPT),
    ResultRow("in the prompt delay", Phase.PROMPT_DELAY),
    ResultRow("after the data, before OK", Phase.AFTER_DATA),
]


@pytest.mark.parametrize("row", RESULT_ROWS, ids=[r.name for r in RESULT_ROWS])
def test_an_earlier_sends_result_anywhere_in_the_next_send_is_passed_on_once(
    row: ResultRow,
) -> None:
    session = started()
    actions = []
    if row.phase is not Phase.PROMPT:
        actions += session.feed(b"\r\n> ", 0.1)
    if row.phase is Phase.AFTER_DATA:
        actions += session.timer_fired(0.6)
    assert session.phase is row.phase
    actions += session.feed(b"\r\n+QSSLSEND: 1,0,0\r\n", 0.65)
    assert session.phase is row.phase  # the send goes on
    if row.phase is Phase.PROMPT:
        actions += session.feed(b"\r\n> ", 0.7)
    if session.phase is Phase.PROMPT_DELAY:
        actions += session.timer_fired(session.deadline or 0.0)
    actions += session.feed(b"\r\nOK\r\n", 1.5)
    results = [
        a.event for a in actions if isinstance(a, Notify) and isinstance(a.event, SendResult)
    ]
    assert results == [SendResult(0, 0)]
    assert [type(a) for a in actions if isinstance(a, Completed | Failed)] == [Completed]
    payload = b"".join(a.data for a in actions if isinstance(a, Write))
    assert payload == b"68656C6C6F"  # written once, nothing else
