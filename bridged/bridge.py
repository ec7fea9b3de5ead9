"""Twisted glue around each socket's channel, and the send pump that shares the line.

``SocketBridge`` owns one :class:`~bridged.channel.Channel`: it feeds it the events of its
TCP client, of the module (recv / closed URCs, command results) and of its timers, and
carries out the actions the channel returns. ``SendPump`` asks the
:class:`~bridged.scheduler.Scheduler` whose turn it is and runs one ``AT+QSSLSEND`` at a
time. Counters live here as plain numbers; the metrics module reads them at scrape time.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bridged.at_codec import DataFormat
from bridged.at_engine import ATError
from bridged.channel import (
    Action,
    CancelTimer,
    Channel,
    ChannelState,
    CloseClient,
    CloseSocket,
    CountRxDropped,
    CountTxLost,
    DataReady,
    DeliverToClient,
    Ignored,
    OpenSocket,
    PauseClient,
    QueueLimits,
    ReconnectPolicy,
    RefuseClient,
    ResumeClient,
    StartTimer,
    StateChanged,
)
from bridged.config import SocketConfig
from bridged.listener import ClientConnection, ClientFactory
from bridged.qssl import QsslClient, QsslError, SocketListener
from bridged.scheduler import Scheduler

log = Logger(namespace="bridged.socket")


@dataclass
class SocketStats:
    """Per-socket counters (monotonic) for metrics and tests."""

    tx_bytes: int = 0  # payload bytes confirmed sent by +QSSLSEND: ...,0
    rx_bytes: int = 0  # payload bytes received in recv URCs
    rx_dropped_bytes: int = 0
    tx_lost_bytes: int = 0  # client bytes never confirmed, their client closed
    remote_closes: int = 0
    opens: Counter[str] = field(default_factory=Counter)  # by result name
    client_connections: Counter[str] = field(default_factory=Counter)  # by outcome
    send_failures: int = 0
    rx_corrupted_urcs: int = 0  # recv URCs for this socket that arrived garbled
    # For `bridged status` (wall-clock seconds from the reactor):
    state_since: float | None = None  # when the SSL connection entered its current state
    client_since: float | None = None  # when the attached client connected
    last_error: str | None = None  # the last open or send failure
    last_error_at: float | None = None

    def error(self, text: str, when: float) -> None:
        self.last_error, self.last_error_at = text, when


class SocketBridge:
    """One SSL socket exposed as one local TCP listener."""

    def __init__(
        self,
        config: SocketConfig,
        reactor: IReactorTCP,
        clock: IReactorTime,
        data_ready: Callable[[], None],
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.connect_id = config.connect_id
        self.reactor = reactor
        self.clock = clock
        # The send format: how chunks are encoded and how large they may be.
        send = config.ssl.dataformat.send
        self.data_format = DataFormat.HEX if send == "hex" else DataFormat.TEXT
        self.channel = Channel(
            config.connect_id,
            config.mode,
            limits=QueueLimits(
                send_max_bytes=config.queue.send_max_bytes,
                recv_buffer_bytes=config.queue.recv_buffer_bytes,
            ),
            reconnect=ReconnectPolicy(
                initial=config.reconnect.initial,
                max=config.reconnect.max,
                jitter=config.reconnect.jitter,
                open_retries=config.reconnect.open_retries,
            ),
            max_chunk=self.data_format.max_send,
            rng=rng or random.Random(),
        )
        self.stats = SocketStats(state_since=clock.seconds())
        self.qssl: QsslClient | None = None
        self.client: ClientConnection | None = None
        self.port: IListeningPort | None = None
        self._timers: dict[str, IDelayedCall] = {}
        self._data_ready = data_ready
        self._refusing = False

    @property
    def label(self) -> str:
        return f"socket {self.connect_id} ({self.config.listen} -> {self.config.remote})"

    # ------------------------------------------------------------------ listening

    def listen(self) -> None:
        factory = ClientFactory(self, stall_limit=max(self.config.queue.recv_buffer_bytes, 1))
        host = self.config.listen.host
        self.port = self.reactor.listenTCP(
            self.config.listen.port,
            factory,  # type: ignore[arg-type]
            interface=host.strip("[]"),
        )
        log.info("{label}: listening", label=self.label)

    def stop_listening(self) -> defer.Deferred[None]:
        port, self.port = self.port, None
        if port is None:
            return defer.succeed(None)
        result = port.stopListening()
        return result if isinstance(result, defer.Deferred) else defer.succeed(None)

    # ------------------------------------------------------------------ module side

    def attach(self, qssl: QsslClient) -> None:
        """A new serial connection: subscribe to this socket's URCs on it."""
        self.qssl = qssl
        qssl.listeners[self.connect_id] = SocketListener(
            self._on_recv, self._on_remote_closed, self._on_recv_lost
        )

    def module_ready(self) -> None:
        if self.qssl is not None:
            # Chunks as large as this module takes (its profile, known once identified).
            self.channel.set_max_chunk(
                self.qssl.profile.max_send(self.data_format is DataFormat.HEX)
            )
        self._apply(self.channel.module_ready())

    def module_lost(self, reason: str) -> None:
        self._apply(self.channel.module_lost(reason))

    def _on_recv(self, data: bytes) -> None:
        self.stats.rx_bytes += len(data)
        self._apply(self.channel.recv(data))

    def _on_recv_lost(self, reason: str) -> None:
        # Bytes the module received for this socket were garbled on the serial line. Only
        # counted: disconnecting the client alone is not enough (a persistent socket's next
        # client would inherit the rest of the broken stream); see docs/bad-input.md.
        self.stats.rx_corrupted_urcs += 1
        log.warn(
            "{label}: received data lost on the serial line ({reason})",
            label=self.label,
            reason=reason,
        )

    def _on_remote_closed(self) -> None:
        self.stats.remote_closes += 1
        log.info("{label}: closed by the network", label=self.label)
        self._apply(self.channel.remote_closed())

    # ------------------------------------------------------------------ client side

    def client_connected(self, client: ClientConnection) -> bool:
        self._refusing = False
        previous = self.client
        self.client = client
        actions = self.channel.client_connected()
        refused = any(isinstance(a, RefuseClient) for a in actions)
        if refused:
            self.client = previous
            self.stats.client_connections["refused"] += 1
            log.warn(
                "{label}: refused client {peer}: {reason}",
                label=self.label,
                peer=client.peer,
                reason=next(a.reason for a in actions if isinstance(a, RefuseClient)),
            )
        else:
            self.stats.client_connections["accepted"] += 1
            self.stats.client_since = self.clock.seconds()
            log.info("{label}: client {peer} connected", label=self.label, peer=client.peer)
        self._apply([a for a in actions if not isinstance(a, RefuseClient)])
        return not refused

    def client_data(self, client: ClientConnection, data: bytes) -> None:
        if client is self.client:
            self._apply(self.channel.client_data(data))

    def client_closed(self, client: ClientConnection, reason: str) -> None:
        if client is not self.client:
            return
        self.client = None
        log.info(
            "{label}: client {peer} left ({reason})",
            label=self.label,
            peer=client.peer,
            reason=reason,
        )
        self._apply(self.channel.client_closed())

    def close_client(self, reason: str) -> None:
        """Used at shutdown: close the client as if the channel had said so."""
        if self.client is not None:
            client, self.client = self.client, None
            client.close()
            log.info("{label}: closed client ({reason})", label=self.label, reason=reason)

    # ------------------------------------------------------------------ send path

    def take_chunk(self) -> bytes:
        return self.channel.next_chunk()

    def send_done(self, n: int) -> None:
        actions = self.channel.send_done(n)
        if not all(isinstance(a, Ignored) for a in actions) or not actions:
            self.stats.tx_bytes += n  # confirmed, and the channel still counted them as ours
        self._apply(actions)

    def send_failed(self, reason: str) -> None:
        self.stats.send_failures += 1
        self.stats.error(f"send failed: {reason}", self.clock.seconds())
        log.warn("{label}: send failed: {reason}", label=self.label, reason=reason)
        self._apply(self.channel.send_failed(reason))

    # ------------------------------------------------------------------ actions

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            self._do(action)

    def _do(self, action: Action) -> None:
        if isinstance(action, DeliverToClient):
            if self.client is not None:
                self.client.write(action.data)
        elif isinstance(action, DataReady):
            self._data_ready()
        elif isinstance(action, PauseClient):
            if self.client is not None:
                self.client.pause_reading()
        elif isinstance(action, ResumeClient):
            if self.client is not None:
                self.client.resume_reading()
        elif isinstance(action, OpenSocket):
            self._open()
        elif isinstance(action, CloseSocket):
            self._close()
        elif isinstance(action, CloseClient):
            if self.client is not None:
                client, self.client = self.client, None
                log.info(
                    "{label}: closing client {peer}: {reason}",
                    label=self.label,
                    peer=client.peer,
                    reason=action.reason,
                )
                client.close()
        elif isinstance(action, StartTimer):
            self._cancel_timer(action.name)
            self._timers[action.name] = self.clock.callLater(
                action.delay, self._timer_fired, action.name
            )
        elif isinstance(action, CancelTimer):
            self._cancel_timer(action.name)
        elif isinstance(action, CountRxDropped):
            self.stats.rx_dropped_bytes += action.n
            log.warn(
                "{label}: dropped {n} received bytes: {reason}",
                label=self.label,
                n=action.n,
                reason=action.reason,
            )
        elif isinstance(action, CountTxLost):
            self.stats.tx_lost_bytes += action.n
            log.warn(
                "{label}: {n} client bytes not sent: {reason}",
                label=self.label,
                n=action.n,
                reason=action.reason,
            )
        elif isinstance(action, StateChanged):
            self.stats.state_since = self.clock.seconds()
            log.info(
                "{label}: {old} -> {new} ({reason})",
                label=self.label,
                old=action.old.name.lower(),
                new=action.new.name.lower(),
                reason=action.reason,
            )
        elif isinstance(action, Ignored):
            log.debug(
                "{label}: ignored {event}: {reason}",
                label=self.label,
                event=action.event,
                reason=action.reason,
            )
        elif isinstance(action, RefuseClient):  # handled in client_connected
            pass

    def _timer_fired(self, name: str) -> None:
        self._timers.pop(name, None)
        self._apply(self.channel.timer_fired(name))

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def cancel_timers(self) -> None:
        for name in list(self._timers):
            self._cancel_timer(name)

    def _open(self) -> None:
        qssl = self.qssl
        if qssl is None:
            self._apply(self.channel.open_error("serial port not open"))
            return
        remote = self.config.remote
        d = defer.Deferred.fromCoroutine(qssl.open(self.connect_id, remote.host, remote.port))

        def opened(_: object) -> None:
            self.stats.opens["ok"] += 1  # logged by the state change: opening -> open
            self._apply(self.channel.open_result(0))

        def failed(failure: Failure) -> None:
            error = failure.value
            # A QsslError says "socket N: open failed: <why> (<code>)" itself.
            what = str(error) if isinstance(error, QsslError) else f"open failed: {error}"
            self.stats.error(what, self.clock.seconds())
            if isinstance(error, QsslError):
                self.stats.opens[error.name] += 1
                log.warn("{label}: {error}", label=self.label, error=error)
                if error.code is not None:
                    self._apply(self.channel.open_result(error.code))
                else:
                    # No result (a timeout, or ERROR): the module may still finish the
                    # open later. Close it first, so the retry does not meet -6.
                    closing = defer.Deferred.fromCoroutine(qssl.close(self.connect_id))
                    closing.addErrback(lambda _: None)
                    self._apply(self.channel.open_error(str(error)))
            elif isinstance(error, ATError):
                self._apply(self.channel.open_error(str(error)))
            else:
                log.failure("{label}: open crashed", failure, label=self.label)
                self._apply(self.channel.open_error(repr(error)))

        d.addCallbacks(opened, failed)

    def _close(self) -> None:
        qssl = self.qssl
        if qssl is None:
            self._apply(self.channel.close_done())
            return
        d = defer.Deferred.fromCoroutine(qssl.close(self.connect_id))

        def closed(result: object) -> None:
            if isinstance(result, Failure):
                log.info("{label}: close: {why}", label=self.label, why=result.getErrorMessage())
            self._apply(self.channel.close_done())

        d.addBoth(closed)

    @property
    def state(self) -> ChannelState:
        return self.channel.state


