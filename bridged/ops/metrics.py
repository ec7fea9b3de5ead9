"""Prometheus metrics and a health check over HTTP (twisted.web, in the reactor thread).

``GET /metrics`` renders a dedicated :class:`~prometheus_client.CollectorRegistry` with
``generate_latest`` inside ``render_GET``: the collector reads the daemon's plain counters
and states right there, in the reactor thread, so one scrape is one consistent picture and
nothing needs a lock. (prometheus_client's own HTTP server would read from another
thread while the reactor mutates the same objects.)

``GET /healthz`` answers 200 when the serial port is up and the module ready (bridged
listening), 503 otherwise, with a JSON body of the per-socket state.

Counts that live in the AT engine (commands, URCs, serial bytes) are kept here in
:class:`ATStats`, which attaches to every new engine through ``modem.engine_listeners``:
a serial reopen builds a new engine and the totals must not start over.

The metric names and labels are a public contract (dashboards, alerts): see
``docs/metrics.md``.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.logger import Logger
from twisted.web import http, pages
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from bridged import __version__
from bridged.config import Endpoint
from bridged.core.at_codec import (
    BootSign,
    ClosedUrc,
    CloseResult,
    Event,
    OpenResult,
    ProtocolError,
    RecvUrc,
    SendResult,
)
from bridged.core.channel import ChannelState
from bridged.core.qssl_commands import ERROR_NAMES
from bridged.shell.at_engine import ATEngine
from bridged.shell.link_health import LinkHealth
from bridged.shell.modem import ModemState

if TYPE_CHECKING:
    from bridged.shell.daemon import Daemon
    from bridged.shell.qssl import QsslClient

log = Logger(namespace="bridged.metrics")

# The classic text format, which every Prometheus understands. (prometheus_client >= 0.22
# calls "1.0.0" its latest; generate_latest without escaping options writes what 0.0.4
# specifies, and our names need nothing newer.)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# AT command latency buckets, seconds: a plain command answers in tens of ms at 115200
# baud; a send includes the 0.5 s prompt wait; an open's OK is immediate but the module's
# "timeout" setting allows up to 300 s for its results.
AT_DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

# Label values exported at 0 from the start, so rate()/increase() see the first event.
OPEN_RESULTS: tuple[str, ...] = (*ERROR_NAMES.values(), "unknown")
CLIENT_OUTCOMES = ("accepted", "refused")
# Why bridged itself ended an SSL connection whose stream could not go on whole (the
# StreamBroken labels of bridged.core.channel).
STREAM_END_REASONS = (
    "damaged_data",
    "idle_timeout",
    "recv_buffer_full",
    "reconfigured",
    "send_stall",
)
AT_RESULTS = ("ok", "error", "timeout")
RESTART_REASONS = ("reboot", "reset", "serial_reopen")
URC_TYPES: dict[type, str] = {
    RecvUrc: "recv",
    ClosedUrc: "closed",
    OpenResult: "qsslopen",
    SendResult: "qsslsend",
    CloseResult: "qsslclose",
    BootSign: "boot",
}
URC_TYPE_NAMES: tuple[str, ...] = (*URC_TYPES.values(), "unsolicited")
PROTOCOL_ERROR_KINDS = (
    "bad_hex",
    "bad_recv_data",
    "bad_recv_header",
    "bad_recv_length",
    "bad_urc",
    "line_too_long",
)
SERIAL_DIRECTIONS = ("in", "out")  # in: read from the module; out: written to it


# --------------------------------------------------------------------------- AT engine stats


@dataclass
class _Histogram:
    """Counts per bucket (not cumulative), plus sum and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class ATStats:
    """Totals over every AT engine the modem has had (one per serial connection)."""

    def __init__(self, buckets: tuple[float, ...] = AT_DURATION_BUCKETS) -> None:
        self.buckets = buckets
        self.commands: Counter[tuple[str, str]] = Counter()  # (command, result)
        self.durations: dict[str, _Histogram] = {}
        self.timeouts: Counter[str] = Counter()
        self.urcs: Counter[str] = Counter()
        self.protocol_errors: Counter[str] = Counter()
        self.engine: ATEngine | None = None
        self._past_bytes_in = 0
        self._past_bytes_out = 0

    def attach(self, engine: ATEngine) -> None:
        """Count this engine's commands, events and bytes from now on."""
        if engine is self.engine:
            return
        if self.engine is not None:
            self._past_bytes_in += self.engine.bytes_in
            self._past_bytes_out += self.engine.bytes_out
        self.engine = engine
        engine.command_observers.append(self.observe_command)
        engine.event_listeners.append(self.observe_event)

    def engine_created(self, engine: ATEngine, _qssl: QsslClient) -> None:
        """A ``modem.engine_listeners`` entry."""
        self.attach(engine)

    @property
    def bytes_in(self) -> int:
        return self._past_bytes_in + (self.engine.bytes_in if self.engine else 0)

    @property
    def bytes_out(self) -> int:
        return self._past_bytes_out + (self.engine.bytes_out if self.engine else 0)

    def observe_command(self, name: str, result: str, seconds: float) -> None:
        self.commands[name, result] += 1
        histogram = self.durations.get(name)
        if histogram is None:
            histogram = self.durations[name] = _Histogram(self.buckets)
        histogram.observe(seconds)
        if result == "timeout":
            self.timeouts[name] += 1

    def observe_event(self, event: Event) -> None:
        if isinstance(event, ProtocolError):
            self.protocol_errors[event.kind] += 1
        else:
            self.urcs[URC_TYPES.get(type(event), "unsolicited")] += 1


