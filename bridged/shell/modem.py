"""The module's lifecycle shell: serial port, initialisation, configuration, recovery.

The decisions — stages, the recovery ladder, a deadline out of every stage, health — are
the pure :class:`~bridged.core.lifecycle.Lifecycle`; this class opens and closes the port, runs
the initialisation steps, sends ``AT+QRST=1`` when told, and reports what happened.

One :class:`~bridged.shell.at_engine.ATEngine` (one AT session) and one QSSL layer live as long
as the modem: a serial reopen hands the engine a new transport, so URC subscriptions and
the session's knowledge (a data-mode silence under way) survive it.

Recovery for a module that stops answering: the session's own resync, then closing and
reopening the serial port, then ``AT+QRST=1``, then over again. A boot sign at any time
means the module lost every QSSLCFG setting and certificate, so it is initialised and
configured again.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorCore, IReactorTime
from twisted.internet.serialport import SerialPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from bridged.core.backoff import Backoff, BackoffBounds
from bridged.core.lifecycle import Action as LifecycleAction
from bridged.core.lifecycle import Initialise, Lifecycle, LifecycleSettings, Reopen, Reset
from bridged.core.lifecycle import SetTimer as LifecycleTimer
from bridged.core.module_profile import BC26, ModuleProfile
from bridged.core.qssl_commands import CertKind, SslSocketSettings
from bridged.shell.at_engine import ATEngine, ATError, Priority
from bridged.shell.qssl import QsslClient
from bridged.shell.serial_access import ExclusiveSerialPort
from bridged.shell.serial_tap import SerialTraceOptions, tap

log = Logger(namespace="bridged.modem")


class ModemState(Enum):
    SERIAL_DOWN = "serial-down"
    INITIALISING = "initialising"
    READY = "ready"


@dataclass(frozen=True, slots=True)
class SocketSetup:
    """What the module must be told about one socket after every (re)start."""

    connect_id: int
    settings: SslSocketSettings
    certificates: tuple[tuple[CertKind, Path], ...]


@dataclass(frozen=True, slots=True)
class ModemOptions:
    device: str
    baudrate: int = 115200
    prompt_delay: float = 0.5
    guard_time: float = 0.0
    command_timeout: float = 5.0
    max_consecutive_timeouts: int = 3
    allow_reset: bool = True
    reopen_backoff: BackoffBounds = field(default_factory=BackoffBounds)
    init_attempts: int = 10
    reset_grace: float = 15.0  # after AT+QRST=1, how long to wait for the boot banner
    trace: SerialTraceOptions | None = None  # record the line (bridged.core.serial_trace)
    #: The module model; None: ask the module (ATI / AT+CGMM) at every initialisation.
    profile: ModuleProfile | None = BC26


class WrongModule(ATError):
    """The module identified itself as a model that lacks a configured socket."""


class Modem:
    """Owns the serial port and the module; tells its observers when it is ready or lost."""

    def __init__(
        self,
        reactor: IReactorCore,
        options: ModemOptions,
        sockets: Sequence[SocketSetup],
        rng: random.Random | None = None,
    ) -> None:
        self.reactor = reactor
        self.clock: IReactorTime = reactor  # type: ignore[assignment]
        self.options = options
        self.sockets = list(sockets)
        self.state = ModemState.SERIAL_DOWN
        # One engine (one AT session) and one QSSL layer for the daemon's life: a serial
        # reopen hands the engine a new transport, so nobody has to subscribe again.
        self.engine: ATEngine | None = ATEngine(
            self.clock,
            prompt_delay=options.prompt_delay,
            guard_time=options.guard_time,
            data_mode_quiet=self._data_mode_timeout(),
        )
        self.qssl: QsslClient | None = QsslClient(
            self.engine, self.clock, options.command_timeout, options.profile or BC26
        )
        self.engine.lost_observers.append(self._serial_lost)
        self.engine.unresponsive_observers.append(self._unresponsive)
        self.engine.command_observers.append(self._observe_command)
        self.qssl.boot_observers.append(self._boot_sign)
        self.ready_observers: list[Callable[[QsslClient], None]] = []
        self.lost_observers: list[Callable[[str], None]] = []
        self.engine_observers: list[Callable[[ATEngine, QsslClient], None]] = []
        # Called with a reason when running on is pointless (the module is the wrong model).
        self.fatal_observers: list[Callable[[str], None]] = []
        self._engine_announced: list[Callable[[ATEngine, QsslClient], None]] = []
        self.restarts: dict[str, int] = {}
        self.serial_reopens = 0
        self._port: SerialPort | None = None
        self._reopen_backoff = Backoff(
            options.reopen_backoff.initial, options.reopen_backoff.max, 0.1, rng or random.Random()
        )
        self._reopen_call: IDelayedCall | None = None
        # The lifecycle and its recovery ladder are a pure machine; this class carries
        # out its actions (bridged/core/lifecycle.py).
        self.lifecycle = Lifecycle(self._lifecycle_settings())
        self._lifecycle_timer: IDelayedCall | None = None
        self._stopping = False

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        self._stopping = False
        self._open_serial()

    def stop(self) -> None:
        """Close the port; no reopen afterwards."""
        self._stopping = True
        if self._reopen_call is not None and self._reopen_call.active():
            self._reopen_call.cancel()
        if self._port is not None:
            self._port.loseConnection()  # type: ignore[no-untyped-call]

    def reconfigure(self, sockets: Sequence[SocketSetup]) -> None:
        """New socket settings take effect at the next (re)initialisation."""
        self.sockets = list(sockets)

    def reopen(self, reason: str) -> None:
        """Close and reopen the serial port (new serial settings, say)."""
        log.info("reopening the serial port: {reason}", reason=reason)
        self._reopen_backoff.reset()
        if self._port is not None:
            self._port.loseConnection()  # type: ignore[no-untyped-call]
        elif self._reopen_call is not None and self._reopen_call.active():
            self._reopen_call.reset(0)

    async def configure_now(self, sockets: Sequence[SocketSetup]) -> None:
        """Write settings and certificates of (new or changed) sockets on a ready module."""
        qssl = self.qssl
        assert qssl is not None
        for setup in sockets:
            await self._configure(qssl, setup)

    async def _configure(self, qssl: QsslClient, setup: SocketSetup) -> None:
        # After a serial hang-up the module may still hold connections we no longer
        # know about: close them so each socket starts from a known state.
        await qssl.close(setup.connect_id)
        await qssl.configure_socket(setup.connect_id, setup.settings)
        for kind, path in setup.certificates:
            try:
                pem = _read_pem(path)
            except OSError as e:
                # One socket's file must not keep the module (every socket) from service.
                log.error(
                    "socket {id}: cannot read {kind} {path}: {error}; not uploaded, so this "
                    "socket's connections will fail until the file is fixed and bridged "
                    "reloaded",
                    id=setup.connect_id,
                    kind=kind,
                    path=path,
                    error=e.strerror or e,
                )
                continue
            await qssl.upload(setup.connect_id, kind, pem)

    @property
    def healthy(self) -> bool:
        """False while the recovery ladder is climbed, or the module does not answer."""
        engine = self.engine
        return self.lifecycle.healthy and (engine is None or engine.healthy)

    # ------------------------------------------------------------------ serial port

    def _open_serial(self) -> None:
        self._reopen_call = None
        if self._stopping:
            return
        engine = self.engine
        qssl = self.qssl
        assert engine is not None and qssl is not None
        # Settings that may have changed with a reload take effect on the reopen.
        engine.timing = replace(
            engine.timing,
            prompt_delay=self.options.prompt_delay,
            guard_time=self.options.guard_time,
            data_mode_quiet=self._data_mode_timeout(),
            line_rate=self.options.baudrate / 10,  # 8N1: a busy line extends a wait
        )
        qssl.command_timeout = self.options.command_timeout
        try:
            # Exclusive: a second opener would steal answers (bridged/shell/serial_access.py).
            self._port = ExclusiveSerialPort(
                tap(engine, self.options.trace, self.options.device),
                self.options.device,
                self.reactor,
                baudrate=self.options.baudrate,
            )
        except Exception as e:  # pyserial raises SerialException, OSError, ValueError
            delay = self._reopen_backoff.next_delay()
            log.warn(
                "cannot open serial device {device}: {error}; retrying in {delay:.1f} s",
                device=self.options.device,
                error=e,
                delay=delay,
            )
            self._reopen_call = self.clock.callLater(delay, self._open_serial)
            return
        self._reopen_backoff.reset()
        log.info(
            "serial device {device} open at {baud} baud",
            device=self.options.device,
            baud=self.options.baudrate,
        )
        # The engine outlives the port: each listener hears of it once, not per reopen.
        for listener in list(self.engine_observers):
            if listener not in self._engine_announced:
                self._engine_announced.append(listener)
                listener(engine, qssl)
        self.lifecycle.settings = self._lifecycle_settings()
        self._life(self.lifecycle.opened(self.clock.seconds()))

    def _data_mode_timeout(self) -> float:
        """How long the module may wait in data mode: the longest "timeout" setting."""
        return max((s.settings.timeout for s in self.sockets), default=90) + 2.0

    def _serial_lost(self, reason: Failure) -> None:
        self._port = None
        was = self.state
        self.state = ModemState.SERIAL_DOWN
        self._life(self.lifecycle.lost(self.clock.seconds()))
        if was is ModemState.READY:
            self._notify_lost("serial connection lost")
        if self.qssl is not None:
            self.qssl.fail_waiters(ATError("serial connection lost"))
        if self._stopping:
            return
        self.serial_reopens += 1
        delay = self._reopen_backoff.next_delay()
        log.warn(
            "serial connection lost ({why}); reopening in {delay:.1f} s",
            why=reason.getErrorMessage(),
            delay=delay,
        )
        self._reopen_call = self.clock.callLater(delay, self._open_serial)

    def _reopen_serial(self) -> None:
        if self._port is not None:
            log.warn("closing and reopening serial device {device}", device=self.options.device)
            self._port.loseConnection()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ module

    def _lifecycle_settings(self) -> LifecycleSettings:
        return LifecycleSettings(
            max_consecutive_timeouts=self.options.max_consecutive_timeouts,
            allow_reset=self.options.allow_reset,
            reset_grace=self.options.reset_grace,
        )

    def _life(self, actions: list[LifecycleAction]) -> None:
        """Carry out the lifecycle's actions: timers at once, steps on a fresh stack, so
        no step starts from inside the callback that reported what caused it."""
        for action in actions:
            if isinstance(action, LifecycleTimer):
                self._arm_lifecycle(action.at)
            else:
                self.clock.callLater(0, self._step, action)

    def _arm_lifecycle(self, at: float | None) -> None:
        if self._lifecycle_timer is not None and self._lifecycle_timer.active():
            self._lifecycle_timer.cancel()
        self._lifecycle_timer = None
        if at is not None:
            delay = max(0.0, at - self.clock.seconds())
            self._lifecycle_timer = self.clock.callLater(delay, self._lifecycle_deadline)

    def _lifecycle_deadline(self) -> None:
        self._lifecycle_timer = None
        self._life(self.lifecycle.timer_fired(self.clock.seconds()))

    def _step(self, action: LifecycleAction) -> None:
        if self._stopping:
            return
        if isinstance(action, Initialise):
            if action.generation == self.lifecycle.generation:
                self._initialise(action.generation)
        elif isinstance(action, Reopen):
            if self.state is ModemState.SERIAL_DOWN:
                return
            log.warn("recovery: {reason}; reopening the serial port", reason=action.reason)
            self._count_restart("serial_reopen")
            self._lose(action.reason)
            self._reopen_serial()
        elif isinstance(action, Reset):
            if self.state is ModemState.SERIAL_DOWN or self.engine is None:
                return
            log.warn("recovery: {reason}; resetting the module (AT+QRST=1)", reason=action.reason)
            self._count_restart("reset")
            self._lose(action.reason)
            d = self.engine.command("AT+QRST=1", timeout=2.0, priority=Priority.HIGH, urgent=True)
            d.addErrback(_ignore_at_error)

    def _initialise(self, generation: int) -> None:
        self.state = ModemState.INITIALISING
        d = defer.Deferred.fromCoroutine(self._initialise_module())

        def done(_: object) -> None:
            if generation != self.lifecycle.generation:
                return
            self._life(self.lifecycle.ready(generation, self.clock.seconds()))
            self.state = ModemState.READY
            log.info("module ready: {n} socket(s) configured", n=len(self.sockets))
            assert self.qssl is not None
            for listener in list(self.ready_observers):
                listener(self.qssl)

        def failed(failure: Failure) -> None:
            if generation != self.lifecycle.generation or self.state is ModemState.SERIAL_DOWN:
                return
            if isinstance(failure.value, WrongModule):
                log.critical("{why}", why=failure.getErrorMessage())
                for observer in list(self.fatal_observers):
                    observer(failure.getErrorMessage())
                return
            why = failure.getErrorMessage()
            log.error("module initialisation failed: {why}", why=why)
            self._life(self.lifecycle.init_failed(generation, self.clock.seconds(), why))

        d.addCallbacks(done, failed)

    async def _initialise_module(self) -> None:
        qssl = self.qssl
        assert qssl is not None
        await qssl.init_module(self.options.init_attempts)
        if self.options.profile is None:
            await self._identify(qssl)
        elif qssl.profile is not self.options.profile:
            qssl.set_profile(self.options.profile)  # a reload changed modem.model
        for setup in self.sockets:
            await self._configure(qssl, setup)

    async def _identify(self, qssl: QsslClient) -> None:
        """``modem.model: auto``: take the profile the module names; check the sockets."""
        found = await qssl.identify()
        if found is None:
            log.warn("module did not name a known model in ATI / AT+CGMM; assuming BC26")
            found = BC26
        else:
            log.info("module identified as {model} (modem.model: auto)", model=found.label)
        qssl.set_profile(found)
        missing = [s.connect_id for s in self.sockets if s.connect_id not in found.connect_ids]
        if missing:
            raise WrongModule(
                f"the module is a {found.label}, which has {found.connect_ids_text()}; "
                f"configured connect_id(s) {', '.join(map(str, missing))} cannot work: "
                "remove those sockets or set modem.model"
            )
        versions = sorted({s.settings.sslversion for s in self.sockets} - set(found.ssl_versions))
        if versions:
            raise WrongModule(
                f"the module is a {found.label}, which does not take sslversion "
                f"{', '.join(map(str, versions))} (it takes "
                f"{', '.join(map(str, found.ssl_versions))}): change ssl.sslversion"
            )

    def _boot_sign(self, text: str) -> None:
        if self.state is ModemState.SERIAL_DOWN:
            return
        expected = self.lifecycle.expecting_boot
        # The lifecycle first: the initialisation under way becomes stale before _lose
        # fails its command, so that failure does not count as a failed initialisation.
        actions = self.lifecycle.boot_sign(self.clock.seconds())
        if expected:
            log.info("module restarted ({text}); initialising", text=text)  # counted
            self._lose("reset")
        elif self.state is ModemState.INITIALISING:
            # Booting while we initialise: the port was opened as the module started (or
            # its boot banner waited in a buffer). Not a restart; start init over.
            log.info("module booted ({text}); initialising", text=text)
            self._lose("boot")
        else:
            log.warn("module rebooted ({text}); re-initialising", text=text)
            self._count_restart("reboot")
            self._lose("reboot")
        self._life(actions)

    def _observe_command(self, name: str, result: str, seconds: float) -> None:
        self._life(self.lifecycle.command_result(result, self.clock.seconds()))

    def _unresponsive(self) -> None:
        self._life(self.lifecycle.unresponsive(self.clock.seconds()))

    def _lose(self, reason: str) -> None:
        """Every socket on the module is gone: fail what is pending and tell listeners."""
        was_ready = self.state is ModemState.READY
        self.state = ModemState.INITIALISING
        if was_ready:
            self._notify_lost(reason)  # before the failures below, which are then stale
        if self.engine is not None:
            self.engine.fail_all(ATError(f"module restarting: {reason}"))
        if self.qssl is not None:
            self.qssl.fail_waiters(ATError(f"module restarting: {reason}"))

    def _notify_lost(self, reason: str) -> None:
        for listener in list(self.lost_observers):
            listener(reason)

    def _count_restart(self, reason: str) -> None:
        self.restarts[reason] = self.restarts.get(reason, 0) + 1


def _ignore_at_error(failure: Failure) -> None:
    failure.trap(ATError)  # type: ignore[no-untyped-call]


def _read_pem(path: Path) -> bytes:
    return path.read_bytes()
