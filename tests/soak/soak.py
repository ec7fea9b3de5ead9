"""The fault-injection soak: six sockets streaming through real TLS while the module fails.

One reactor runs the BC26 emulator on a pty, bridged's :class:`~bridged.shell.daemon.Daemon`,
and six :class:`~tests.soak.clients.SocketClient` streams (every mode and data format);
``socat`` runs the TLS echo server. While the clients stream, a
:class:`~tests.soak.faults.FaultInjector` injects a fault every few seconds. Then faults
stop, every client finishes its connection and probes its socket once more, and the run
reports what happened. It fails (``SoakReport.failures``) if

- any client got a byte that is not the next byte it wrote (corrupted, duplicated,
  lost in a gap, or excess);
- any open connection kept unechoed bytes with no echo progress for ``stall_limit`` s;
- anything was logged as a failure (``log.failure``, "Unhandled error"), or the
  daemon stopped;
- some socket did not echo a probe within ``recovery_bound`` s of the last fault.
"""

from __future__ import annotations

import gc
import random
import resource
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from twisted.internet import defer, task
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from zope.interface import implementer

from bridged.config import load_config
from bridged.core.module_profile import BC26
from bridged.emulator import FAST, Emulator
from bridged.ops.logs import LineObserver
from bridged.shell.daemon import Daemon
from tests.soak.clients import ClientTotals, SocketClient, Violation
from tests.soak.faults import FAULT_ROUND, FaultInjector, InjectedFault
from tests.support.pki import make_pki
from tests.support.rig import BridgeRig, SocketSpec
from tests.support.tls_servers import start_socat_echo_server


@dataclass(frozen=True)
class SocketPlan:
    connect_id: int
    mode: str
    dataformat: str
    send_max_bytes: int = 65536


#: Every mode and data format; two sockets with a small send queue, so a client's writes
#: run into the high-water mark and are paused and resumed.
SOCKETS = (
    SocketPlan(0, "on-demand", "hex"),
    SocketPlan(1, "on-demand", "text"),
    SocketPlan(2, "persistent", "hex"),
    SocketPlan(3, "persistent", "text"),
    SocketPlan(4, "on-demand", "hex", send_max_bytes=2048),
    SocketPlan(5, "persistent", "hex", send_max_bytes=2048),
)


# The emulator's network round trip when sends are pipelined: longer than a round of all
# six sockets' sends at the soak's baud rate (~0.1 s), so a socket's next turn often comes
# before its previous send's result and it has several unconfirmed.
PIPELINE_RTT = 0.5

# bridged's send_stall_timeout in the soak: below the stall limit, above the longest
# single fault (a late '>': prompt wait 3 s + '>' at 6 s + data-mode silence 12 s).
SEND_STALL_TIMEOUT = 24.0


@dataclass
class SoakOptions:
    minutes: float = 10.0
    seed: int = field(default_factory=lambda: random.SystemRandom().randrange(2**32))
    fault_gap: tuple[float, float] = (2.0, 5.0)
    stall_limit: float = 30.0
    recovery_bound: float = 45.0
    baud: int = 921600
    workdir: Path | None = None
    log_path: Path | None = None  # the full log at info level; default: in workdir
    fault_round: tuple[str, ...] | None = None  # default: faults.FAULT_ROUND
    trace: bool = False  # record the serial line to workdir/serial.trace (bridged replay)
    #: The text sockets send text and receive hex (``{send: text, recv: hex}``, issue 15),
    #: so every socket's recv takes the recv faults.
    split_format: bool = False
    #: Pipelined sends (issue 15): the emulated module takes this many sends per socket
    #: before the first one's result, and bridged's module profile says so. Above 1 the
    #: emulator's network gets PIPELINE_RTT of round trip, so results trail their OKs
    #: and sends really overlap.
    max_unconfirmed_sends: int = 1


def _configured_format(plan: SocketPlan, options: SoakOptions) -> str:
    if options.split_format and plan.dataformat == "text":
        return "{send: text, recv: hex}"
    return plan.dataformat


