"""The AT engine: the Twisted shell around the pure :class:`~bridged.core.at_session.ATSession`.

It feeds the session what the serial line delivered (with the time), the commands callers
queue and the timer it asked for, and carries out what the session returns: writes to the
transport, one ``IDelayedCall``, Deferreds fired or failed, listeners told. Every rule —
one command in flight, its phases, prompt handling, result correlation, resync — lives in
the session, where it is tested on a virtual clock without a reactor.

One engine lives as long as the daemon: a serial reopen hands it a new transport
(``connectionMade`` again) instead of building a new engine, so listeners subscribe once.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer, error
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from bridged.core.at_codec import CTRL_Z, Event, encode_command
from bridged.core.at_session import (
    Action,
    ATError,
    ATSession,
    Command,
    CommandError,
    CommandTimeout,
    Completed,
    DataPhase,
    Failed,
    Notify,
    Observed,
    Priority,
    ProtocolViolation,
    Response,
    Resynced,
    SerialLost,
    SessionTiming,
    SetTimer,
    Unresponsive,
    Write,
    command_name,
    info_prefix,
)
from bridged.core.read_pacing import ReadPacer, longest_recv_line
from bridged.shell.write_now import write_now

log = Logger(namespace="bridged.at")

CommandObserver = Callable[[str, str, float], None]  # (name, result, seconds)
EventObserver = Callable[[Event], None]


class ATEngine(Protocol):
    """Speaks to the module over whatever serial transport it is currently given."""

    def __init__(
        self,
        clock: IReactorTime,
        *,
        prompt_delay: float = 0.5,
        guard_time: float = 0.0,
        resync_attempts: int = 5,
        resync_timeout: float = 1.0,
        quiet_period: float = 0.2,
        quiet_max: float = 2.0,
        data_mode_quiet: float = 0.0,
        max_line: int = 4096,
    ) -> None:
        self.clock = clock
        self.session = ATSession(
            SessionTiming(
                prompt_delay=prompt_delay,
                guard_time=guard_time,
                resync_attempts=resync_attempts,
                resync_timeout=resync_timeout,
                quiet_period=quiet_period,
                quiet_max=max(quiet_max, quiet_period),
                data_mode_quiet=data_mode_quiet,
            ),
            max_line=max_line,
            log=log,
        )
        self.decoder = self.session.decoder
        self._deferreds: dict[Command, defer.Deferred[Response]] = {}
        self._timer: IDelayedCall | None = None
        # Observers: URCs, protocol errors and unsolicited lines; command outcomes.
        self.event_observers: list[EventObserver] = []
        # The one owner of an event type, called first and directly (a recv URC goes
        # straight to the QSSL layer's routing by connectID); event_observers still see
        # every event.
        self.event_routes: dict[type[Event], EventObserver] = {}
        self.command_observers: list[CommandObserver] = []
        self.lost_observers: list[Callable[[Failure], None]] = []
        self.unresponsive_observers: list[Callable[[], None]] = []
        self.resynced_observers: list[Callable[[], None]] = []
        self.bytes_in = 0
        self.bytes_out = 0
        self.reads = 0  # serial reads delivered (dataReceived calls)
        # Read pacing (bridged/core/read_pacing.py): while a recv URC's rest, or a
        # payload and the answer to it, are on the line the port is not read; one call
        # reads it all when it is in. A pacer each: they learn different delays.
        self.read_pacing = True
        self.read_pacer = ReadPacer()
        self.answer_pacer = ReadPacer()
        self._read_paused = False
        self._pause_call: IDelayedCall | None = None
        self._awaited = 0  # what the pause waits for, in bytes
        self._pacer = self.read_pacer  # the one that set the pause, and learns from it

    @property
    def data_mode_quiet(self) -> float:
        """How long resync stays silent when a probe could become payload."""
        return self.session.timing.data_mode_quiet

    @property
    def timing(self) -> SessionTiming:
        return self.session.timing

    @timing.setter
    def timing(self, timing: SessionTiming) -> None:
        self.session.timing = timing

    # ------------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        return self.session.connected

    @connected.setter
    def connected(self, value: object) -> None:
        pass  # Protocol.makeConnection sets it; the session's phase is the truth

    @property
    def healthy(self) -> bool:
        """False from a timeout until the module answers again."""
        return self.session.answering

    def command(
        self,
        line: str,
        *,
        timeout: float = 5.0,
        data: DataPhase | None = None,
        priority: Priority = Priority.NORMAL,
        result_timeout: float | None = None,
        check_info: bool = True,
        urgent: bool = False,
    ) -> defer.Deferred[Response]:
        """Queue one command. Fires with its :class:`Response`, or fails with an ATError.

        ``timeout`` bounds the wait for the final result (or for ``>``);
        ``result_timeout`` the wait for the result after a data phase (default
        ``timeout``): a send's follows its socket's ``timeout`` setting.
        ``check_info``: an information line that does not begin with the command's own
        name (``+CSQ:`` for ``AT+CSQ``) is another's answer and aborts this one.
        ``urgent``: written even while a resync probes a module that does not answer.
        """
        d: defer.Deferred[Response] = defer.Deferred()
        if not self.connected:
            encode_command(line)  # a malformed line is refused now, connected or not
            d.errback(SerialLost(f"{command_name(line)}: serial port is not open"))
            return d
        cmd = Command(
            line,
            timeout,
            data,
            priority,
            result_timeout,
            info_prefix(line) if check_info else None,
            urgent=urgent,
        )
        # The session refuses a malformed line (ValueError) before queueing it.
        actions = self.session.submit(cmd, self.clock.seconds())
        self._deferreds[cmd] = d
        self._apply(actions)
        return d

    @property
    def pending(self) -> int:
        """Commands queued or in flight."""
        return self.session.pending

    @property
    def busy(self) -> bool:
        return self.session.busy

    def fail_all(self, reason: ATError) -> None:
        """Fail every queued and in-flight command (module rebooted, engine stopping).

        A command left on the wire puts the session into resync first."""
        self._apply(self.session.fail_all(reason, self.clock.seconds()))

    def resync(self) -> None:
        """Start a resync now (after a reboot sign, say), ahead of queued commands."""
        self._apply(self.session.resync(self.clock.seconds()))

    # ------------------------------------------------------------------ Protocol

    def connectionMade(self) -> None:
        self._end_read_pause()
        self._apply(self.session.connection_made(self.clock.seconds()))

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        why = reason.getErrorMessage() if isinstance(reason, Failure) else str(reason)
        was_connected = self.connected
        self._cancel_timer()
        self._end_read_pause()
        self.transport = None
        # Listeners first: they learn the module is gone before its commands fail, so a
        # failure arriving afterwards is known to be stale.
        if was_connected:
            for listener in list(self.lost_observers):
                listener(reason)
        self._apply(self.session.connection_lost(SerialLost(f"serial connection lost: {why}")))

    def dataReceived(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.reads += 1
        self._apply(self.session.feed(data, self.clock.seconds()))
        if self.read_pacing and (awaiting := self.decoder.awaiting) and self._pause_call is None:
            self._pause_for(awaiting)

    # ------------------------------------------------------------------ read pacing

    def _pause_for(self, awaiting: int) -> None:
        """Leave the port unread while the ``awaiting`` bytes of a URC cross the line."""
        pacer = self.read_pacer
        pause = pacer.pause(
            awaiting, self.session.timing.line_rate, longest_recv_line(self.decoder.profile)
        )
        self._pause(pause, awaiting, pacer)

    def _pause_after_payload(self, sent: int, answer: int) -> None:
        """Leave the port unread while a payload crosses the line (the module is in data
        mode: it sends nothing) and the ``answer`` to it follows."""
        pacer, timing = self.answer_pacer, self.session.timing
        pause = pacer.pause_after_payload(sent, answer, timing.line_rate, timing.prompt_delay)
        self._pause(pause, answer, pacer)

    def _pause(self, pause: float, awaited: int, pacer: ReadPacer) -> None:
        transport = self.transport
        if pause <= 0 or transport is None:
            return
        self._awaited = awaited
        self._pacer = pacer
        if not self._read_paused:
            self._read_paused = True
            transport.pauseProducing()  # type: ignore[attr-defined]
        self._pause_call = self.clock.callLater(pause, self._read_after_pause)

    def _read_after_pause(self, early: bool = False) -> None:
        """The URC's rest should be in: read it now (dataReceived may pause again, for
        the next URC's rest); read on as bytes come if it did not. ``early``: before
        the pause's time, which teaches the pacer nothing."""
        self._pause_call = None
        transport = self.transport
        if transport is None:
            return
        # A read that reports the port lost (or a transport that cannot read on request)
        # leaves it to the reactor, which notices the loss as soon as reading resumes.
        before, awaited = self.bytes_in, self._awaited
        _read_now(transport)
        if not early:
            self._pacer.read_after_pause(awaited, self.bytes_in - before)
        if self._pause_call is None and self._read_paused and self.transport is transport:
            self._read_paused = False
            transport.resumeProducing()  # type: ignore[attr-defined]

    def _end_read_pause(self) -> None:
        """Forget a pause (the port closed or reopened: the new one is read at once)."""
        if self._pause_call is not None and self._pause_call.active():
            self._pause_call.cancel()
        self._pause_call = None
        self._read_paused = False

    # ------------------------------------------------------------------ actions

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Notify):  # first: a download is mostly recv URCs
                self._notify(action.event)
            elif isinstance(action, Write):
                if self.transport is not None:
                    self.bytes_out += len(action.data)
                    write_now(self.transport, action.data)
                    if action.answer and self.read_pacing and self._pause_call is None:
                        self._pause_after_payload(len(action.data), action.answer)
            elif isinstance(action, SetTimer):
                self._arm(action.at)
            elif isinstance(action, Completed):
                d = self._deferreds.pop(action.command, None)
                if d is not None:
                    d.callback(action.response)
            elif isinstance(action, Failed):
                d = self._deferreds.pop(action.command, None)
                if d is not None:
                    d.errback(action.error)
            elif isinstance(action, Observed):
                for observer in list(self.command_observers):
                    observer(action.name, action.result, action.seconds)
            elif isinstance(action, Unresponsive):
                for listener in list(self.unresponsive_observers):
                    listener()
            elif isinstance(action, Resynced):
                for resynced in list(self.resynced_observers):
                    resynced()

    def _notify(self, event: Event) -> None:
        owner = self.event_routes.get(type(event))
        if owner is not None:
            try:
                owner(event)
            except Exception:
                log.failure("event route failed on {event!r}", event=event)
        for observer in list(self.event_observers):
            try:
                observer(event)
            except Exception:
                log.failure("event observer failed on {event!r}", event=event)

    def _arm(self, at: float | None) -> None:
        if at is None:
            self._cancel_timer()
            return
        delay = max(0.0, at - self.clock.seconds())
        timer = self._timer
        if timer is not None and timer.active():
            # The session moves its one deadline several times a command: move the
            # pending call instead of cancelling it and scheduling a new one.
            timer.reset(delay)
        else:
            self._timer = self.clock.callLater(delay, self._fired)

    def _fired(self) -> None:
        self._timer = None
        if self._pause_call is not None:
            # The session decides on what has arrived: a paused line is read first.
            self._pause_call.cancel()
            self._read_after_pause(early=True)
        self._apply(self.session.timer_fired(self.clock.seconds()))

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def _read_now(transport: object) -> bool:
    """Have the serial port (or the trace tap's wrapper of it) read what it holds now,
    outside the reactor's loop: its protocol gets the bytes through ``dataReceived`` as
    usual. False when nothing was read that way: a transport that cannot (a test's), or a
    read that found the port lost (the reactor reports that once reading resumes)."""
    do_read = getattr(transport, "doRead", None)
    if do_read is None or not transport.connected or transport.disconnecting:  # type: ignore[attr-defined]
        return False
    return do_read() is None


__all__ = [
    "CTRL_Z",
    "ATEngine",
    "ATError",
    "CommandError",
    "CommandTimeout",
    "DataPhase",
    "Priority",
    "ProtocolViolation",
    "Response",
    "SerialLost",
    "command_name",
]
