"""The module's lifecycle and recovery ladder as a pure state machine.

No reactor, no clock reads, no I/O: the modem (its Twisted shell) reports what happened —
port opened or lost, initialisation done or failed, a command timed out, the session
found the module unresponsive, a boot sign — with the time, and carries out the actions
returned: :class:`Reopen` the port, :class:`Reset` the module (``AT+QRST=1``),
:class:`Initialise` it, :class:`SetTimer`. Every stage but a closed port (whose reopen
timer the shell owns) has a deadline, so no stage can wedge: a deadline passed climbs the
ladder.

Stages::

    serial-down ──opened──▶ initialising ──ready──▶ ready
         ▲                     │    ▲                  │
         └──────lost───────────┘    └─boot / recover───┘
                               │
                     fail / timeout / unresponsive
                               ▼
                          recovering (the ladder's next rung)

The ladder is data (:data:`LADDER`): reopen the serial port, then reset the module, then
start over. Steps never start from inside another's callback: the machine returns them as
actions, and the shell carries them out after the input that caused them was handled.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Stage(Enum):
    SERIAL_DOWN = "serial-down"
    INITIALISING = "initialising"
    READY = "ready"
    RECOVERING = "recovering"  # a rung of the ladder is under way


class Rung(Enum):
    REOPEN = "reopen"  # close and reopen the serial port
    RESET = "reset"  # AT+QRST=1, then wait for the boot sign


# The recovery ladder, climbed one rung per failure; past the top it starts over.
# (The first rung of all, resync, is the AT session's own.)
LADDER: tuple[Rung, ...] = (Rung.REOPEN, Rung.RESET)


@dataclass(frozen=True, slots=True)
class LifecycleSettings:
    max_consecutive_timeouts: int = 3
    allow_reset: bool = True
    init_timeout: float = 300.0  # uploads at a low baud rate take a while
    reset_grace: float = 15.0  # after AT+QRST=1, how long to wait for the boot sign


@dataclass(frozen=True, slots=True)
class Reopen:
    reason: str


@dataclass(frozen=True, slots=True)
class Reset:
    reason: str


@dataclass(frozen=True, slots=True)
class Initialise:
    reason: str
    generation: int


@dataclass(frozen=True, slots=True)
class SetTimer:
    at: float | None


Action = Reopen | Reset | Initialise | SetTimer


class Lifecycle:
    def __init__(self, settings: LifecycleSettings | None = None) -> None:
        self.settings = settings or LifecycleSettings()
        self.stage = Stage.SERIAL_DOWN
        self.rung = -1  # index into LADDER of the last rung taken since the last ready
        self.deadline: float | None = None
        self.generation = 0  # of the initialisation under way; stale results are ignored
        self.consecutive_timeouts = 0
        self.expecting_boot = False

    @property
    def healthy(self) -> bool:
        """False while the ladder is being climbed: the watchdog ping follows this."""
        return self.stage is not Stage.RECOVERING and self.rung < 0

    # ------------------------------------------------------------------ inputs

    def opened(self, now: float) -> list[Action]:
        return self._initialise(now, "serial port opened")

    def lost(self, now: float) -> list[Action]:
        """The port is gone; the shell reopens it with its backoff."""
        self.stage = Stage.SERIAL_DOWN
        self.generation += 1
        self.expecting_boot = False
        return self._timer(None)

    def ready(self, generation: int, now: float) -> list[Action]:
        if generation != self.generation or self.stage is not Stage.INITIALISING:
            return []
        self.stage = Stage.READY
        self.rung = -1
        self.consecutive_timeouts = 0
        return self._timer(None)

    def init_failed(self, generation: int, now: float, why: str) -> list[Action]:
        if generation != self.generation or self.stage is not Stage.INITIALISING:
            return []
        return self._climb(now, f"initialisation failed: {why}")

    def command_result(self, result: str, now: float) -> list[Action]:
        if result != "timeout":
            self.consecutive_timeouts = 0
            return []
        self.consecutive_timeouts += 1
        if self.consecutive_timeouts < self.settings.max_consecutive_timeouts:
            return []
        self.consecutive_timeouts = 0
        return self._climb(now, f"{self.settings.max_consecutive_timeouts} consecutive timeouts")

    def unresponsive(self, now: float) -> list[Action]:
        if self.stage is Stage.SERIAL_DOWN:
            return []
        return self._climb(now, "no answer to the resync probes")

    def boot_sign(self, now: float) -> list[Action]:
        """The module (re)booted: every setting is gone; initialise again."""
        if self.stage is Stage.SERIAL_DOWN:
            return []
        self.expecting_boot = False
        return self._initialise(now, "module booted")

    def timer_fired(self, now: float) -> list[Action]:
        if self.deadline is None or now < self.deadline - 1e-9:
            return []
        self.deadline = None
        if self.stage is Stage.INITIALISING:
            return self._climb(now, "initialisation took too long")
        if self.stage is Stage.RECOVERING:
            # The reset's boot sign never came: initialise anyway (it may have been lost),
            # under the next deadline.
            self.expecting_boot = False
            return self._initialise(now, "no boot sign after the reset")
        return []

    # ------------------------------------------------------------------ internals

    def _initialise(self, now: float, reason: str) -> list[Action]:
        self.stage = Stage.INITIALISING
        self.generation += 1
        return [
            *self._timer(now + self.settings.init_timeout),
            Initialise(reason, self.generation),
        ]

    def _climb(self, now: float, reason: str) -> list[Action]:
        self.generation += 1  # whatever initialisation runs is stale now
        self.rung += 1
        if self.rung >= len(LADDER):
            self.rung = 0  # past the top: start over
        rung = LADDER[self.rung]
        if rung is Rung.RESET and not self.settings.allow_reset:
            self.rung = 0
            rung = LADDER[0]
        if rung is Rung.REOPEN:
            # The shell's reopen reports lost, then opened: those inputs move the stage;
            # should they not come, the deadline initialises on whatever port there is.
            self.stage = Stage.RECOVERING
            return [*self._timer(now + self.settings.reset_grace), Reopen(reason)]
        self.stage = Stage.RECOVERING
        self.expecting_boot = True
        return [*self._timer(now + self.settings.reset_grace), Reset(reason)]

    def _timer(self, at: float | None) -> list[Action]:
        self.deadline = at
        return [SetTimer(at)]
