"""Armed faults: misbehaviour the next command(s) will show.

Faults that act at once (reboot, hang-up, network close, garbage) are methods of
:class:`~bridged.emulator.emulator.Emulator`; this module holds the ones that wait
for the host to do something.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from bridged.emulator.results import ResultCode


class SendErrorStage(Enum):
    #: ``ERROR`` instead of ``>``: the host keeps its data.
    COMMAND = "command"
    #: ``ERROR`` after the data was taken: the host must not count it as sent.
    AFTER_DATA = "after_data"


class UrcRelease(Enum):
    """Where held URCs go inside the next response that has any to release."""

    AFTER_FIRST_LINE = "after_first_line"
    BEFORE_FINAL = "before_final"


class FaultPlan:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Disarm everything."""
        self._send_errors: deque[SendErrorStage] = deque()
        self._open_results: deque[ResultCode] = deque()
        #: When set, URCs are held and released inside the next response.
        self.urc_release: UrcRelease | None = None
        #: When set, data mode begins exactly this long after ``>`` (else random).
        self.prompt_delay: float | None = None
        #: When set, the next send's final answer comes this much later (the module is
        #: busy meanwhile: what the host writes is lost).
        self.slow_answer: float | None = None
        #: When set, the next send's ``>`` comes this much later (input lost meanwhile).
        self.late_prompt: float | None = None

    def take_slow_answer(self) -> float | None:
        delay, self.slow_answer = self.slow_answer, None
        return delay

    def take_late_prompt(self) -> float | None:
        delay, self.late_prompt = self.late_prompt, None
        return delay

    def fail_next_sends(self, count: int, stage: SendErrorStage) -> None:
        self._send_errors.extend([stage] * count)

    def take_send_error(self, stage: SendErrorStage) -> bool:
        """True if the next send must fail at ``stage`` (and consume that fault)."""
        if self._send_errors and self._send_errors[0] is stage:
            self._send_errors.popleft()
            return True
        return False

    def fail_next_open(self, code: ResultCode) -> None:
        self._open_results.append(code)

    def take_open_failure(self) -> ResultCode | None:
        return self._open_results.popleft() if self._open_results else None
