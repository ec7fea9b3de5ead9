"""Issue 11's numbered problems, each reproduced with the real engine and QSSL layer on a
virtual clock behind a scripted module (bytes in, bytes out, virtual time).

Each test failed on the engine as it was before the AT session became a pure machine.
"""

from __future__ import annotations

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from bridged.core.at_codec import ESC, DataFormat, Event, RecvUrc
from bridged.ops.passthrough import refusal
from bridged.shell.at_engine import ATEngine, ATError, Priority, Response
from bridged.shell.qssl import QsslClient

# What the module answers to each probe a resync may use (old or new).
PROBE_ANSWERS = {
    b"AT\r": b"\r\nOK\r\n",
    b"AT+CMEE?\r": b"\r\n+CMEE: 1\r\n\r\nOK\r\n",
    b"AT+QSCLK?\r": b"\r\n+QSCLK: 0\r\n\r\nOK\r\n",
}
DATA_MODE_QUIET = 12.0


class Line:
    """The host side on a virtual clock; the test plays the module."""

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.engine = ATEngine(
            self.clock,
            prompt_delay=0.5,
            quiet_period=0.2,
            resync_timeout=1.0,
            resync_attempts=3,
            data_mode_quiet=DATA_MODE_QUIET,
        )
        self.transport = StringTransport()
        self.engine.makeConnection(self.transport)
        self.qssl = QsslClient(self.engine, self.clock, command_timeout=5.0)
        self.events: list[Event] = []
        self.engine.event_observers.append(self.events.append)

    def take(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def say(self, data: bytes) -> None:
        self.engine.dataReceived(data)

    def advance(self, seconds: float, step: float = 0.05) -> None:
        for _ in range(round(seconds / step)):
            self.clock.advance(step)

    def answer_probes(self, written: bytes) -> bool:
        """Answer whichever probe is in ``written``; True if one was."""
        for probe, answer in PROBE_ANSWERS.items():
            if written.endswith(probe):
                self.say(answer)
                return True
        return False

    def resync(self, limit: float = 60.0) -> bytes:
        """Advance until a probe goes out and answer it; what was written meanwhile."""
        seen = b""
        for _ in range(round(limit / 0.05)):
            self.clock.advance(0.05)
            seen += self.take()
            if self.answer_probes(seen):
                return seen
        raise AssertionError(f"no resync probe within {limit} s; written: {seen!r}")


# Keyed by id() but holding the Deferred itself, so an id is never reused by a later
# Deferred while its entry lives (a reused id once made a test read a stale, empty box).
_OUTCOMES: dict[int, tuple[Deferred[object], list[object]]] = {}


def outcome(d: Deferred[object]) -> object:
    """What a Deferred has fired with so far: a value, a Failure, or None."""
    entry = _OUTCOMES.get(id(d))
    if entry is None or entry[0] is not d:
        box: list[object] = []
        _OUTCOMES[id(d)] = (d, box)

        def keep(result: object) -> None:
            box.append(result)  # seen here: a failure is not an unhandled error

        d.addBoth(keep)
    else:
        box = entry[1]
    return box[0] if box else None


def test_problem_1_a_late_send_ok_within_the_socket_timeout_completes_its_own_send() -> None:
    line = Line()
    accepted, confirmed = line.qssl.send(1, b"hello", DataFormat.TEXT)
    assert line.take() == b"AT+QSSLSEND=1,1,5\r"
    line.say(b"\r\n> ")
    line.advance(0.6)
    assert line.take() == b"hello"
    second, _ = line.qssl.send(1, b"world", DataFormat.TEXT)
    line.advance(6.0)  # longer than the old fixed 5 s, well inside the socket's timeout
    assert outcome(accepted) is None, "the send gave up before the module's time was up"
    assert line.take() == b"", "the next command was written while the send was unanswered"
    line.say(b"\r\nOK\r\n")
    assert outcome(accepted) is None or not isinstance(outcome(accepted), Failure)
    line.say(b"\r\n+QSSLSEND: 1,1,0\r\n")
    assert not isinstance(outcome(confirmed), Failure)
    line.advance(0.1)
    assert line.take() == b"AT+QSSLSEND=1,1,5\r"  # the second send, only now
    assert outcome(second) is None


def test_problem_1_a_late_answer_during_resync_is_not_taken_for_the_probes() -> None:
    line = Line()
    slow = line.engine.command("AT+SLOW", timeout=1.0)
    following = line.engine.command("AT+QSSLSEND=1,1,5", data=_data(b"abcde"))
    assert line.take() == b"AT+SLOW\r"
    line.advance(1.3)
    assert isinstance(outcome(slow), Failure)
    written = line.take()
    assert written and written.endswith(b"\r"), "resync wrote no probe"
    line.say(b"\r\nOK\r\n")  # AT+SLOW's answer, late
    line.advance(0.3)
    assert b"AT+QSSLSEND" not in line.take(), "the late OK was taken for the probe's answer"
    line.resync()
    line.advance(0.1)
    assert line.take() == b"AT+QSSLSEND=1,1,5\r"
    line.say(b"\r\n> ")
    line.advance(0.6)
    assert line.take() == b"abcde"
    assert outcome(following) is None


def test_problem_2_an_ok_while_waiting_for_the_prompt_fails_the_send() -> None:
    line = Line()
    accepted, _ = line.qssl.send(2, b"hello", DataFormat.HEX)
    assert line.take() == b"AT+QSSLSEND=1,2,5\r"
    line.say(b"\r\nOK\r\n")  # not '>': the note allows only '>' or an error here
    result = outcome(accepted)
    assert isinstance(result, Failure) and result.check(ATError)
    line.advance(0.1)
    assert b"68656C6C6F" not in line.take(), "payload written without a prompt"


def test_problem_3_resync_ends_under_continuous_urc_traffic() -> None:
    line = Line()
    slow = line.engine.command("AT+SLOW", timeout=1.0)
    line.take()
    line.advance(1.05)
    assert isinstance(outcome(slow), Failure)
    queued, _ = line.qssl.send(0, b"x", DataFormat.HEX)
    urc = b'\r\n+QSSLURC: "recv",1,3,1,"41"\r\n'
    written = b""
    for _ in range(100):  # 10 s of one URC every 100 ms
        line.say(urc)
        line.clock.advance(0.1)
        written += line.take()
        if line.answer_probes(written):
            written = b""
        if b"AT+QSSLSEND=1,0,1\r" in written:
            break
    assert b"AT+QSSLSEND=1,0,1\r" in written, "resync starved: the send was never written"
    received = [e for e in line.events if isinstance(e, RecvUrc)]
    assert len(received) >= 3 and all(e.data == b"A" for e in received)
    assert outcome(queued) is None


def test_problem_4_a_command_started_from_a_timeout_callback_cannot_wedge() -> None:
    """The modem's ladder fails everything and sends AT+QRST=1 from inside the timeout
    callback; the reboot is never seen: QRST must fail in bounded time, not stay in flight
    forever while the engine says healthy."""
    line = Line()
    reset: list[Deferred[Response]] = []

    def escalate(name: str, result: str, seconds: float) -> None:
        if result == "timeout" and not reset:
            line.engine.fail_all(ATError("module restarting"))
            reset.append(line.engine.command("AT+QRST=1", timeout=2.0, priority=Priority.HIGH))

    line.engine.command_observers.append(escalate)
    line.engine.command("AT+SLOW", timeout=1.0)
    written = b""
    for _ in range(400):  # 20 s; the module answers probes, never QRST
        line.clock.advance(0.05)
        written += line.take()
        if line.answer_probes(written):
            written = b""
    assert reset, "the timeout was not observed"
    assert isinstance(outcome(reset[0]), Failure), "AT+QRST=1 stayed in flight forever"


def test_problem_5_fail_all_leaves_no_command_on_the_wire() -> None:
    line = Line()
    first = line.engine.command("AT+A")
    assert line.take() == b"AT+A\r"
    line.engine.fail_all(ATError("module restarting"))
    assert isinstance(outcome(first), Failure)
    second = line.engine.command("AT+B")
    line.advance(0.05)
    line.say(b"\r\n+A: 1\r\n\r\nOK\r\n")  # AT+A's answer
    line.advance(0.05)
    assert outcome(second) is None, "AT+A's answer completed AT+B"
    line.resync()
    line.advance(0.1)
    assert line.take().endswith(b"AT+B\r")
    line.say(b"\r\nOK\r\n")
    result = outcome(second)
    assert isinstance(result, Response) and result.lines == []


def test_problem_6_after_a_text_data_phase_timeout_no_byte_becomes_payload() -> None:
    """Serial bytes were lost: the module still waits for payload (text, fixed length)
    and counts whatever arrives before its data-mode timeout as payload."""
    line = Line()
    line.qssl.open_timeouts[1] = 10.0 + 30.0
    accepted, _ = line.qssl.send(1, b"hello", DataFormat.TEXT)
    line.take()
    line.say(b"\r\n> ")
    line.advance(0.6)
    assert line.take() == b"hello"  # two of these bytes never reach the module
    # The module's data mode lasts until 10 s after the last byte it got; its answer to
    # the timed-out data phase is lost too. Anything written meanwhile would be payload.
    data_mode_left = 10.0
    line.advance(data_mode_left)
    assert line.take() == b"", "bytes written while the module counts them as payload"
    assert outcome(accepted) is None or isinstance(outcome(accepted), Failure)


def test_problem_6_a_late_prompt_during_resync_silences_the_probes() -> None:
    line = Line()
    accepted, _ = line.qssl.send(1, b"hello", DataFormat.TEXT)
    line.take()
    line.advance(5.2)  # no '>' in time
    assert isinstance(outcome(accepted), Failure)
    before = line.take()
    assert ESC not in before, "Esc would be a payload byte of a text send"
    line.say(b"\r\n> ")  # the prompt, late: the module now counts bytes as payload
    line.advance(10.0)  # the module's data-mode timeout
    assert line.take() == b"", "probe bytes written while the module is in data mode"


def _data(payload: bytes) -> object:
    from bridged.shell.at_engine import DataPhase

    return DataPhase(payload)


PROMPT_OPENERS = [
    "AT+QISEND=0,5",
    "AT+QISENDEX=0,5",
    'AT+CMGS="+4912345"',
    "AT+CMGW",
    "AT+QSSLSEND=1,3,5",
    "AT+NSOSD=0,5",
    'AT+QFUPL="f",10',
    'AT+QSSLCFG=1,3,"cacert"',
    "AT+QSSLSEND=1,3",
]
PASSING = [
    "AT+CSQ",
    "AT+CEREG?",
    "AT+QENG=0",
    "ATI",
    "AT+CGMR",
    "AT+CGSN",
    "AT+QSSLCFG=?",
    'AT+QSSLCFG=1,0,"timeout"',
    "AT+QSSLCFG=1,0",
]


@pytest.mark.parametrize("command", PROMPT_OPENERS)
def test_problem_7_passthrough_refuses_every_prompt_opening_command(command: str) -> None:
    assert refusal(command, managed=[0]) is not None


@pytest.mark.parametrize("command", PASSING)
def test_passthrough_lets_queries_and_reads_through(command: str) -> None:
    assert refusal(command, managed=[0]) is None


def test_a_duplicated_answer_in_the_same_read_does_not_complete_the_next_command() -> None:
    # The module (or the line) repeats a frame: "OK" twice, read in one chunk. The second
    # copy was on the wire before the next command went out, so it cannot be its answer
    # (found by the hypothesis model: "command 3 completed by command 2's answer").
    line = Line()
    first = line.engine.command("AT+FIRST", timeout=5.0)
    second = line.engine.command("AT+SECOND", timeout=5.0)
    assert line.take() == b"AT+FIRST\r"
    line.say(b"\r\nOK\r\n\r\nOK\r\n")
    assert isinstance(outcome(first), Response)
    assert line.take() == b"AT+SECOND\r"
    assert outcome(second) is None, "the duplicate completed the next command"
    line.advance(0.1)
    line.say(b"\r\nOK\r\n")
    assert isinstance(outcome(second), Response)