@dataclass
class FaultRecovery:
    """When each socket echoed a byte again after one fault."""

    fault: InjectedFault
    waiting: set[int]
    per_socket: dict[int, float] = field(default_factory=dict)
    seconds: float | None = None  # until the last of them


@dataclass
class SoakReport:
    options: SoakOptions
    duration: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    garbage: Counter[str] = field(default_factory=Counter)
    totals: dict[int, ClientTotals] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    logged_failures: list[str] = field(default_factory=list)
    fault_recoveries: list[float] = field(default_factory=list)
    unrecovered_faults: int = 0
    final_recovery: dict[int, float | None] = field(default_factory=dict)
    daemon_lines: list[str] = field(default_factory=list)
    emulator_line: str = ""
    rss_mb: tuple[float, float] = (0.0, 0.0)
    log_path: Path | None = None

    @property
    def failures(self) -> list[str]:
        problems = [
            f"{v.kind} on socket {v.connect_id} (connection {v.connection}): {v.detail}"
            for v in self.violations
        ]
        problems += [f"logged failure: {text.splitlines()[0]}" for text in self.logged_failures]
        for cid, seconds in sorted(self.final_recovery.items()):
            if seconds is None or seconds > self.options.recovery_bound:
                problems.append(
                    f"socket {cid} did not work again within {self.options.recovery_bound:g} s "
                    "of the last fault"
                )
        return problems

    def format(self) -> str:
        o = self.options
        kinds = Counter(v.kind for v in self.violations)
        sent = sum(t.bytes_sent for t in self.totals.values())
        echoed = sum(t.bytes_echoed for t in self.totals.values())
        outcomes: Counter[str] = Counter()
        for t in self.totals.values():
            outcomes.update(t.connections)
        connections = sum(outcomes.values())
        finals = [s for s in self.final_recovery.values() if s is not None]
        lines = [
            f"soak: seed {o.seed}, {self.duration / 60:.1f} min, faults every "
            f"{o.fault_gap[0]:g}-{o.fault_gap[1]:g} s, {o.baud} baud"
            + (
                f", pipelined sends (max_unconfirmed_sends {o.max_unconfirmed_sends})"
                if o.max_unconfirmed_sends > 1
                else ""
            ),
            f"faults injected: {sum(self.faults.values())} " + _counts(self.faults),
            f"  garbage: {_counts(self.garbage)}",
            f"bytes: {sent} written by clients, {echoed} echoed back "
            f"({echoed / max(self.duration, 1) / 1024:.1f} KiB/s)",
            f"connections: {connections} ({connections - len(self.totals)} reconnects) "
            + _counts(outcomes)
            + f", {sum(t.half_closes for t in self.totals.values())} half-closed while draining",
            "  unechoed when the bridge disconnected the client: "
            f"{sum(t.unechoed_at_disconnect for t in self.totals.values())} bytes; "
            f"left behind by clients that quit early: "
            f"{sum(t.unechoed_abandoned for t in self.totals.values())} bytes; carried by "
            "persistent clients after a violation and never echoed: "
            f"{sum(t.carry_undelivered for t in self.totals.values())} bytes",
            f"corrupted: {kinds['corrupted']}, duplicated: {kinds['duplicated']}, "
            f"lost in a gap: {kinds['lost']}, excess: {kinds['excess']}, "
            f"stalled (silently lost): {kinds['stall']}, failed probes: {kinds['probe']}",
            f"invariants: corrupted or spliced {kinds['corrupted'] + kinds['excess']}, "
            f"holes {kinds['lost']}, silently lost {kinds['stall']}",
            f"logged failures / unhandled errors: {len(self.logged_failures)}",
            "longest wait for an echo on an open connection: "
            f"{max((t.longest_wait for t in self.totals.values()), default=0):.1f} s "
            f"(stall limit {o.stall_limit:g} s)",
            "recovery after a fault (every socket echoing again): "
            + _spread(self.fault_recoveries)
            + (
                f"; {self.unrecovered_faults} not measured (run ended)"
                if self.unrecovered_faults
                else ""
            ),
            "recovery after the last fault (each socket echoing again): "
            + _spread(finals)
            + f" (bound {o.recovery_bound:g} s)",
            f"memory: max RSS {self.rss_mb[0]:.0f} MiB after set-up, {self.rss_mb[1]:.0f} MiB "
            "at the end",
            *self.daemon_lines,
            self.emulator_line,
        ]
        for t_cid, t in sorted(self.totals.items()):
            lines.append(
                f"  client {t_cid}: {t.bytes_sent} written, {t.bytes_echoed} echoed, "
                + _counts(t.connections)
            )
        failures = self.failures
        lines.append(f"RESULT: {'FAIL' if failures else 'PASS'}")
        lines += [f"  {problem}" for problem in failures[:50]]
        if self.log_path is not None:
            lines.append(f"log: {self.log_path}")
            trace = self.log_path.parent / "serial.trace"
            if self.options.trace and trace.exists():
                lines.append(f"serial trace: {trace} (python -m bridged replay)")
        return "\n".join(lines)