# --------------------------------------------------------------------------- collector


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


class BridgedCollector(Collector):
    """Reads the daemon at scrape time. Call only in the reactor thread."""

    def __init__(
        self, daemon: Daemon, at_stats: ATStats, link_health: LinkHealth | None = None
    ) -> None:
        self.daemon = daemon
        self.at_stats = at_stats
        self.link_health = link_health

    def describe(self) -> Iterable[Metric]:
        return []  # names are fixed; no collect() at registration time

    def collect(self) -> Iterable[Metric]:
        yield from self._process()
        yield from self._at()
        yield from self._sockets()
        yield from self._link()

    # -- daemon and module

    def _process(self) -> Iterator[Metric]:
        daemon = self.daemon
        modem = daemon.modem
        build = _gauge("bridged_build_info", "bridged version; always 1.", ["version"])
        build.add_metric([__version__], 1)
        yield build
        yield GaugeMetricFamily(
            "bridged_serial_up",
            "1 while the serial port to the module is open.",
            value=int(modem.state is not ModemState.SERIAL_DOWN),
        )
        yield CounterMetricFamily(
            "bridged_serial_reopens",
            "Times the serial port was lost and reopened.",
            value=modem.serial_reopens,
        )
        yield GaugeMetricFamily(
            "bridged_module_ready",
            "1 while the module is initialised and every socket configured.",
            value=int(modem.state is ModemState.READY),
        )
        yield GaugeMetricFamily(
            "bridged_ready",
            "1 while bridged is ready for clients (module ready and listening); as /healthz.",
            value=int(daemon.ready),
        )
        restarts = _counter(
            "bridged_module_restarts",
            "Module re-initialisations by reason (reboot seen, reset sent, serial reopened).",
            ["reason"],
        )
        for reason in sorted(set(RESTART_REASONS) | set(modem.restarts)):
            restarts.add_metric([reason], modem.restarts.get(reason, 0))
        yield restarts

    def _at(self) -> Iterator[Metric]:
        stats = self.at_stats
        engine = self.daemon.modem.engine
        connected = engine is not None and engine.connected
        yield GaugeMetricFamily(
            "bridged_at_engine_healthy",
            "1 while the AT engine is connected and in sync (0 from a timeout until resync).",
            value=int(connected and engine is not None and engine.healthy),
        )
        yield GaugeMetricFamily(
            "bridged_at_pending_commands",
            "AT commands queued or in flight.",
            value=engine.pending if engine is not None and connected else 0,
        )
        commands = _counter(
            "bridged_at_commands",
            "AT commands by result (ok, error, timeout).",
            ["command", "result"],
        )
        names = sorted({name for name, _ in stats.commands})
        for name in names:
            for result in AT_RESULTS:
                commands.add_metric([name, result], stats.commands.get((name, result), 0))
        yield commands
        durations = HistogramMetricFamily(
            "bridged_at_command_duration_seconds",
            "Time from writing an AT command to its final result or timeout.",
            labels=["command"],
        )
        for name in names:
            histogram = stats.durations[name]
            durations.add_metric([name], histogram.cumulative(), histogram.total)
        yield durations
        timeouts = _counter("bridged_at_timeouts", "AT commands that timed out.", ["command"])
        for name in names:
            timeouts.add_metric([name], stats.timeouts.get(name, 0))
        yield timeouts
        urcs = _counter(
            "bridged_urcs",
            "Unsolicited lines from the module by type (unsolicited: a line nobody asked for).",
            ["type"],
        )
        for urc_type in sorted(set(URC_TYPE_NAMES) | set(stats.urcs)):
            urcs.add_metric([urc_type], stats.urcs.get(urc_type, 0))
        yield urcs
        errors = _counter(
            "bridged_protocol_errors", "Serial input that broke the AT dialect, by kind.", ["kind"]
        )
        for kind in sorted(set(PROTOCOL_ERROR_KINDS) | set(stats.protocol_errors)):
            errors.add_metric([kind], stats.protocol_errors.get(kind, 0))
        yield errors
        serial = _counter(
            "bridged_serial_bytes",
            "Bytes on the serial line (in: read from the module, out: written to it).",
            ["direction"],
        )
        serial.add_metric(["in"], stats.bytes_in)
        serial.add_metric(["out"], stats.bytes_out)
        yield serial
        yield CounterMetricFamily(
            "bridged_send_chunks",
            "AT+QSSLSEND commands issued (payload bytes / chunks = coalescing).",
            value=self.daemon.pump.chunks_sent,
        )

    # -- sockets

    def _sockets(self) -> Iterator[Metric]:
        cid = ["connect_id"]
        info = _gauge(
            "bridged_socket_info",
            "Configured socket; always 1.",
            ["connect_id", "mode", "listen", "remote"],
        )
        state = _gauge(
            "bridged_socket_state",
            "SSL socket state: 0 closed, 1 opening, 2 open, 3 closing.",
            cid,
        )
        up = _gauge("bridged_socket_up", "1 while the SSL socket is open.", cid)
        queue = _gauge(
            "bridged_socket_queue_bytes",
            "Client bytes accepted and not yet confirmed sent by the module.",
            cid,
        )
        recv_buffer = _gauge(
            "bridged_socket_recv_buffer_bytes",
            "Received bytes held for a client that is not connected (persistent mode).",
            cid,
        )
        clients = _gauge("bridged_socket_clients", "Local TCP clients attached (0 or 1).", cid)
        opens = _counter(
            "bridged_socket_opens", "AT+QSSLOPEN outcomes by result name.", ["connect_id", "result"]
        )
        remote_closes = _counter(
            "bridged_socket_remote_closes",
            'Connections closed by the network (+QSSLURC: "closed").',
            cid,
        )
        tx = _counter(
            "bridged_socket_tx_bytes", "Payload bytes confirmed sent (+QSSLSEND: ...,0).", cid
        )
        rx = _counter("bridged_socket_rx_bytes", "Payload bytes received in recv URCs.", cid)
        rx_dropped = _counter(
            "bridged_socket_rx_dropped_bytes",
            "Received payload bytes dropped (no client and buffer full, or none allowed).",
            cid,
        )
        tx_lost = _counter(
            "bridged_socket_tx_lost_bytes",
            "Client bytes never confirmed sent; their client was disconnected.",
            cid,
        )
        send_failures = _counter(
            "bridged_socket_send_failures", "AT+QSSLSEND commands that failed.", cid
        )
        connections = _counter(
            "bridged_client_connections",
            "Local TCP client connections by outcome (accepted, refused).",
            ["connect_id", "outcome"],
        )
        streams_ended = _counter(
            "bridged_socket_streams_ended",
            "SSL connections bridged ended itself, and their clients, by reason "
            "(damaged_data, idle_timeout, recv_buffer_full, reconfigured, send_stall).",
            ["connect_id", "reason"],
        )
        for bridge in self.daemon.bridges:
            label = str(bridge.connect_id)
            config = bridge.config
            info.add_metric([label, config.mode, str(config.listen), str(config.remote)], 1)
            current = ChannelState(bridge.state)
            state.add_metric([label], int(current))
            up.add_metric([label], int(current is ChannelState.OPEN))
            queue.add_metric([label], bridge.channel.queued_bytes)
            recv_buffer.add_metric([label], bridge.channel.recv_buffered_bytes)
            clients.add_metric([label], int(bridge.client is not None))
            s = bridge.stats
            for result in sorted(set(OPEN_RESULTS) | set(s.opens)):
                opens.add_metric([label, result], s.opens.get(result, 0))
            remote_closes.add_metric([label], s.remote_closes)
            tx.add_metric([label], s.tx_bytes)
            rx.add_metric([label], s.rx_bytes)
            rx_dropped.add_metric([label], s.rx_dropped_bytes)
            tx_lost.add_metric([label], s.tx_lost_bytes)
            send_failures.add_metric([label], s.send_failures)
            for outcome in sorted(set(CLIENT_OUTCOMES) | set(s.client_connections)):
                connections.add_metric([label, outcome], s.client_connections.get(outcome, 0))
            for reason in sorted(set(STREAM_END_REASONS) | set(s.streams_broken)):
                streams_ended.add_metric([label, reason], s.streams_broken.get(reason, 0))
        yield from (info, state, up, queue, recv_buffer, clients, opens, remote_closes)
        yield from (tx, rx, rx_dropped, tx_lost, send_failures, connections, streams_ended)

    # -- link health (absent, never zero, when unknown)

    def _link(self) -> Iterator[Metric]:
        if self.link_health is None:
            return
        snapshot = self.link_health.snapshot
        signal, registration, cell = snapshot.signal, snapshot.registration, snapshot.cell
        values: list[tuple[str, str, float | None]] = [
            (
                "bridged_signal_rssi_dbm",
                "Received signal strength from AT+CSQ, dBm (absent when unknown).",
                signal.rssi_dbm if signal else None,
            ),
            (
                "bridged_signal_rsrp_dbm",
                "Serving cell RSRP from AT+QENG=0, dBm.",
                cell.rsrp_dbm if cell else None,
            ),
            (
                "bridged_signal_rsrq_db",
                "Serving cell RSRQ from AT+QENG=0, dB.",
                cell.rsrq_db if cell else None,
            ),
            (
                "bridged_signal_sinr_db",
                "Serving cell SINR from AT+QENG=0, dB.",
                cell.sinr_db if cell else None,
            ),
            (
                "bridged_signal_ecl",
                "NB-IoT coverage enhancement level from AT+QENG=0 (0 normal .. 2 extreme).",
                cell.ecl if cell else None,
            ),
            (
                "bridged_network_registered",
                "1 when AT+CEREG? says registered (home or roaming), else 0.",
                int(registration.registered) if registration else None,
            ),
            (
                "bridged_network_registration_status",
                "AT+CEREG? <stat>: 0 not searching, 1 home, 2 searching, 3 denied, "
                "4 unknown, 5 roaming.",
                registration.status if registration else None,
            ),
        ]
        for name, doc, value in values:
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)
        if cell is not None and cell.cell_id is not None:
            info = _gauge(
                "bridged_serving_cell_info",
                "Serving cell from AT+QENG=0; always 1.",
                ["cell_id", "pci", "earfcn", "band", "tac"],
            )
            info.add_metric(
                [
                    cell.cell_id,
                    _label(cell.pci),
                    _label(cell.earfcn),
                    _label(cell.band),
                    cell.tac or "",
                ],
                1,
            )
            yield info


