"""The QSSL command layer: typed calls over the AT engine, and per-socket events.

``configure``/``upload``/``open``/``send``/``close`` turn into the module's QSSL commands
and wait for their asynchronous results (``+QSSLOPEN:``, ``+QSSLSEND:``, ``+QSSLCLOSE:``),
mapping error codes to names. ``recv`` and ``closed`` URCs go to the subscriber registered
for their connectID. Knows nothing of TCP clients.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bridged.core.at_codec import (
    CTRL_Z,
    BootSign,
    ClosedUrc,
    CloseResult,
    DataFormat,
    Event,
    OpenResult,
    ProtocolError,
    RecvUrc,
    SendResult,
    encode_payload,
)
from bridged.core.module_profile import BC26, ModuleProfile, detect_model
from bridged.core.qssl_commands import (
    CLOSE_RESULT_WAIT,
    INIT_COMMANDS,
    NETWORK_MARGIN,
    CertKind,
    ModuleRebooted,
    QsslError,
    RemoteClosed,
    SslSocketSettings,
    check_upload_count,
    close_line,
    configure_lines,
    error_name,
    open_line,
    send_answer_size,
    send_line,
    send_refusal,
    upload_line,
)
from bridged.shell.at_engine import (
    ATEngine,
    CommandError,
    CommandTimeout,
    DataPhase,
    Priority,
)

log = Logger(namespace="bridged.qssl")


def _discard(d: defer.Deferred[int]) -> None:
    """Give up on an async result: stop waiting and swallow whatever it becomes."""
    d.cancel()
    d.addErrback(lambda _: None)


class SocketSubscriber:
    """Receives one socket's URCs. Subclass or assign the callables."""

    def __init__(
        self,
        on_recv: Callable[[bytes], None],
        on_closed: Callable[[], None],
        on_recv_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.on_recv = on_recv
        self.on_closed = on_closed
        # Received data for this socket arrived corrupted and was dropped.
        self.on_recv_lost = on_recv_lost


T = TypeVar("T", OpenResult, SendResult, CloseResult)


class QsslClient:
    """Typed QSSL operations over one :class:`ATEngine`."""

    def __init__(
        self,
        engine: ATEngine,
        clock: IReactorTime,
        command_timeout: float = 5.0,
        profile: ModuleProfile = BC26,
    ):
        self.engine = engine
        self.clock = clock
        self.command_timeout = command_timeout
        self.subscribers: dict[int, SocketSubscriber] = {}
        self.boot_observers: list[Callable[[str], None]] = []
        self.set_profile(profile)
        self._waiters: dict[tuple[type, int], list[defer.Deferred[int]]] = defaultdict(list)
        # When each waiter gives up, (deadline, timeout, its key in _waiters). One timer
        # serves them all: set for the earliest deadline and left alone when a result
        # comes (it finds nothing due then), instead of a timer scheduled and cancelled per
        # send. Every way a waiter ends removes its entry here, or the timer would find a
        # deadline long past and fire again at once, for ever.
        self._deadlines: dict[defer.Deferred[int], tuple[float, float, tuple[type, int]]] = {}
        self._deadline_call: IDelayedCall | None = None
        # This layer owns the QSSL events: each type comes here directly, a recv URC (the
        # hot one) straight to its routing by connectID.
        engine.event_routes[RecvUrc] = self._on_recv
        for kind in (ClosedUrc, OpenResult, SendResult, CloseResult, ProtocolError, BootSign):
            engine.event_routes[kind] = self._on_event

    def set_profile(self, profile: ModuleProfile) -> None:
        """Speak to this module model: its ids in commands, its limits; the decoder too."""
        self.profile = profile
        self.context_id = profile.context_id
        self.open_timeouts: dict[int, float] = dict.fromkeys(profile.connect_ids, 90.0)
        self.engine.decoder.set_profile(profile)

    # ------------------------------------------------------------------ URC routing

    def subscribe(self, connect_id: int, subscriber: SocketSubscriber) -> None:
        """Route this socket's URCs (recv, closed, lost data) to ``subscriber``: the one
        subscription point, a table by connectID. The QSSL layer lives as long as the
        daemon (serial reopens keep it), so a subscription does too."""
        self.subscribers[connect_id] = subscriber

    # ------------------------------------------------------------------ module

    async def identify(self) -> ModuleProfile | None:
        """Which built-in profile the module names in ``ATI`` (else ``AT+CGMM``)."""
        for command in ("ATI", "AT+CGMM"):
            try:
                response = await self.engine.command(
                    command, timeout=self.command_timeout, priority=Priority.HIGH
                )
            except CommandError:
                continue
            found = detect_model("\n".join(response.lines))
            if found is not None:
                return found
        return None

    async def init_module(self, attempts: int = 10) -> None:
        """Bring a freshly opened or rebooted module to a known state."""
        for attempt in range(1, attempts + 1):
            try:
                await self.engine.command("AT", timeout=1.0, priority=Priority.HIGH)
                break
            except CommandTimeout:
                if attempt == attempts:
                    raise
            except CommandError:
                if attempt == attempts:
                    raise
        for line in INIT_COMMANDS:
            await self._command(line, priority=Priority.HIGH)

    async def configure_socket(self, connect_id: int, settings: SslSocketSettings) -> None:
        """Write every QSSLCFG setting of one socket (they are lost on reboot and wake)."""
        for line in configure_lines(self.context_id, connect_id, settings):
            await self._command(line, priority=Priority.HIGH)
        self.engine.decoder.set_recv_format(connect_id, settings.dataformat.recv)
        self.open_timeouts[connect_id] = settings.timeout + NETWORK_MARGIN

    async def upload(self, connect_id: int, kind: CertKind, pem: bytes) -> None:
        """Upload a certificate or key and check the module counted every byte."""
        response = await self.engine.command(
            upload_line(self.context_id, connect_id, kind, pem),
            timeout=self.command_timeout + len(pem) / 500,
            data=DataPhase(pem, terminator=CTRL_Z, redact=True),
            priority=Priority.HIGH,
        )
        check_upload_count(response.lines, self.context_id, connect_id, kind, len(pem))

    # ------------------------------------------------------------------ sockets

    async def open(self, connect_id: int, host: str, port: int) -> None:
        """Open an SSL connection; raises :class:`QsslError` with the module's code."""
        # Sends of the socket's last connection still awaiting a result (pipelined sends
        # behind one that failed) would take this connection's results: results carry no
        # more than the connectID. They are given up now; their stream ended already.
        stale = self._waiters.get((SendResult, connect_id), [])
        while stale:
            d = stale.pop(0)
            del self._deadlines[d]
            d.errback(
                QsslError(connect_id, "send", "stale", None, "socket reopened before its result")
            )
        result = self._expect(OpenResult, connect_id, self.open_timeouts[connect_id])
        try:
            await self._command(
                open_line(self.context_id, connect_id, host, port),
                priority=Priority.NORMAL,
            )
        except CommandError as e:
            _discard(result)
            raise QsslError(
                connect_id, "open", "other", None, f"module answered {e.final.text}"
            ) from e
        except BaseException:
            _discard(result)
            raise
        try:
            code = await result
        except defer.TimeoutError:
            raise QsslError(
                connect_id, "open", "timeout", None, "no +QSSLOPEN result in time"
            ) from None
        if code != 0:
            raise QsslError(connect_id, "open", error_name(code), code)

    def send(
        self, connect_id: int, payload: bytes, data_format: DataFormat
    ) -> tuple[defer.Deferred[None], defer.Deferred[None]]:
        """Send one fixed-length chunk.

        Returns two Deferreds: *accepted* fires at ``OK`` (the serial line is free for the
        next command), *confirmed* at ``+QSSLSEND: 1,<id>,0``. Either fails on error; with
        :class:`SendRefused` if the module refused the command before ``>``. Results are
        matched to sends in order, so several sends of a socket may await theirs.
        """
        limit = self.profile.max_send(data_format is DataFormat.HEX)
        if not 1 <= len(payload) <= limit:
            raise ValueError(f"chunk of {len(payload)} bytes outside 1..{limit}")
        result = self._expect(SendResult, connect_id, self.open_timeouts[connect_id])
        # The OK after the data may take as long as the socket's "timeout" setting plus
        # network delay (the note): waiting a fixed few seconds would time out a send the
        # module still answers, and its late OK would meet the next command.
        accepted = self.engine.command(
            send_line(self.context_id, connect_id, len(payload)),
            timeout=self.command_timeout,
            data=DataPhase(
                encode_payload(payload, data_format),
                counted=data_format is DataFormat.TEXT,
                answer=send_answer_size(self.context_id, connect_id),
            ),
            result_timeout=self.open_timeouts[connect_id],
        )

        def refused(failure: Failure) -> Failure:
            # No +QSSLSEND follows an ERROR: the confirmation fails with the same reason.
            self._forget(SendResult, connect_id, result)
            refusal = send_refusal(connect_id, failure.value)
            if refusal is not None:
                failure = Failure(refusal)  # type: ignore[no-untyped-call]
            if not result.called:
                result.errback(failure)
            return failure

        accepted_d: defer.Deferred[None] = accepted.addCallbacks(lambda _: None, refused)

        def check(code: int) -> None:
            if code != 0:
                raise QsslError(connect_id, "send", error_name(code), code)

        def timed_out(failure: Failure) -> None:
            failure.trap(defer.TimeoutError)  # type: ignore[no-untyped-call]
            raise QsslError(connect_id, "send", "timeout", None, "no +QSSLSEND result in time")

        # One step for both (a code check's own QsslError passes timed_out's trap anyway).
        confirmed: defer.Deferred[None] = result.addCallbacks(check, timed_out)
        return accepted_d, confirmed

    async def close(self, connect_id: int) -> None:
        """Close a socket. A module that answers OK without ``+QSSLCLOSE:`` is tolerated."""
        result = self._expect(CloseResult, connect_id, CLOSE_RESULT_WAIT)
        try:
            await self._command(close_line(self.context_id, connect_id), priority=Priority.HIGH)
        except CommandError as e:
            _discard(result)
            # Already closed (by the network, say): the socket is closed either way.
            log.info(
                "socket {id}: close answered {final}; treating it as closed",
                id=connect_id,
                final=e.final.text,
            )
            return
        except BaseException:
            _discard(result)
            raise
        try:
            code = await result
        except defer.TimeoutError:
            return
        if code != 0:
            log.info(
                "socket {id}: close result {code} ({name})",
                id=connect_id,
                code=code,
                name=error_name(code),
            )

    # ------------------------------------------------------------------ internals

    async def _command(self, line: str, priority: Priority = Priority.NORMAL) -> None:
        await self.engine.command(line, timeout=self.command_timeout, priority=priority)

    def _expect(self, kind: type[T], connect_id: int, timeout: float) -> defer.Deferred[int]:
        d: defer.Deferred[int] = defer.Deferred(lambda d: self._forget(kind, connect_id, d))
        self._waiters[(kind, connect_id)].append(d)
        deadline = self.clock.seconds() + timeout
        self._deadlines[d] = (deadline, timeout, (kind, connect_id))
        self._arm_deadline(deadline)
        return d

    def _arm_deadline(self, deadline: float) -> None:
        call = self._deadline_call
        delay = max(0.0, deadline - self.clock.seconds())
        if call is None or not call.active():
            self._deadline_call = self.clock.callLater(delay, self._give_up)
        elif call.getTime() > deadline:
            call.reset(delay)

    def _give_up(self) -> None:
        """The earliest deadline has come: fail every waiter due (as ``addTimeout``
        would: ``defer.TimeoutError``), then wait for the next deadline, if any."""
        self._deadline_call = None
        now = self.clock.seconds()
        due = [(d, entry) for d, entry in self._deadlines.items() if entry[0] <= now]
        for d, (_, timeout, key) in due:
            if self._deadlines.pop(d, None) is None:
                continue  # settled meanwhile, by an errback of one before it
            waiters = self._waiters.get(key, [])
            if d in waiters:
                waiters.remove(d)
            d.errback(defer.TimeoutError(timeout, "Deferred"))
        if self._deadlines:
            self._arm_deadline(min(entry[0] for entry in self._deadlines.values()))

    def _forget(self, kind: type, connect_id: int, d: defer.Deferred[int]) -> None:
        self._deadlines.pop(d, None)
        waiters = self._waiters.get((kind, connect_id), [])
        if d in waiters:
            waiters.remove(d)

    def _resolve(self, kind: type, connect_id: int, code: int) -> None:
        waiters = self._waiters.get((kind, connect_id))
        if not waiters:
            log.info(
                "unexpected {kind} for socket {id}: {code}",
                kind=kind.__name__,
                id=connect_id,
                code=code,
            )
            return
        d = waiters.pop(0)
        del self._deadlines[d]
        d.callback(code)

    def fail_waiters(self, reason: Exception, connect_id: int | None = None) -> None:
        """Fail pending async results (all, or one socket's)."""
        for (kind, cid), waiters in list(self._waiters.items()):
            if connect_id is not None and cid != connect_id:
                continue
            if connect_id is not None and kind is OpenResult:
                continue  # a "closed" URC does not answer a pending open
            while waiters:
                d = waiters.pop(0)
                del self._deadlines[d]
                d.errback(reason)

    def _on_recv(self, event: Event) -> None:
        assert isinstance(event, RecvUrc)
        subscriber = self.subscribers.get(event.connect_id)
        if subscriber is None:
            log.warn(
                "recv of {n} bytes on unmanaged socket {id} dropped",
                n=len(event.data),
                id=event.connect_id,
            )
        else:
            subscriber.on_recv(event.data)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, ClosedUrc):
            # The subscriber hears of the close before a pending send fails because of it,
            # so it never answers that failure with an AT+QSSLCLOSE the note forbids.
            subscriber = self.subscribers.get(event.connect_id)
            if subscriber is not None:
                subscriber.on_closed()
            self.fail_waiters(
                RemoteClosed(f"socket {event.connect_id} closed by the module"), event.connect_id
            )
        elif isinstance(event, OpenResult | SendResult | CloseResult):
            self._resolve(type(event), event.connect_id, event.err)
        elif isinstance(event, ProtocolError):
            # Every stream the damage could have touched is broken (docs/bad-input.md).
            for connect_id in event.sockets:
                subscriber = self.subscribers.get(connect_id)
                if subscriber is not None and subscriber.on_recv_lost is not None:
                    subscriber.on_recv_lost(f"{event.kind}: {event.detail}")
        elif isinstance(event, BootSign):
            self.fail_waiters(ModuleRebooted(f"module rebooted ({event.text})"))
            for observer in list(self.boot_observers):
                observer(event.text)
