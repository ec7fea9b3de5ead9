"""The daemon: wires configuration, the module, the sockets and the signals together.

``bridged run -c FILE`` builds a :class:`Daemon` and runs the reactor until SIGTERM/SIGINT.
Order of start-up, as the issue asks and an operator expects: open the serial port,
initialise the module, write every socket's settings and certificates, then listen. After
a module restart the settings are written again before sockets reopen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from bridged.config import Config, ConfigError, SocketConfig, load_config, module_profile
from bridged.core.channel import ChannelState
from bridged.core.link_readings import ModuleInfo
from bridged.core.qssl_commands import CertKind, SslSocketSettings
from bridged.ops.at_stats import ATStats
from bridged.ops.sdnotify import install_systemd_notify
from bridged.ops.snapshot import DaemonSnapshot
from bridged.shell.at_engine import ATEngine, ATError
from bridged.shell.bridge import SocketBridge
from bridged.shell.link_health import LinkHealth, ModuleIdentity, start_link_health
from bridged.shell.modem import Modem, ModemOptions, ModemState, SocketSetup
from bridged.shell.qssl import QsslClient
from bridged.shell.send_pump import SendPump
from bridged.shell.serial_tap import SerialTraceOptions
from bridged.shell.snapshots import engine_snapshot, link_snapshot, modem_snapshot, socket_snapshot

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
            dataformat=ssl.dataformat,
            timeout=ssl.timeout,
            debug=ssl.debug,
        ),
        certificates=tuple(certificates),
    )


def modem_options(config: Config) -> ModemOptions:
    """The serial and modem sections and the module profile, as the modem takes them."""
    profile = module_profile(config)
    return ModemOptions(
        device=config.serial.device,
        baudrate=config.serial.baudrate,
        prompt_delay=config.modem.prompt_delay_for(profile),
        guard_time=config.modem.guard_time,
        command_timeout=config.modem.command_timeout,
        max_consecutive_timeouts=config.modem.max_consecutive_timeouts,
        allow_reset=config.modem.allow_reset,
        reopen_backoff=config.serial.reopen_backoff,
        init_attempts=max(config.modem.init_retries, 1) * 3,
        profile=profile,
        trace=None
        if config.serial.trace is None
        else SerialTraceOptions(
            config.serial.trace, config.serial.trace_payload, config.serial.trace_max_bytes
        ),
    )


class Daemon:
    """The running bridge: one modem, one SocketBridge per configured socket."""

    def __init__(self, reactor: Any, config: Config, rng: random.Random | None = None) -> None:
        self.reactor = reactor
        self.config = config
        self.rng = rng or random.Random()
        # One pump for the daemon's life; reload updates it. A socket with data to send
        # pokes the pump itself: the byte path does not climb up to the daemon.
        self.pump = SendPump([])
        self.bridges = [
            SocketBridge(s, reactor, reactor, self.pump.kick, self.rng) for s in config.sockets
        ]
        self.pump.set_bridges(self.bridges)
        # Sockets a reload added or changed while the module was not ready: configured
        # before they may open at the next module ready.
        self._unconfigured: set[int] = set()
        self._retiring: set[SocketBridge] = set()
        self.modem = Modem(
            reactor, modem_options(config), [socket_setup(s) for s in config.sockets], self.rng
        )
        self.modem.engine_observers.append(self._new_engine)
        self.modem.ready_observers.append(self._module_ready)
        self.modem.lost_observers.append(self._module_lost)
        self.modem.fatal_observers.append(self._module_fatal)
        self.cert_digests = {s.connect_id: certificate_digest(s) for s in config.sockets}
        self.listening = False
        self.ready_once: defer.Deferred[None] = defer.Deferred()
        self.state_observers: list[Callable[[str], None]] = []
        self.stop_hooks: list[Callable[[], object]] = []
        self.fatal: str | None = None  # why the daemon must exit non-zero
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        profile = self.modem.options.profile
        log.info(
            "bridged starting: {n} socket(s) on {device}, module {model}",
            n=len(self.bridges),
            device=self.config.serial.device,
            model="auto (ATI / AT+CGMM)" if profile is None else profile.label,
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
        for hook in self.stop_hooks:
            await defer.maybeDeferred(hook)
        log.info("bridged stopped")

    async def reload(self, new: Config) -> None:
        """Apply a new configuration: unchanged sockets keep their connections.

        A changed or removed socket is retired through its channel: its client is
        disconnected, its unsent bytes are counted lost (never sent on the new
        connection), its SSL connection is closed before a new socket on the same
        connectID may open. The one send pump serves the new set of sockets from now on.
        """
        old, self.config = self.config, new
        digests = {s.connect_id: certificate_digest(s) for s in new.sockets}
        old_by_id = {b.connect_id: b for b in self.bridges}
        new_by_id = {s.connect_id: s for s in new.sockets}
        unchanged = {
            cid
            for cid, bridge in old_by_id.items()
            if new_by_id.get(cid) == bridge.config and digests[cid] == self.cert_digests[cid]
        }
        removed = [b for cid, b in old_by_id.items() if cid not in unchanged]
        added = [s for cid, s in new_by_id.items() if cid not in unchanged]
        self.cert_digests = digests
        self.modem.reconfigure([socket_setup(s) for s in new.sockets])
        # The options compare too: a profile file rewritten in place (same path) changes
        # the module's limits or prompt_delay without changing the configuration.
        options = modem_options(new)
        serial_changed = (old.serial, old.modem) != (new.serial, new.modem) or (
            options != self.modem.options
        )
        log.info(
            "reloading: {kept} socket(s) unchanged, {gone} removed or changed, {new} new{more}",
            kept=len(unchanged),
            gone=len(removed),
            new=len(added),
            more="; serial/modem settings changed: reopening the port" if serial_changed else "",
        )
        fresh = [
            SocketBridge(s, self.reactor, self.reactor, self.pump.kick, self.rng) for s in added
        ]
        if self.modem.state is not ModemState.READY:
            # An initialisation under way writes the settings it started with: the new and
            # changed sockets are configured again before they may open.
            self._unconfigured.update(b.connect_id for b in fresh)
        self.bridges = sorted(
            [b for b in self.bridges if b.connect_id in unchanged] + fresh,
            key=lambda b: b.connect_id,
        )
        self.pump.set_bridges(self.bridges)
        for bridge in removed:
            self._retire(bridge)
        # New sockets listen and open only once every retired one (of this reload or an
        # earlier one still closing) has let go of its listen port and SSL connection.
        closing = [b.when_closed() for b in self._retiring]
        if closing:
            await defer.gatherResults(closing, consumeErrors=True)
        if self.listening:
            for bridge in fresh:
                bridge.listen()
        if serial_changed:
            self.modem.options = options
            self.modem.reopen("configuration reloaded")
            return
        qssl = self.modem.qssl
        for bridge in fresh:
            if qssl is not None:
                bridge.attach(qssl)
        if qssl is not None and self.modem.state is ModemState.READY and fresh:
            await self._configure_then_ready(fresh)
        self.pump.kick()

    def _retire(self, bridge: SocketBridge) -> defer.Deferred[None]:
        """Take a socket out of service: listener, then client and SSL connection through
        its channel. Fires once its SSL connection is closed."""
        self._retiring.add(bridge)

        async def retire() -> None:
            await bridge.stop_listening()
            await bridge.retire("socket reconfigured")
            self._retiring.discard(bridge)

        return defer.Deferred.fromCoroutine(retire())

    async def _configure_then_ready(self, bridges: list[SocketBridge]) -> None:
        try:
            await self.modem.configure_now([socket_setup(b.config) for b in bridges])
        except ATError as e:
            if self.modem.state is ModemState.READY:
                raise
            # The module was lost or restarted meanwhile (soak: a reload during a resync
            # that climbed the ladder): its next initialisation configures every socket
            # of the new configuration, and _module_ready makes them ready.
            log.warn(
                "configuring reloaded sockets interrupted ({error}); the module's "
                "initialisation configures them",
                error=e,
            )
            return
        for bridge in bridges:
            if bridge in self.bridges and self.modem.state is ModemState.READY:
                bridge.module_ready()
        self.pump.kick()

    @property
    def ready(self) -> bool:
        return self.modem.state is ModemState.READY and self.listening

    # ------------------------------------------------------------------ modem events

    def _new_engine(self, engine: ATEngine, qssl: QsslClient) -> None:
        for bridge in [*self._retiring, *self.bridges]:
            bridge.attach(qssl)
        self.pump.qssl = qssl

    def _module_fatal(self, why: str) -> None:
        self.fatal = why
        self.reactor.stop()

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
        unconfigured = [b for b in self.bridges if b.connect_id in self._unconfigured]
        self._unconfigured.clear()
        for bridge in self.bridges:
            if bridge not in unconfigured:
                bridge.module_ready()
        if unconfigured:
            d = defer.Deferred.fromCoroutine(self._configure_then_ready(unconfigured))
            d.addErrback(lambda f: log.failure("configuring reloaded sockets failed", f))
        self._announce("ready")
        if not self.ready_once.called:
            self.ready_once.callback(None)
        self.pump.kick()

    def _module_lost(self, reason: str) -> None:
        if not self._stopping:  # at shutdown the port closing is ours, not a fault
            log.warn("module lost: {reason}", reason=reason)
        for bridge in [*self.bridges, *self._retiring]:
            bridge.module_lost(reason)
        self._announce(f"module lost: {reason}")

    def _announce(self, status: str) -> None:
        for listener in list(self.state_observers):
            listener(status)


def certificate_digest(config: SocketConfig) -> str:
    """A digest of the socket's certificate files: a reload re-uploads them if they changed."""
    digest = hashlib.sha256()
    for path in (config.ssl.cacert, config.ssl.clientcert, config.ssl.clientkey):
        if path is not None:
            try:
                digest.update(path.read_bytes())
            except OSError as e:
                digest.update(repr(e).encode())
    return digest.hexdigest()


