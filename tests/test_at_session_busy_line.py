"""A wait does not run down while the module's other output holds the serial line.

Benchmark P4 (921600 baud, six sockets downloading as soon as they open): each further
``AT+QSSLOPEN``'s OK came later, queued behind seconds of recv URCs; the fifth missed the
fixed 5 s response timeout, its late ``+QSSLOPEN`` result was discarded and the client got
EOF with nothing. A real module's output is saturated the same way in such a flood. The
pure session on a virtual clock: bytes in, time in, completions out.
"""

from __future__ import annotations

from bridged.core.at_session import (
    ATSession,
    Command,
    Completed,
    Failed,
    SessionTiming,
    SetTimer,
)

BAUD = 921600
LINE_RATE = BAUD / 10
# One full hex recv URC (650 payload bytes): what a download flood is made of.
URC = b'\r\n+QSSLURC: "recv",1,3,650,"' + b"41" * 650 + b'"\r\n'


def run_flood(timing: SessionTiming, flood_seconds: float) -> tuple[list[object], float]:
    """AT+QSSLOPEN is written; recv URCs fill the line back to back for flood_seconds,
    then its OK comes. Returns the outcomes and when the command ended."""
    session = ATSession(timing)
    now = 0.0
    session.connection_made(now)
    cmd = Command('AT+QSSLOPEN=1,4,"127.0.0.1",4433,0', timeout=5.0)
    actions = session.submit(cmd, now)
    deadline: float | None = None
    outcomes: list[object] = []

    def apply(batch: list[object]) -> None:
        nonlocal deadline
        for action in batch:
            if isinstance(action, SetTimer):
                deadline = action.at
            elif isinstance(action, Completed | Failed) and action.command is cmd:
                outcomes.append(action)

    apply(list(actions))
    step = len(URC) / LINE_RATE  # the line time of one URC
    while now < flood_seconds and not outcomes:
        now += step
        if deadline is not None and now >= deadline:
            fired, now = deadline, max(now, deadline)
            apply(list(session.timer_fired(fired)))
            continue
        apply(list(session.feed(URC, now)))
    if not outcomes:
        apply(list(session.feed(b"\r\nOK\r\n", now)))
    return outcomes, now


def test_an_answer_queued_behind_a_urc_flood_still_completes_its_command() -> None:
    timing = SessionTiming(line_rate=LINE_RATE)
    outcomes, _ = run_flood(timing, flood_seconds=6.0)
    assert len(outcomes) == 1 and isinstance(outcomes[0], Completed)


def test_the_extension_is_bounded() -> None:
    """A line busy for ever does not keep a command waiting for ever."""
    timing = SessionTiming(line_rate=LINE_RATE, busy_max=3.0)
    outcomes, ended = run_flood(timing, flood_seconds=60.0)
    assert len(outcomes) == 1 and isinstance(outcomes[0], Failed)
    assert 7.9 <= ended <= 8.1  # 5 s + at most 3 s of busy line


def test_a_quiet_line_keeps_the_plain_timeout() -> None:
    timing = SessionTiming(line_rate=LINE_RATE)
    session = ATSession(timing)
    session.connection_made(0.0)
    cmd = Command("AT+CSQ", timeout=5.0)
    session.submit(cmd, 0.0)
    assert session.deadline == 5.0
    session.feed(b"\r\n+CSQ: 20,99", 1.0)  # 13 bytes: the wait grows by their line time only
    actions = session.timer_fired(5.0 + 13 / LINE_RATE)
    assert [a for a in actions if isinstance(a, Failed)]