def _header(request: Request, name: bytes, value: bytes) -> None:
    request.responseHeaders.setRawHeaders(name, [value])


def _label(value: int | None) -> str:
    return "" if value is None else str(value)


# --------------------------------------------------------------------------- health


def health_report(daemon: Daemon) -> dict[str, Any]:
    """What ``/healthz`` returns; ``ok`` decides 200 or 503."""
    modem = daemon.modem
    serial_up = modem.state is not ModemState.SERIAL_DOWN
    module_ready = modem.state is ModemState.READY
    ok = serial_up and module_ready and daemon.ready
    return {
        "status": "ok" if ok else "unavailable",
        "serial": "up" if serial_up else "down",
        "module": modem.state.value,
        "listening": daemon.listening,
        "sockets": [
            {
                "connect_id": b.connect_id,
                "state": ChannelState(b.state).name.lower(),
                "up": b.state is ChannelState.OPEN,
                "client": b.client is not None,
                "queue_bytes": b.channel.queued_bytes,
                "mode": b.config.mode,
                "listen": str(b.config.listen),
                "remote": str(b.config.remote),
            }
            for b in daemon.bridges
        ],
    }


# --------------------------------------------------------------------------- twisted.web


class MetricsResource(Resource):
    """``/metrics``: the registry in the Prometheus text format, rendered right here."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        try:
            body: bytes = generate_latest(self.registry)
        except Exception:
            log.failure("collecting metrics failed")
            request.setResponseCode(500)
            _header(request, b"content-type", b"text/plain; charset=utf-8")
            return b"collecting metrics failed; see the bridged log\n"
        _header(request, b"content-type", CONTENT_TYPE.encode("ascii"))
        _header(request, b"cache-control", b"no-store")
        return body


class HealthResource(Resource):
    """``/healthz``: 200 when serial is up and the module ready, else 503; JSON body."""

    isLeaf = True

    def __init__(self, daemon: Daemon) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.daemon = daemon

    def render_GET(self, request: Request) -> bytes:
        report = health_report(self.daemon)
        request.setResponseCode(200 if report["status"] == "ok" else 503)
        _header(request, b"content-type", b"application/json")
        _header(request, b"cache-control", b"no-store")
        return json.dumps(report, indent=2).encode() + b"\n"


class IndexResource(Resource):
    """``/``: where to look."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def render_GET(self, request: Request) -> bytes:
        _header(request, b"content-type", b"text/plain; charset=utf-8")
        return b"bridged: /metrics (Prometheus), /healthz (JSON)\n"

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return self
        return pages.notFound()  # type: ignore[return-value]