def _counts(counter: Counter[str]) -> str:
    return "(" + ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) + ")"


def _spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s over {len(values)}"


@implementer(ILogObserver)
class FailureCollector:
    """Keeps every logged failure: ``log.failure`` events and "Unhandled error" text."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, event: dict[str, Any]) -> None:
        failure = event.get("log_failure")
        text = formatEvent(event)
        if failure is not None:
            self.failures.append(f"{text}\n{failure.getTraceback()}")
        elif "Unhandled error" in text or event.get("log_level") is LogLevel.critical:
            self.failures.append(text)


class _SoakRig(BridgeRig):
    """The test rig with the soak's seed in the emulator and the daemon."""

    def __init__(
        self,
        directory: Path,
        pki: Any,
        seed: int,
        baud: int,
        trace: Path | None = None,
        max_unconfirmed_sends: int = 1,
    ) -> None:
        # ssl.timeout 10 s (the least the module allows): it bounds how long the module
        # may sit in data mode, so how long bridged waits for it after a hang-up mid-send.
        modem_extra = ""
        if max_unconfirmed_sends > 1:
            profile_file = directory / "module.yaml"
            profile_file.write_text(f"base: bc26\nmax_unconfirmed_sends: {max_unconfirmed_sends}\n")
            modem_extra = f"profile_file: {profile_file}"
        super().__init__(directory, pki, baud=baud, ssl_timeout=10, modem_extra=modem_extra)
        profile = replace(FAST, prompt_max_delay=0.01)
        module = BC26
        if max_unconfirmed_sends > 1:
            profile = replace(profile, rtt=PIPELINE_RTT)
            module = replace(BC26, max_unconfirmed_sends=max_unconfirmed_sends)
        self.emulator = Emulator(
            self.device, baud=baud, profile=profile, seed=seed, module_profile=module
        )
        self.seed = seed
        self.trace = trace

    def config_text(self, sockets: list[SocketSpec]) -> str:
        text = super().config_text(sockets)
        if self.trace is None:
            return text
        return text.replace(
            " reopen_backoff:",
            f" trace: {self.trace}, trace_max_bytes: 1000000000, reopen_backoff:",
            1,
        )

    async def start(self, sockets: list[SocketSpec]) -> Daemon:
        from twisted.internet import reactor

        self.config_path.write_text(self.config_text(sockets))
        config = load_config(self.config_path)
        self.emulator.start()
        await self.emulator.when_ready()
        self.daemon = Daemon(reactor, config, rng=random.Random(self.seed))
        self.daemon.start()
        await self.daemon.ready_once
        return self.daemon


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_soak(options: SoakOptions, out: TextIO | None = None) -> SoakReport:
    """Run the soak in the running reactor; returns the report (``failures`` empty: pass)."""
    from twisted.internet import reactor

    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="bridged-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = options.log_path or workdir / "soak.log"
    report = SoakReport(options, log_path=log_path)
    rng = random.Random(options.seed)

    def say(text: str) -> None:
        if out is not None:
            out.write(text + "\n")
            out.flush()

    say(f"soak: seed {options.seed} (rerun with --seed {options.seed}); log: {log_path}")
    collector = FailureCollector()
    log_file = open(log_path, "w")  # noqa: SIM115 -- closed in the finally below
    log_observer = LineObserver(log_file, journald=False)
    globalLogPublisher.addObserver(collector)
    globalLogPublisher.addObserver(log_observer)
    pki = make_pki(workdir / "pki")
    server = start_socat_echo_server(pki, log_path=workdir / "socat.log")
    # A second echo server: reloads move a socket's remote between the two.
    other_server = start_socat_echo_server(pki, log_path=workdir / "socat2.log")
    trace = workdir / "serial.trace" if options.trace else None
    rig = _SoakRig(workdir, pki, options.seed, options.baud, trace, options.max_unconfirmed_sends)
    clients: list[SocketClient] = []
    started = time.monotonic()
    try:
        remotes = {plan.connect_id: server.port for plan in SOCKETS}

        def specs() -> list[SocketSpec]:
            return [
                SocketSpec(
                    plan.connect_id,
                    remotes[plan.connect_id],
                    mode=plan.mode,
                    dataformat=_configured_format(plan, options),
                    # Under the stall limit: a client the module cannot serve for that
                    # long (two late '>' in a row, say) is disconnected, not kept waiting.
                    extra=f"queue: {{send_max_bytes: {plan.send_max_bytes}}}\n"
                    f"send_stall_timeout: {SEND_STALL_TIMEOUT:g}",
                )
                for plan in SOCKETS
            ]

        daemon = await rig.start(specs())

        def reload(connect_id: int) -> defer.Deferred[None]:
            # SIGHUP with one socket's remote changed (the handler calls daemon.reload).
            remotes[connect_id] = (
                other_server.port if remotes[connect_id] == server.port else server.port
            )
            rig.config_path.write_text(rig.config_text(specs()))
            return defer.Deferred.fromCoroutine(daemon.reload(load_config(rig.config_path)))

        rss_start = _rss_mb()
        recoveries: list[FaultRecovery] = []

        def progress(connect_id: int, now: float) -> None:
            for recovery in recoveries[-20:]:
                if connect_id in recovery.waiting and now > recovery.fault.at:
                    recovery.waiting.discard(connect_id)
                    recovery.per_socket[connect_id] = now - recovery.fault.at
                    if not recovery.waiting:
                        recovery.seconds = now - recovery.fault.at

        def violation(v: Violation) -> None:
            report.violations.append(v)
            say(f"  VIOLATION {v.kind} on socket {v.connect_id}: {v.detail}")

        for plan in SOCKETS:
            clients.append(
                SocketClient(
                    reactor,
                    plan.connect_id,
                    rig.ports[plan.connect_id],
                    persistent=plan.mode == "persistent",
                    rng=random.Random(rng.getrandbits(64)),
                    stall_limit=options.stall_limit,
                    on_progress=progress,
                    on_violation=violation,
                )
            )
        stall_check = task.LoopingCall(lambda: [c.check_stall(reactor.seconds()) for c in clients])
        stall_check.start(0.5, now=False)
        for client in clients:
            client.start()

        injector = FaultInjector(
            rig.emulator,
            random.Random(rng.getrandbits(64)),
            reactor.seconds,
            hex_sockets=[
                p.connect_id for p in SOCKETS if p.dataformat == "hex" or options.split_format
            ],
            connect_ids=[p.connect_id for p in SOCKETS],
            reload=reload,
            fault_round=options.fault_round or FAULT_ROUND,
        )
        deadline = reactor.seconds() + options.minutes * 60
        next_report = reactor.seconds() + 30
        await _sleep(rng.uniform(*options.fault_gap))
        while reactor.seconds() < deadline:
            fault = await injector.inject(injector.next_kind())
            recoveries.append(FaultRecovery(fault, {p.connect_id for p in SOCKETS}))
            await _sleep(rng.uniform(*options.fault_gap))
            if reactor.seconds() >= next_report:
                next_report += 30
                echoed = sum(c.totals.bytes_echoed for c in clients)
                say(
                    f"  {(time.monotonic() - started) / 60:4.1f} min: "
                    f"{len(injector.injected)} faults, {echoed} bytes echoed, "
                    f"{len(report.violations)} violations"
                )
        injector.disarm()
        rig.emulator.set_prompt_delay(None)

        # After the last fault every socket must echo again within the bound; then every
        # client finishes its connection and a fresh connection must echo a probe.
        if recoveries:
            last = recoveries[-1]
            await _wait_for(lambda: not last.waiting, options.recovery_bound)
            report.final_recovery = {
                p.connect_id: last.per_socket.get(p.connect_id) for p in SOCKETS
            }
        for client in clients:
            client.stop()
        await _wait_for(lambda: not any(c.connected for c in clients), options.stall_limit + 5)
        probes = [defer.Deferred.fromCoroutine(_probe(c, options.recovery_bound)) for c in clients]
        for client, ok in zip(clients, await defer.gatherResults(probes), strict=True):
            if not ok:
                report.violations.append(
                    Violation(
                        client.connect_id,
                        client.connection_count,
                        "probe",
                        0.0,
                        "a fresh connection did not echo its probe",
                    )
                )
        stall_check.stop()

        if daemon.fatal or not reactor.running:
            collector.failures.append(f"daemon stopped: {daemon.fatal}")
        report.duration = time.monotonic() - started
        report.faults = injector.by_kind
        report.garbage = injector.garbage_kinds
        report.fault_recoveries = [r.seconds for r in recoveries if r.seconds is not None]
        report.unrecovered_faults = sum(1 for r in recoveries if r.seconds is None)
        report.totals = {c.connect_id: c.totals for c in clients}
        report.daemon_lines = _daemon_lines(daemon)
        report.rss_mb = (rss_start, _rss_mb())
    finally:
        for client in clients:
            client.running = False
            client.cancel_timers()
        await rig.stop()
        report.emulator_line = f"emulator: {rig.emulator.stats}"
        server.stop()
        other_server.stop()
        gc.collect()  # Deferreds garbage-collected with an error log it now
        globalLogPublisher.removeObserver(collector)
        globalLogPublisher.removeObserver(log_observer)
        log_file.close()
    report.logged_failures = collector.failures
    return report


