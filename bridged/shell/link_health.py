"""Link health and module identity: what the module says about itself and the radio,
asked at low priority.

Every ``modem.health_interval`` seconds while the module is ready, ``AT+CSQ``,
``AT+CEREG?`` and ``AT+QENG=0`` go out one after the other at
:attr:`~bridged.shell.at_engine.Priority.LOW`, so none of them is ever written ahead of a
queued open, send or close; ``ATI`` goes out once each time the module becomes ready.
The answers are parsed by :mod:`bridged.core.link_readings`; this module is the Twisted
glue.

A command the module answers with ``ERROR`` (or that times out) leaves its value ``None``,
which the metrics leave absent rather than zero. Values are cleared when the module is
lost: they describe a radio that may no longer be there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bridged.core.link_readings import (
    LinkReadings,
    ModuleInfo,
    parse_ati,
    parse_cereg,
    parse_csq,
    parse_qeng,
    registration_text,
)
from bridged.shell.at_engine import ATError, CommandError, CommandTimeout, Priority
from bridged.shell.modem import Modem, ModemState
from bridged.shell.qssl import QsslClient

log = Logger(namespace="bridged.link")

# --------------------------------------------------------------------------- polling

POLL_COMMANDS = ("AT+CSQ", "AT+CEREG?", "AT+QENG=0")


class LinkHealth:
    """Polls the link while the module is ready; ``readings`` holds the latest values.

    Attach with :meth:`start` (it subscribes to the modem's ready/lost listeners) and
    detach with :meth:`stop`. ``interval`` 0 disables polling: the readings stay empty.
    """

    def __init__(
        self,
        clock: IReactorTime,
        modem: Modem,
        interval: float,
        command_timeout: float = 5.0,
    ) -> None:
        self.clock = clock
        self.modem = modem
        self.interval = interval
        self.command_timeout = command_timeout
        self.readings = LinkReadings()
        self.polls = 0  # polls completed (each of the three commands answered or failed)
        self.updated_at: float | None = None  # clock time of the last completed poll
        self.change_observers: list[Callable[[LinkReadings], None]] = []
        self._loop: task.LoopingCall | None = None
        self._generation = 0  # bumped when the module is lost: late answers are dropped
        self._started = False

    # ------------------------------------------------------------------ control

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def start(self) -> None:
        if self._started or not self.enabled:
            return
        self._started = True
        self.modem.ready_observers.append(self._module_ready)
        self.modem.lost_observers.append(self._module_lost)
        if self.modem.state is ModemState.READY:
            self._start_loop()

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._stop_loop()
        self._generation += 1
        for listeners, listener in (
            (self.modem.ready_observers, self._module_ready),
            (self.modem.lost_observers, self._module_lost),
        ):
            if listener in listeners:
                listeners.remove(listener)  # type: ignore[arg-type]

    def _module_ready(self, _qssl: QsslClient) -> None:
        self._start_loop()

    def _module_lost(self, _reason: str) -> None:
        self._stop_loop()
        self._generation += 1
        self.updated_at = None
        self._set(LinkReadings())

    def _start_loop(self) -> None:
        self._stop_loop()
        self._generation += 1  # a poll of an earlier loop stops at its next step
        loop = task.LoopingCall(self._poll)
        loop.clock = self.clock
        self._loop = loop
        # A poll still running when the next is due makes LoopingCall skip that one.
        loop.start(self.interval, now=True).addErrback(self._loop_failed)

    @staticmethod
    def _loop_failed(failure: Failure) -> None:
        log.failure("link health polling stopped", failure)

    def _stop_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    # ------------------------------------------------------------------ one poll

    def _poll(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.poll_once())

    async def poll_once(self) -> None:
        """Ask the three commands one after another (never queued together, so data
        queued meanwhile goes first) and publish what they say."""
        generation = self._generation
        results: list[list[str] | None] = []
        for line in POLL_COMMANDS:
            engine = self.modem.engine
            if engine is None or self.modem.state is not ModemState.READY:
                return
            try:
                response = await engine.command(
                    line, timeout=self.command_timeout, priority=Priority.LOW
                )
            except (CommandError, CommandTimeout) as e:
                log.debug("link health: {error}", error=e)
                results.append(None)
                continue
            except ATError as e:  # serial lost, module restarting: this poll is moot
                log.debug("link health poll abandoned: {error}", error=e)
                return
            if generation != self._generation:
                return
            results.append(response.lines)
        if generation != self._generation:
            return
        csq, cereg, qeng = results
        self.polls += 1
        self.updated_at = self.clock.seconds()
        self._set(
            LinkReadings(
                signal=parse_csq(csq) if csq is not None else None,
                registration=parse_cereg(cereg) if cereg is not None else None,
                cell=parse_qeng(qeng) if qeng is not None else None,
            )
        )

    def _set(self, readings: LinkReadings) -> None:
        old, self.readings = self.readings, readings
        if old == readings:
            return
        self._log_change(old, readings)
        for observer in list(self.change_observers):
            try:
                observer(readings)
            except Exception:
                log.failure("link health observer failed")

    @staticmethod
    def _log_change(old: LinkReadings, new: LinkReadings) -> None:
        was = old.registration.registered if old.registration else None
        now = new.registration.registered if new.registration else None
        if was != now and new.registration is not None:
            text = registration_text(new.registration.status)
            if now:
                log.info("network registration: {text}", text=text)
            else:
                log.warn("network registration: {text}", text=text)
        old_cell = old.cell.cell_id if old.cell else None
        new_cell = new.cell.cell_id if new.cell else None
        if new_cell is not None and new_cell != old_cell:
            cell = new.cell
            assert cell is not None
            log.info(
                "serving cell {cell_id} (pci {pci}, band {band}): RSRP {rsrp} dBm, ECL {ecl}",
                cell_id=new_cell,
                pci=cell.pci,
                band=cell.band,
                rsrp=cell.rsrp_dbm,
                ecl=cell.ecl,
            )


def start_link_health(
    modem: Modem, clock: IReactorTime, interval: float, command_timeout: float
) -> LinkHealth | None:
    """Poll the link every ``interval`` seconds (``modem.health_interval``); None when 0."""
    if interval <= 0:
        return None
    health = LinkHealth(clock, modem, interval, command_timeout=command_timeout)
    health.start()
    return health


# --------------------------------------------------------------------------- identity

IDENTIFY_TIMEOUT = 5.0
identity_log = Logger(namespace="bridged.status")  # where `bridged status` users look


class ModuleIdentity:
    """Asks ``ATI`` (low priority) each time the module becomes ready; keeps the answer."""

    def __init__(self, modem: Modem) -> None:
        self.modem = modem
        self.info = ModuleInfo()
        modem.ready_observers.append(self._module_ready)

    def _module_ready(self, _qssl: QsslClient) -> None:
        engine = self.modem.engine
        if engine is None:
            return
        d = engine.command("ATI", timeout=IDENTIFY_TIMEOUT, priority=Priority.LOW)

        def answered(response: Any) -> None:
            info = parse_ati(response.lines)
            if info != self.info:
                identity_log.info(
                    "module {model}, firmware {firmware}",
                    model=info.model or "?",
                    firmware=info.firmware or "?",
                )
            self.info = info

        def failed(failure: Any) -> None:
            failure.trap(ATError)
            identity_log.debug("ATI not answered: {why}", why=failure.getErrorMessage())

        d.addCallbacks(answered, failed)


__all__ = ["LinkHealth", "ModuleIdentity", "start_link_health"]
