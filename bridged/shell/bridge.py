"""Twisted glue around each socket's channel.

``SocketBridge`` owns one :class:`~bridged.core.channel.Channel`: it feeds it the events of its
TCP client, of the module (recv / closed URCs, command results) and of its timers, and
carries out the actions the channel returns. The send pump that shares the line among the
sockets is :mod:`bridged.shell.send_pump`. Counters live here as plain numbers; the metrics
module reads them at scrape time.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import ParamSpec

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bridged.config import SocketConfig
from bridged.core.at_codec import DataFormat
from bridged.core.channel import (
    Action,
    AttachHeldClient,
    CancelTimer,
    Channel,
    ChannelState,
    CloseClient,
    CloseSocket,
    CountRxDropped,
    CountTxLost,
    CountTxSent,
    DataReady,
    DeliverToClient,
    HoldClient,
    Ignored,
    OpenSocket,
    PauseClient,
    RefuseClient,
    ResumeClient,
    StartTimer,
    StateChanged,
    StreamBroken,
)
from bridged.core.qssl_commands import QsslError
from bridged.ops.socket_stats import SocketStats
from bridged.shell.at_engine import ATError
from bridged.shell.listener import ClientConnection, ClientFactory
from bridged.shell.qssl import QsslClient, SocketSubscriber

log = Logger(namespace="bridged.socket")

_P = ParamSpec("_P")


class SocketBridge:
    """One SSL socket exposed as one local TCP listener. Carries out what its channel
    says; decides nothing itself."""

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
        self.data_format = config.ssl.dataformat.send
        self.channel = Channel(
            config.connect_id,
            config.mode,
            limits=config.queue,
            reconnect=config.reconnect,
            max_chunk=self.data_format.max_send,
            rng=rng or random.Random(),
            timeouts=config.timeouts,
        )
        self.stats = SocketStats(state_since=clock.seconds())
        self.qssl: QsslClient | None = None
        self.client: ClientConnection | None = None
        self.held: ClientConnection | None = None  # a client waiting for the attached one
        self.port: IListeningPort | None = None
        self._timers: dict[str, IDelayedCall] = {}
        self._data_ready = data_ready
        self._inbox: deque[Callable[[], list[Action]]] = deque()
        self._applying = False
        self._closed_waiters: list[defer.Deferred[None]] = []

    @property
    def label(self) -> str:
        return f"socket {self.connect_id} ({self.config.listen} -> {self.config.remote})"

    # ------------------------------------------------------------------ listening

    def listen(self) -> None:
        factory = ClientFactory(
            self,
            stall_limit=max(self.config.queue.recv_buffer_bytes, 1),
            clock=self.clock,
        )
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
        qssl.subscribe(
            self.connect_id,
            SocketSubscriber(self._on_recv, self._on_remote_closed, self._on_recv_lost),
        )

    def detach(self) -> None:
        """Stop hearing this socket's URCs (it was retired)."""
        qssl = self.qssl
        if qssl is not None and qssl.subscribers.get(self.connect_id) is not None:
            subscriber = qssl.subscribers[self.connect_id]
            if getattr(subscriber.on_recv, "__self__", None) is self:
                del qssl.subscribers[self.connect_id]

    def module_ready(self) -> None:
        if self.qssl is not None:
            # Chunks as large as this module takes (its profile, known once identified).
            self.channel.set_max_chunk(
                self.qssl.profile.max_send(self.data_format is DataFormat.HEX)
            )
        self._feed(self.channel.module_ready)

    def module_lost(self, reason: str) -> None:
        self._feed(lambda: self.channel.module_lost(reason))

    def retire(self, reason: str) -> defer.Deferred[None]:
        """Take the socket out of service through its channel; fires once its SSL
        connection is closed (a new socket on the same connectID may open then)."""
        done = self.when_closed()
        self._feed(lambda: self.channel.retire(reason))
        self._notify_if_closed()
        return done

    def when_closed(self) -> defer.Deferred[None]:
        """Fires once this retired socket's SSL connection is closed."""
        done: defer.Deferred[None] = defer.Deferred()
        self._closed_waiters.append(done)
        self._notify_if_closed()
        return done

    def _on_recv(self, data: bytes) -> None:
        self.stats.rx_bytes += len(data)
        self._feed(self.channel.recv, data)

    def _on_recv_lost(self, reason: str) -> None:
        # Data that was (or may have been) this socket's was damaged on the serial line:
        # the channel ends the stream rather than let its client read past a hole.
        log.warn(
            "{label}: received data damaged on the serial line ({reason})",
            label=self.label,
            reason=reason,
        )
        self._feed(lambda: self.channel.recv_damaged(reason))

    def _on_remote_closed(self) -> None:
        self.stats.remote_closes += 1
        log.info("{label}: closed by the network", label=self.label)
        self._feed(self.channel.remote_closed)

    # ------------------------------------------------------------------ client side

    def client_connected(self, client: ClientConnection) -> bool:
        old = self.client
        if old is not None and old.reset_while_paused():
            # The attached client aborted while we were not reading it (its bytes wait
            # for the module): it is gone, not busy. Its connection is closed now, so the
            # new client is held only until that close is processed, never refused for
            # the dead one (its unread bytes died with its RST, as for any TCP peer).
            log.info(
                "{label}: client {peer} reset its connection while paused: gone",
                label=self.label,
                peer=old.peer,
            )
            old.abort()
        actions = self.channel.client_connected()
        refusal = next((a for a in actions if isinstance(a, RefuseClient)), None)
        if refusal is not None:
            self._count_refusal(client, refusal.reason)
            return False
        if any(isinstance(a, HoldClient) for a in actions):
            self.held = client
            client.pause_reading()
            log.info(
                "{label}: client {peer} waits for the previous one to leave",
                label=self.label,
                peer=client.peer,
            )
            self._apply(actions)
            return True
        # A half-closed client yielding its place is closed first (CloseClient); the
        # actions after it are the new client's.
        yielded = max(
            (i + 1 for i, a in enumerate(actions) if isinstance(a, CloseClient)), default=0
        )
        self._apply(actions[:yielded])
        self._set_client(client)
        self._apply(actions[yielded:])
        return True

    def client_data(self, client: ClientConnection, data: bytes) -> None:
        if client is self.client:
            self._feed(self.channel.client_data, data)

    def client_eof(self, client: ClientConnection) -> None:
        if client is self.client:
            log.info("{label}: client {peer} half-closed", label=self.label, peer=client.peer)
            self._feed(self.channel.client_eof)

    def client_closed(self, client: ClientConnection, reason: str) -> None:
        if client is self.held:
            self.held = None
            self._feed(self.channel.held_client_left)
            return
        if client is not self.client:
            return
        self.client = None
        log.info(
            "{label}: client {peer} left ({reason})",
            label=self.label,
            peer=client.peer,
            reason=reason,
        )
        self._feed(self.channel.client_closed)

    def close_client(self, reason: str) -> None:
        """Used at shutdown: close the clients as if the channel had said so."""
        for client in (self.client, self.held):
            if client is not None:
                client.close()
                log.info("{label}: closed client ({reason})", label=self.label, reason=reason)
        self.client = self.held = None

    def _set_client(self, client: ClientConnection) -> None:
        self.client = client
        self.stats.client_since = self.clock.seconds()
        self.stats.client_connections["accepted"] += 1
        log.info("{label}: client {peer} connected", label=self.label, peer=client.peer)

    def _count_refusal(self, client: ClientConnection, reason: str) -> None:
        self.stats.client_connections["refused"] += 1
        log.warn(
            "{label}: refused client {peer}: {reason}",
            label=self.label,
            peer=client.peer,
            reason=reason,
        )

    # ------------------------------------------------------------------ send path

    def send_done(self, n: int, epoch: int) -> None:
        self._feed(lambda: self.channel.send_done(n, epoch))

    def send_refused(self, chunk: bytes, epoch: int) -> None:
        """The module took none of ``chunk`` (a refused pipelined send): it goes back."""
        self._feed(lambda: self.channel.send_refused(chunk, epoch))

    def send_failed(self, reason: str, epoch: int) -> None:
        self.stats.send_failures += 1
        self.stats.error(f"send failed: {reason}", self.clock.seconds())
        log.warn("{label}: send failed: {reason}", label=self.label, reason=reason)
        self._feed(lambda: self.channel.send_failed(reason, epoch))

    # ------------------------------------------------------------------ actions

    def _feed(self, event: Callable[_P, list[Action]], *args: _P.args, **kwargs: _P.kwargs) -> None:
        """Give the channel one input (``event(*args)``) and carry out its actions. An
        input caused while actions are being carried out (a synchronous result) waits its
        turn, so actions run in the order the channel returned them."""
        if self._applying:
            self._inbox.append(partial(event, *args, **kwargs))
            return
        self._applying = True
        try:
            self._apply(event(*args, **kwargs))
            while self._inbox:
                self._apply(self._inbox.popleft()())
        finally:
            self._applying = False

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            # The two actions of the byte paths first, here: a recv URC's bytes reach the
            # client, and a client's bytes the send pump, in few calls.
            if isinstance(action, DeliverToClient):
                if self.client is not None:
                    self.client.write(action.data)
            elif isinstance(action, DataReady):
                self._data_ready()
            else:
                self._do(action)

    def _error(self, text: str) -> None:
        self.stats.error(text, self.clock.seconds())

    def _do(self, action: Action) -> None:
        # Those of every confirmed send first.
        if isinstance(action, CountTxSent):
            self.stats.tx_bytes += action.n
        elif isinstance(action, StartTimer):
            timer = self._timers.get(action.name)
            if timer is not None and timer.active():
                # Restarted at every confirmed send (the send-stall timer) and every input
                # with traffic (idle): move the pending call, don't cancel and schedule.
                timer.reset(action.delay)
            else:
                self._timers[action.name] = self.clock.callLater(
                    action.delay, self._timer_fired, action.name
                )
        elif isinstance(action, CancelTimer):
            self._cancel_timer(action.name)
        elif isinstance(action, PauseClient):
            if self.client is not None:
                self.client.pause_reading()
        elif isinstance(action, ResumeClient):
            if self.client is not None:
                self.client.resume_reading()
        elif isinstance(action, OpenSocket):
            self._open(action.epoch)
        elif isinstance(action, CloseSocket):
            self._close(action.epoch)
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
        elif isinstance(action, AttachHeldClient):
            held, self.held = self.held, None
            if held is not None:
                self._set_client(held)
                held.resume_reading()
        elif isinstance(action, RefuseClient):
            # Only a held client is refused later; one just arriving is refused in
            # client_connected.
            held, self.held = self.held, None
            if held is not None:
                self._count_refusal(held, action.reason)
                held.close()
        elif isinstance(action, HoldClient):
            pass  # done in client_connected, which knows the connection
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
        elif isinstance(action, StreamBroken):
            self.stats.streams_broken[action.label] += 1
            self._error(f"{action.label}: {action.detail}")
            log.warn(
                "{label}: ending the connection ({why}: {detail})",
                label=self.label,
                why=action.label.replace("_", " "),
                detail=action.detail,
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
            if action.new is ChannelState.CLOSED:
                self._notify_if_closed()
        elif isinstance(action, Ignored):
            log.debug(
                "{label}: ignored {event}: {reason}",
                label=self.label,
                event=action.event,
                reason=action.reason,
            )

    def _notify_if_closed(self) -> None:
        if self.channel.state is ChannelState.CLOSED and self.channel.retired:
            self.cancel_timers()
            self.detach()
            waiters, self._closed_waiters = self._closed_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _timer_fired(self, name: str) -> None:
        self._timers.pop(name, None)
        self._feed(lambda: self.channel.timer_fired(name))

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def cancel_timers(self) -> None:
        for name in list(self._timers):
            self._cancel_timer(name)

    def _open(self, epoch: int) -> None:
        qssl = self.qssl
        if qssl is None:
            self._feed(lambda: self.channel.open_error("serial port not open", epoch))
            return
        remote = self.config.remote
        d = defer.Deferred.fromCoroutine(qssl.open(self.connect_id, remote.host, remote.port))

        def opened(_: object) -> None:
            self.stats.opens["ok"] += 1  # logged by the state change: opening -> open
            self._feed(lambda: self.channel.open_result(0, epoch))

        def failed(failure: Failure) -> None:
            error = failure.value
            # A QsslError says "socket N: open failed: <why> (<code>)" itself.
            what = str(error) if isinstance(error, QsslError) else f"open failed: {error}"
            self.stats.error(what, self.clock.seconds())
            if isinstance(error, QsslError):
                self.stats.opens[error.name] += 1
                log.warn("{label}: {error}", label=self.label, error=error)
                code = error.code
                if code is not None:
                    self._feed(lambda: self.channel.open_result(code, epoch))
                else:
                    self._feed(lambda: self.channel.open_error(str(error), epoch))
            elif isinstance(error, ATError):
                self._feed(lambda: self.channel.open_error(str(error), epoch))
            else:
                log.failure("{label}: open crashed", failure, label=self.label)
                self._feed(lambda: self.channel.open_error(repr(error), epoch))

        d.addCallbacks(opened, failed)

    def _close(self, epoch: int) -> None:
        qssl = self.qssl
        if qssl is None:
            self._feed(lambda: self.channel.close_done(epoch))
            return
        d = defer.Deferred.fromCoroutine(qssl.close(self.connect_id))

        def closed(result: object) -> None:
            if isinstance(result, Failure):
                log.info("{label}: close: {why}", label=self.label, why=result.getErrorMessage())
            self._feed(lambda: self.channel.close_done(epoch))

        d.addBoth(closed)

    @property
    def state(self) -> ChannelState:
        return self.channel.state