class Readout:
    """What operations (metrics, /healthz, status, systemd) read: a
    :class:`~bridged.ops.snapshot.DaemonSnapshot` of the daemon and the parts
    :func:`install_extras` adds, filled when called. Call in the reactor thread."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.link_health: LinkHealth | None = None  # None: polling is off
        self.identity: ModuleIdentity | None = None
        self.at_stats: ATStats | None = None  # None: no metrics endpoint counts AT traffic

    def __call__(self) -> DaemonSnapshot:
        daemon, modem = self.daemon, self.daemon.modem
        return DaemonSnapshot(
            modem=modem_snapshot(modem),
            engine=engine_snapshot(modem.engine),
            ready=daemon.ready,
            listening=daemon.listening,
            send_chunks=daemon.pump.chunks_sent,
            sockets=tuple(socket_snapshot(b) for b in daemon.bridges),
            link=None if self.link_health is None else link_snapshot(self.link_health),
            module=ModuleInfo() if self.identity is None else self.identity.info,
            at=None if self.at_stats is None else self.at_stats.totals(),
        )

    def count_at_traffic(self) -> ATStats:
        """Totals of AT commands, events and serial bytes over every engine the modem
        makes, from now on (before ``daemon.start()``, the first engine's too)."""
        if self.at_stats is None:
            stats = self.at_stats = ATStats()
            modem = self.daemon.modem
            modem.engine_observers.append(stats.engine_created)
            if modem.engine is not None:
                stats.attach(modem.engine)
        return self.at_stats


def install_extras(
    daemon: Daemon, reactor: Any, config: Config, readout: Readout | None = None
) -> Readout:
    """Metrics endpoint and link-health polling, where configured; the AT passthrough.
    Returns what they read (``readout``, or a new one)."""
    readout = Readout(daemon) if readout is None else readout
    from bridged.ops.logs import trace_urcs

    daemon.modem.engine_observers.append(lambda engine, _qssl: trace_urcs(engine))

    modem_config = config.modem
    health = start_link_health(
        daemon.modem, reactor, modem_config.health_interval, modem_config.command_timeout
    )
    if health is not None:
        daemon.stop_hooks.append(health.stop)
    readout.link_health = health
    if config.metrics is not None:
        from bridged.ops.metrics import install_metrics

        readout.count_at_traffic()
        try:
            port = install_metrics(readout, reactor, config.metrics.listen)
        except CannotListenError as e:
            daemon.fatal = f"cannot listen for metrics on {config.metrics.listen}: {e}"
            log.critical("{why}", why=daemon.fatal)
            reactor.callWhenRunning(reactor.stop)
            return readout
        daemon.stop_hooks.append(port.stopListening)
    install_passthrough(daemon, reactor, config, readout)
    return readout


def install_passthrough(daemon: Daemon, reactor: Any, config: Config, readout: Readout) -> None:
    from bridged.ops.passthrough import PassthroughService, listen_passthrough
    from bridged.ops.status import STATUS_REQUEST, install_status, status_reply

    readout.identity = ModuleIdentity(daemon.modem)
    current_status = install_status(readout, reactor)
    service = PassthroughService(
        engine=lambda: daemon.modem.engine,
        managed=lambda: [b.connect_id for b in daemon.bridges],
        requests={STATUS_REQUEST: lambda: status_reply(current_status)},
    )
    control = config.control
    try:
        port = listen_passthrough(reactor, control.socket, control.mode, control.group, service)
    except (OSError, KeyError) as e:
        # The bridge works without it; a field engineer will see why in the log.
        log.error("AT passthrough unavailable at {path}: {error}", path=control.socket, error=e)
        return
    daemon.stop_hooks.append(port.stopListening)


def run_main(config_path: str, log_level: str | None = None, trace: str | None = None) -> int:
    """``bridged run``: foreground until SIGTERM or SIGINT; SIGHUP reloads the config.
    ``trace``: record the serial line there (overrides ``serial.trace``)."""
    from twisted.internet import reactor as global_reactor

    from bridged.ops.logs import setup_logging

    reactor: Any = global_reactor  # its methods live on several interfaces

    def load(path: str) -> Config:
        loaded = load_config(path)
        if trace is None:
            return loaded
        serial = dataclasses.replace(loaded.serial, trace=Path(trace).absolute())
        return dataclasses.replace(loaded, serial=serial)

    try:
        config = load(config_path)
    except ConfigError as e:
        print(f"bridged: {e}", file=sys.stderr)
        return 2
    setup_logging(log_level or config.log.level)
    daemon = Daemon(reactor, config)
    readout = Readout(daemon)
    # A no-op without $NOTIFY_SOCKET.
    notifier = install_systemd_notify(reactor, readout, daemon.state_observers, daemon.ready_once)

    def shutdown(signame: str) -> None:
        log.info("{name}: shutting down", name=signame)
        d = defer.Deferred.fromCoroutine(daemon.stop())
        d.addErrback(lambda f: log.failure("error while stopping", f))
        d.addBoth(lambda _: reactor.stop())

    def reload() -> None:
        log.info("SIGHUP: reloading {path}", path=config_path)
        try:
            new = load(config_path)
        except ConfigError as e:
            log.error("new configuration refused, the running one stays:\n{error}", error=e)
            return
        notifier.reloading()
        d = defer.Deferred.fromCoroutine(daemon.reload(new))
        d.addErrback(lambda f: log.failure("reload failed", f))
        d.addBoth(lambda _: notifier.ready())

    def on_signal(signum: int, _frame: object) -> None:
        # Signal handlers run between bytecodes: hand the work to the reactor loop.
        if signum == signal.SIGHUP:
            reactor.callFromThread(reload)
        else:
            reactor.callFromThread(shutdown, signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    install_extras(daemon, reactor, config, readout)
    reactor.callWhenRunning(daemon.start)
    reactor.run(installSignalHandlers=False)
    if daemon.fatal:
        notifier.status(f"failed: {daemon.fatal}")
        print(f"bridged: {daemon.fatal}", file=sys.stderr)
        return 1
    return 0
