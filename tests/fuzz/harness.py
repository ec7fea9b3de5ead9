"""The real ATEngine and QsslClient on a recording transport and a virtual clock, with a
module stand-in that answers whatever the engine writes.

    h = EngineHarness()
    h.feed(b"\\r\\n+QSSLURC: ...")            # module bytes, any chunking
    h.clock.advance(1.0)                       # timeouts fire
    assert h.usable()                          # a new command still completes

``failures`` collects everything logged with a traceback (``log.failure``) while the
harness lives, so a test can assert that no listener crashed.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from bridged.core.at_codec import DataFormat
from bridged.core.module_profile import BC26
from bridged.shell.at_engine import ATEngine, ATError, Response
from bridged.shell.qssl import QsslClient, SocketSubscriber

MAX_LINE = 1024
TEXT_SOCKETS = (1, 3)  # the rest are hex


class RecordingTransport(StringTransport):
    """Keeps each write separately: the stand-in answers write by write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        super().write(data)
        self.writes.append(data)


@implementer(ILogObserver)
class _FailureLog:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, event: dict[str, Any]) -> None:
        failure = event.get("log_failure")
        if failure is not None:
            self.failures.append(failure.getTraceback())


# The session's resync probes are answered by their own information line.
PROBE_ANSWERS = {
    b"AT+CMEE?\r": b"\r\n+CMEE: 1\r\n\r\nOK\r\n",
    b"AT+QSCLK?\r": b"\r\n+QSCLK: 0\r\n\r\nOK\r\n",
}


class EngineHarness:
    def __init__(self, data_mode_quiet: float = 0.5) -> None:
        self.clock = task.Clock()
        self.engine = ATEngine(
            self.clock,
            prompt_delay=0.01,
            guard_time=0.0,
            quiet_period=0.05,
            resync_timeout=0.2,
            resync_attempts=3,
            data_mode_quiet=data_mode_quiet,
            max_line=MAX_LINE,
        )
        self.transport = RecordingTransport()
        self.engine.makeConnection(self.transport)
        self.qssl = QsslClient(self.engine, self.clock, command_timeout=1.0)
        self.qssl.open_timeouts = dict.fromkeys(BC26.connect_ids, 2.0)
        self.received: dict[int, bytearray] = {cid: bytearray() for cid in BC26.connect_ids}
        self.closed: dict[int, int] = dict.fromkeys(BC26.connect_ids, 0)
        for cid in BC26.connect_ids:
            fmt = DataFormat.TEXT if cid in TEXT_SOCKETS else DataFormat.HEX
            self.engine.decoder.set_recv_format(cid, fmt)
            self.qssl.subscribers[cid] = SocketSubscriber(
                self.received[cid].extend, lambda cid=cid: self._closed(cid)
            )
        self.tracked = 0
        self.outcomes: list[object] = []  # every tracked Deferred's result or Failure
        self._answered = 0
        self._log = _FailureLog()
        globalLogPublisher.addObserver(self._log)

    def close(self) -> None:
        globalLogPublisher.removeObserver(self._log)

    @property
    def failures(self) -> list[str]:
        return self._log.failures

    def _closed(self, cid: int) -> None:
        self.closed[cid] += 1

    # ------------------------------------------------------------------ driving

    def feed(self, data: bytes) -> None:
        self.engine.dataReceived(data)

    def track(self, d: defer.Deferred[Any]) -> None:
        """Remember how ``d`` ends; an ATError is an expected way for it to fail."""
        self.tracked += 1

        def done(result: object) -> None:
            if isinstance(result, Failure) and result.check(ATError) is not None:
                self.outcomes.append(result.value)
            else:
                self.outcomes.append(result)

        d.addBoth(done)

    def unexpected_failures(self) -> list[Failure]:
        return [o for o in self.outcomes if isinstance(o, Failure)]

    def answer(self) -> None:
        """A cooperative module: '>' to data commands, OK to everything else."""
        writes = self.transport.writes
        while self._answered < len(writes):
            data = writes[self._answered]
            self._answered += 1
            if data == b"\x1b":
                continue
            is_command = data.startswith(b"AT") and data.endswith(b"\r")
            wants_data = is_command and (
                b"QSSLSEND=" in data or data.rstrip(b"\r").endswith((b'"cacert"', b'"clientkey"'))
            )
            if data in PROBE_ANSWERS:
                self.feed(PROBE_ANSWERS[data])
                continue
            self.feed(b"\r\n> " if wants_data else b"\r\nOK\r\n")

    def settle(self, until: Any, seconds: float = 120.0, step: float = 0.05) -> bool:
        """Answer and let time pass until ``until()`` or ``seconds`` of virtual time."""
        for _ in range(int(seconds / step)):
            if until():
                return True
            self.answer()
            self.clock.advance(step)
        return bool(until())

    def usable(self) -> bool:
        """Whether a new command, queued behind whatever is left, still completes."""
        # Two tries: the first may land on the session's own clean-up of what came before
        # (a probe round ending unanswered fails what is queued; a late answer aborts the
        # command it meets). It fails then, never completes wrongly; the second must pass.
        for _ in range(2):
            d = self.engine.command("AT+CGMR", timeout=1.0)
            outcome: list[object] = []
            d.addBoth(outcome.append)
            self.settle(lambda outcome=outcome: bool(outcome))
            if outcome and isinstance(outcome[0], Response):
                return True
            if outcome and isinstance(outcome[0], Failure) and outcome[0].check(ATError):
                continue
            return False
        return False