def _daemon_lines(daemon: Daemon) -> list[str]:
    modem = daemon.modem
    engine = modem.engine
    lines = [
        f"daemon: ready {daemon.ready}, module restarts {dict(sorted(modem.restarts.items()))}, "
        f"serial reopens {modem.serial_reopens}, AT commands pending "
        f"{engine.pending if engine else '-'}, decoder buffered "
        f"{engine.decoder.buffered if engine else '-'}"
    ]
    for bridge in daemon.bridges:
        s = bridge.stats
        lines.append(
            f"  socket {bridge.connect_id} ({bridge.config.mode}, {bridge.config.ssl.dataformat}): "
            f"tx {s.tx_bytes}, rx {s.rx_bytes}, tx lost {s.tx_lost_bytes}, "
            f"rx dropped {s.rx_dropped_bytes}, remote closes {s.remote_closes}, "
            f"send failures {s.send_failures}, opens {dict(sorted(s.opens.items()))}"
        )
    return lines


async def _probe(client: SocketClient, bound: float) -> bool:
    """Whether a fresh connection echoed its probe within ``bound`` seconds."""
    from twisted.internet import reactor

    deadline = reactor.seconds() + bound
    while reactor.seconds() < deadline:
        done: defer.Deferred[bool] = defer.Deferred()
        client.probe(done.callback)
        if await done:
            return True
        await _sleep(0.2)
    return False


def _sleep(seconds: float) -> defer.Deferred[None]:
    from twisted.internet import reactor

    return task.deferLater(reactor, seconds, lambda: None)


async def _wait_for(condition: Any, timeout: float) -> bool:
    from twisted.internet import reactor

    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            return False
        await _sleep(0.1)
    return True