class QuietSite(Site):
    """A Site that does not log every request (a scrape every 15 s is not news)."""

    noisy = False

    def log(self, request: http.Request) -> None:
        pass


def make_registry(
    daemon: Daemon, at_stats: ATStats, link_health: LinkHealth | None = None
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BridgedCollector(daemon, at_stats, link_health))
    return registry


def make_site(registry: CollectorRegistry, daemon: Daemon) -> Site:
    root = IndexResource()
    root.putChild(b"metrics", MetricsResource(registry))
    root.putChild(b"healthz", HealthResource(daemon))
    return QuietSite(root)  # type: ignore[no-untyped-call]


def attach_at_stats(daemon: Daemon) -> ATStats:
    """Totals of AT commands, events and serial bytes over every engine the modem makes."""
    stats = ATStats()
    daemon.modem.engine_listeners.append(stats.engine_created)
    if daemon.modem.engine is not None:
        stats.attach(daemon.modem.engine)
    return stats


def install_metrics(
    daemon: Daemon,
    reactor: IReactorTCP,
    listen: Endpoint,
    *,
    link_health: LinkHealth | None = None,
) -> IListeningPort:
    """Serve ``/metrics`` and ``/healthz`` at ``listen``; returns the listening port.

    Call before ``daemon.start()`` so the first engine's commands are counted too (later
    works, counting from then on). ``link_health`` (from
    :func:`bridged.shell.link_health.start_link_health`) adds the signal and registration gauges.
    """
    stats = attach_at_stats(daemon)
    site = make_site(make_registry(daemon, stats, link_health), daemon)
    port = reactor.listenTCP(listen.port, site, interface=listen.host)  # type: ignore[arg-type]
    log.info("metrics on http://{listen}/metrics", listen=listen)
    return port


__all__ = [
    "ATStats",
    "BridgedCollector",
    "attach_at_stats",
    "health_report",
    "install_metrics",
    "make_registry",
    "make_site",
]
