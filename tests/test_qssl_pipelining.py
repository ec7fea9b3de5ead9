"""The QSSL layer with pipelined sends (issue 15), on a virtual clock behind a scripted
module: results are matched to sends in order, and an ERROR before '>' is told apart
(:class:`SendRefused`: the module took none of the chunk) from one after the data."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from bridged.core.at_codec import DataFormat
from bridged.core.qssl_commands import QsslError, SendRefused
from bridged.shell.at_engine import CommandError
from tests.test_at_session_rules import Line, outcome


def sent(line: Line, payload: bytes) -> None:
    """Play the module through one send's prompt and data, up to its OK."""
    line.advance(0.05)
    assert line.take().startswith(b"AT+QSSLSEND=1,0,")
    line.say(b"\r\n> ")
    line.advance(0.6)
    assert line.take() == payload
    line.say(b"\r\nOK\r\n")


def test_results_confirm_pipelined_sends_in_order_and_a_failure_fails_its_own() -> None:
    line = Line()
    a_ok, a = line.qssl.send(0, b"aaaaa", DataFormat.TEXT)
    sent(line, b"aaaaa")
    b_ok, b = line.qssl.send(0, b"bbbbb", DataFormat.TEXT)  # before a's result
    sent(line, b"bbbbb")
    assert outcome(a_ok) is None and outcome(b_ok) is None  # both OK: the line is free
    assert outcome(a) is None and outcome(b) is None
    line.say(b"\r\n+QSSLSEND: 1,0,0\r\n")
    assert outcome(a) is None and not isinstance(outcome(a), Failure) and outcome(b) is None
    line.say(b"\r\n+QSSLSEND: 1,0,-2\r\n")
    failure = outcome(b)
    assert isinstance(failure, Failure) and isinstance(failure.value, QsslError)
    assert failure.value.name == "connection_error"


def test_an_error_before_the_prompt_is_a_refusal_after_the_data_it_is_not() -> None:
    line = Line()
    refused_ok, refused = line.qssl.send(0, b"aaaaa", DataFormat.TEXT)
    line.advance(0.05)
    assert line.take() == b"AT+QSSLSEND=1,0,5\r"
    line.say(b"\r\n+CME ERROR: 3\r\n")
    for d in (refused_ok, refused):
        failure = outcome(d)
        assert isinstance(failure, Failure) and isinstance(failure.value, SendRefused)
        assert str(failure.value) == (
            "socket 0: send failed: module answered +CME ERROR: 3 before '>'"
        )
    failed_ok, failed = line.qssl.send(0, b"bbbbb", DataFormat.TEXT)
    line.advance(0.05)
    assert line.take() == b"AT+QSSLSEND=1,0,5\r"
    line.say(b"\r\n> ")
    line.advance(0.6)
    assert line.take() == b"bbbbb"
    line.say(b"\r\nERROR\r\n")  # after the data: how much the module took is unknown
    for d in (failed_ok, failed):
        failure = outcome(d)
        assert isinstance(failure, Failure) and not isinstance(failure.value, SendRefused)
        assert isinstance(failure.value, CommandError) and failure.value.prompted


def test_a_new_connection_does_not_inherit_the_last_ones_unanswered_sends() -> None:
    """Pipelined sends whose results never came (the first failed, the stream ended): a
    reopened socket's first result is its own send's, not taken by a stale waiter."""
    line = Line()
    _, a = line.qssl.send(0, b"aaaaa", DataFormat.TEXT)
    sent(line, b"aaaaa")
    _, b = line.qssl.send(0, b"bbbbb", DataFormat.TEXT)
    sent(line, b"bbbbb")
    line.say(b"\r\n+QSSLSEND: 1,0,-2\r\n")  # a failed; b's result never comes
    assert isinstance(outcome(a), Failure) and outcome(b) is None
    opened = Deferred.fromCoroutine(line.qssl.open(0, "example.com", 443))
    line.advance(0.05)
    assert line.take().startswith(b'AT+QSSLOPEN=1,0,"example.com",443,0')
    failure = outcome(b)  # the old connection's send is given up, with a reason
    assert isinstance(failure, Failure) and "reopened" in failure.getErrorMessage()
    line.say(b"\r\nOK\r\n\r\n+QSSLOPEN: 1,0,0\r\n")
    assert outcome(opened) is None or not isinstance(outcome(opened), Failure)
    _, x = line.qssl.send(0, b"xxxxx", DataFormat.TEXT)
    sent(line, b"xxxxx")
    line.say(b"\r\n+QSSLSEND: 1,0,0\r\n")
    assert outcome(x) is None and not isinstance(outcome(x), Failure)
    assert x.called  # confirmed by its own result


def test_each_send_result_times_out_at_its_own_deadline_and_not_before() -> None:
    line = Line()
    line.qssl.open_timeouts[0] = 10.0
    _, a = line.qssl.send(0, b"aaaaa", DataFormat.TEXT)  # waits for its result from t=0
    sent(line, b"aaaaa")
    line.advance(2.0)
    _, b = line.qssl.send(0, b"bbbbb", DataFormat.TEXT)  # from about t=2.65
    sent(line, b"bbbbb")
    line.advance(9.9 - line.clock.seconds())
    assert outcome(a) is None and outcome(b) is None
    line.advance(0.2)
    failure = outcome(a)
    assert isinstance(failure, Failure) and isinstance(failure.value, QsslError)
    assert failure.value.name == "timeout" and outcome(b) is None
    line.advance(12.6 - line.clock.seconds())
    assert outcome(b) is None
    line.advance(0.2)
    failure = outcome(b)
    assert isinstance(failure, Failure) and failure.value.name == "timeout"


def test_confirmed_sends_do_not_schedule_a_result_timer_each() -> None:
    """A timer scheduled and cancelled per send costs the reactor a heap entry and, on
    a real reactor, a wake-up at its old deadline: one timer serves every result."""
    line = Line()
    scheduled: list[object] = []
    call_later = line.clock.callLater

    def counting(delay: float, f: Callable[..., object], *args: object) -> IDelayedCall:
        if f != line.engine._fired:  # the session's one deadline is the engine's
            scheduled.append(f)
        return call_later(delay, f, *args)

    line.clock.callLater = counting  # type: ignore[method-assign]
    for payload in (b"aaaaa", b"bbbbb", b"ccccc", b"ddddd"):
        _, confirmed = line.qssl.send(0, payload, DataFormat.TEXT)
        sent(line, payload)
        line.say(b"\r\n+QSSLSEND: 1,0,0\r\n")
        assert confirmed.called and outcome(confirmed) is None
    assert len(scheduled) == 1
