"""The daemon: wires configuration, the module, the sockets and the signals together.

``bridged run -c FILE`` builds a :class:`Daemon` and runs the reactor until SIGTERM/SIGINT.
Order of start-up, as the issue asks and an operator expects: open the serial port,
initialise the module, write every socket's settings and certificates, then listen. After
a module restart the settings are written again before sockets reopen.
"""

from __future__ import annotations

import random
import signal
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from bridged.at_codec import DataFormat
from bridged.at_engine import ATEngine
from bridged.bridge import SendPump, SocketBridge
from bridged.channel import ChannelState
from bridged.config import Config, ConfigError, SocketConfig, load_config
from bridged.modem import Modem, ModemOptions, ModemState, SocketSetup
from bridged.qssl import CertKind, QsslClient, SslSocketSettings

log = Logger(namespace="bridged.daemon")

SHUTDOWN_CLOSE_TIMEOUT = 5.0  # seconds to close open SSL sockets at SIGTERM


def socket_setup(config: SocketConfig) -> SocketSetup:
    """What the module must be told about one socket after every (re)start."""
    ssl = config.ssl
    certificates: list[tuple[CertKind, Any]] = []
    if ssl.seclevel >= 1 and ssl.cacert is not None:
        certificates.append(("cacert", ssl.cacert))
    if ssl.seclevel >= 2 and ssl.clientcert is not None and ssl.clientkey is not None:
        certificates.append(("clientcert", ssl.clientcert))
        certificates.append(("clientkey", ssl.clientkey))
    return SocketSetup(
        connect_id=config.connect_id,
        settings=SslSocketSettings(
            seclevel=ssl.seclevel,
            sslversion=ssl.sslversion,
            dataformat=DataFormat.HEX if ssl.dataformat == "hex" else DataFormat.TEXT,
            timeout=ssl.timeout,
            debug=ssl.debug,
        ),
        certificates=tuple(certificates),
    )


def modem_options(config: Config) -> ModemOptions:
    return ModemOptions(
        device=config.serial.device,
        baudrate=config.serial.baudrate,
        prompt_delay=config.modem.prompt_delay,
        guard_time=config.modem.guard_time,
        command_timeout=config.modem.command_timeout,
        max_consecutive_timeouts=config.modem.max_consecutive_timeouts,
        allow_reset=config.modem.allow_reset,
        reopen_initial=config.serial.reopen_backoff.initial,
        reopen_max=config.serial.reopen_backoff.max,
        init_attempts=max(config.modem.init_retries, 1) * 3,
    )


class Daemon:
    """The running bridge: one modem, one SocketBridge per configured socket."""

    def __init__(self, reactor: Any, config: Config, rng: random.Random | None = None) -> None:
        self.reactor = reactor
        self.config = config
        self.rng = rng or random.Random()
        self.bridges = [
            SocketBridge(s, reactor, reactor, self._data_ready, self.rng) for s in config.sockets
        ]
        self.pump = SendPump(self.bridges)
        self.modem = Modem(
            reactor, modem_options(config), [socket_setup(s) for s in config.sockets], self.rng
        )
        self.modem.engine_listeners.append(self._new_engine)
        self.modem.ready_listeners.append(self._module_ready)
        self.modem.lost_listeners.append(self._module_lost)
        self.listening = False
        self.ready_once: defer.Deferred[None] = defer.Deferred()
        self.state_listeners: list[Callable[[str], None]] = []
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        log.info(
            "bridged starting: {n} socket(s) on {device}",
            n=len(self.bridges),
            device=self.config.serial.device,
        )
        self.modem.start()

    async def stop(self) -> None:
        """Stop listening, close clients and open SSL sockets (bounded), close the port."""
        if self._stopping:
            return
        self._stopping = True
        self._announce("stopping")
        for bridge in self.bridges:
            await bridge.stop_listening()
            bridge.cancel_timers()
            bridge.close_client("bridged is stopping")
        qssl = self.modem.qssl
        if qssl is not None and self.modem.state is ModemState.READY:
            closes = [
                defer.Deferred.fromCoroutine(qssl.close(b.connect_id))
                for b in self.bridges
                if b.state in (ChannelState.OPEN, ChannelState.OPENING)
            ]
            if closes:
                all_closed = defer.DeferredList(closes, consumeErrors=True)
                all_closed.addTimeout(SHUTDOWN_CLOSE_TIMEOUT, self.reactor)
                try:
                    await all_closed
                except defer.TimeoutError:
                    log.warn("SSL sockets did not close within {t} s", t=SHUTDOWN_CLOSE_TIMEOUT)
        self.modem.stop()
        log.info("bridged stopped")

    @property
    def ready(self) -> bool:
        return self.modem.state is ModemState.READY and self.listening

    # ------------------------------------------------------------------ modem events

    def _new_engine(self, engine: ATEngine, qssl: QsslClient) -> None:
        for bridge in self.bridges:
            bridge.attach(qssl)
        self.pump.qssl = qssl

    def _module_ready(self, qssl: QsslClient) -> None:
        if not self.listening:
            try:
                for bridge in self.bridges:
                    bridge.listen()
            except CannotListenError as e:
                log.critical("cannot listen: {error}", error=e)
                self.fatal = f"cannot listen: {e}"
                self.reactor.stop()
                return
            self.listening = True
        for bridge in self.bridges:
            bridge.module_ready()
        self._announce("ready")
        if not self.ready_once.called:
            self.ready_once.callback(None)
        self.pump.kick()

    def _module_lost(self, reason: str) -> None:
        log.warn("module lost: {reason}", reason=reason)
        for bridge in self.bridges:
            bridge.module_lost(reason)
        self._announce(f"module lost: {reason}")

    def _data_ready(self) -> None:
        self.pump.kick()

    def _announce(self, status: str) -> None:
        for listener in list(self.state_listeners):
            listener(status)

    fatal: str | None = None


def install_extras(daemon: Daemon, reactor: Any, config: Config) -> None:
    """Metrics endpoint and link-health polling, where configured."""
    if config.metrics is not None:
        from bridged.metrics import install_metrics

        install_metrics(daemon, reactor, config.metrics.listen)


def run_main(config_path: str, log_level: str | None = None) -> int:
    """``bridged run``: foreground until SIGTERM or SIGINT; exit status for systemd."""
    from twisted.internet import reactor

    from bridged.logs import setup_logging

    try:
        config = load_config(config_path)
    except ConfigError as e:
        print(f"bridged: {e}", file=sys.stderr)
        return 2
    setup_logging(log_level or config.log.level)
    daemon = Daemon(reactor, config)
    exit_code = [0]

    def shutdown(signum: int, _frame: object) -> None:
        log.info("signal {name}: shutting down", name=signal.Signals(signum).name)
        d = defer.Deferred.fromCoroutine(daemon.stop())
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    install_extras(daemon, reactor, config)
    reactor.callWhenRunning(daemon.start)  # type: ignore[attr-defined]
    reactor.callWhenRunning(signal.signal, signal.SIGTERM, shutdown)  # type: ignore[attr-defined]
    reactor.callWhenRunning(signal.signal, signal.SIGINT, shutdown)  # type: ignore[attr-defined]
    reactor.run(installSignalHandlers=False)  # type: ignore[attr-defined]
    if daemon.fatal:
        print(f"bridged: {daemon.fatal}", file=sys.stderr)
        exit_code[0] = 1
    return exit_code[0]