class SendPump:
    """Runs one AT+QSSLSEND at a time, taking turns among sockets with data."""

    def __init__(self, bridges: list[SocketBridge]) -> None:
        self.bridges = {b.connect_id: b for b in bridges}
        self.scheduler: Scheduler[Channel] = Scheduler([b.channel for b in bridges])
        self.qssl: QsslClient | None = None
        self.chunks_sent = 0

    def kick(self) -> None:
        qssl = self.qssl
        if qssl is None or self.scheduler.busy:
            return
        channel = self.scheduler.pick()
        if channel is None:
            return
        bridge = self.bridges[channel.connect_id]
        chunk = bridge.take_chunk()
        try:
            accepted, confirmed = qssl.send(bridge.connect_id, chunk, bridge.data_format)
        except Exception as e:  # the channel handed out a chunk it should not have
            self.scheduler.done()
            bridge.send_failed(f"cannot send: {e}")
            return
        self.chunks_sent += 1

        def line_free(_: object) -> None:
            self.scheduler.done()
            self.kick()

        def sent(_: object) -> None:
            bridge.send_done(len(chunk))

        def not_sent(failure: Failure) -> None:
            bridge.send_failed(failure.getErrorMessage())

        accepted.addBoth(line_free)
        confirmed.addCallbacks(sent, not_sent)
