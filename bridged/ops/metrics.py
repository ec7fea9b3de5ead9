"""Prometheus metrics: every family bridged exports, as data, and the one collector.

``GET /metrics`` (:mod:`bridged.ops.web`) renders a dedicated
:class:`~prometheus_client.CollectorRegistry` with ``generate_latest`` inside
``render_GET``: the collector takes one :class:`~bridged.ops.snapshot.DaemonSnapshot`
right there, in the reactor thread, so one scrape is one consistent picture and nothing
needs a lock. (prometheus_client's own HTTP server would read from another thread while
the reactor mutates the same objects.)

:data:`FAMILIES` is the whole contract, in the order of the exposition: name, type, help,
labels, and how the samples are read from a snapshot. A family whose reader returns None
is left out of that scrape (the link-health gauges, absent rather than zero when unknown).
The names and labels are public (dashboards, alerts): see ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.logger import Logger

from bridged import __version__
from bridged.config import Endpoint
from bridged.core.channel import ChannelState
from bridged.core.link_readings import LinkReadings
from bridged.core.qssl_commands import ERROR_NAMES
from bridged.ops.at_stats import AT_DURATION_BUCKETS, URC_TYPE_NAMES, ATStats
from bridged.ops.snapshot import ATTotals, DaemonSnapshot, Histogram, SocketSnapshot
from bridged.ops.web import make_site

log = Logger(namespace="bridged.metrics")

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
PROTOCOL_ERROR_KINDS = (
    "bad_hex",
    "bad_recv_data",
    "bad_recv_header",
    "bad_recv_length",
    "bad_urc",
    "line_too_long",
)
SERIAL_DIRECTIONS = ("in", "out")  # in: read from the module; out: written to it

NO_AT_TRAFFIC = ATTotals({}, {}, {}, {}, {}, 0, 0)

# --------------------------------------------------------------------------- the table

Value = float | Histogram
Sample = tuple[tuple[str, ...], Value]  # label values, value
Samples = Callable[[DaemonSnapshot], Iterable[Sample] | None]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: what a scraper sees, and where its samples come from."""

    name: str  # counters without ``_total``: prometheus_client adds it
    type: Literal["gauge", "counter", "histogram"]
    help: str
    labels: tuple[str, ...]
    samples: Samples  # None: the family is absent from this scrape


def scalar(read: Callable[[DaemonSnapshot], float | None]) -> Samples:
    """One unlabelled sample; absent when ``read`` says None."""

    def samples(snapshot: DaemonSnapshot) -> list[Sample] | None:
        found = read(snapshot)
        return None if found is None else [((), found)]

    return samples


def _keys(known: Sequence[str], counts: Mapping[str, int]) -> list[str]:
    """The known label values (exported at 0) and any other that has counted, sorted."""
    return sorted(set(known) | set(counts))


def by_key(known: Sequence[str], read: Callable[[DaemonSnapshot], Mapping[str, int]]) -> Samples:
    """A counter per key: the known keys always, and whatever else was counted."""

    def samples(snapshot: DaemonSnapshot) -> Iterator[Sample]:
        counts = read(snapshot)
        return (((key,), counts.get(key, 0)) for key in _keys(known, counts))

    return samples


def per_socket(read: Callable[[SocketSnapshot], float]) -> Samples:
    return lambda s: (((str(sock.connect_id),), read(sock)) for sock in s.sockets)


def per_socket_by(
    known: Sequence[str], read: Callable[[SocketSnapshot], Mapping[str, int]]
) -> Samples:
    def samples(snapshot: DaemonSnapshot) -> Iterator[Sample]:
        for sock in snapshot.sockets:
            counts = read(sock)
            for key in _keys(known, counts):
                yield (str(sock.connect_id), key), counts.get(key, 0)

    return samples


def _at(snapshot: DaemonSnapshot) -> ATTotals:
    return snapshot.at or NO_AT_TRAFFIC


def _commands(snapshot: DaemonSnapshot) -> list[str]:
    return sorted({name for name, _ in _at(snapshot).commands})


def _command_results(snapshot: DaemonSnapshot) -> Iterator[Sample]:
    commands = _at(snapshot).commands
    for name in _commands(snapshot):
        for result in AT_RESULTS:
            yield (name, result), commands.get((name, result), 0)


def _durations(snapshot: DaemonSnapshot) -> Iterator[Sample]:
    for name in _commands(snapshot):
        yield (name,), _at(snapshot).durations[name]


def _timeouts(snapshot: DaemonSnapshot) -> Iterator[Sample]:
    for name in _commands(snapshot):
        yield (name,), _at(snapshot).timeouts.get(name, 0)


def _serial_bytes(snapshot: DaemonSnapshot) -> list[Sample]:
    at = _at(snapshot)
    return [((d,), n) for d, n in zip(SERIAL_DIRECTIONS, (at.bytes_in, at.bytes_out), strict=True)]


def _engine_healthy(snapshot: DaemonSnapshot) -> int:
    engine = snapshot.engine
    return int(engine is not None and engine.connected and engine.healthy)


def _engine_pending(snapshot: DaemonSnapshot) -> int:
    engine = snapshot.engine
    return engine.pending if engine is not None and engine.connected else 0


def _socket_info(snapshot: DaemonSnapshot) -> Iterator[Sample]:
    for sock in snapshot.sockets:
        yield (str(sock.connect_id), sock.mode, sock.listen, sock.remote), 1


def _link(read: Callable[[LinkReadings], float | None]) -> Samples:
    """A link-health gauge: absent (never zero) when polling is off or it is unknown."""
    return scalar(lambda s: None if s.link is None else read(s.link.readings))


def _serving_cell(snapshot: DaemonSnapshot) -> list[Sample] | None:
    cell = None if snapshot.link is None else snapshot.link.readings.cell
    if cell is None or cell.cell_id is None:
        return None
    labels = (cell.cell_id, _label(cell.pci), _label(cell.earfcn), _label(cell.band))
    return [((*labels, cell.tac or ""), 1)]


def _label(value: int | None) -> str:
    return "" if value is None else str(value)


CID = ("connect_id",)

# fmt: off
FAMILIES: tuple[Family, ...] = (
    # -- daemon and module
    Family("bridged_build_info", "gauge", "bridged version; always 1.", ("version",),
           lambda s: [((__version__,), 1)]),
    Family("bridged_serial_up", "gauge", "1 while the serial port to the module is open.", (),
           scalar(lambda s: int(s.modem.serial_up))),
    Family("bridged_serial_reopens", "counter", "Times the serial port was lost and reopened.",
           (), scalar(lambda s: s.modem.serial_reopens)),
    Family("bridged_module_ready", "gauge",
           "1 while the module is initialised and every socket configured.", (),
           scalar(lambda s: int(s.modem.module_ready))),
    Family("bridged_ready", "gauge",
           "1 while bridged is ready for clients (module ready and listening); as /healthz.",
           (), scalar(lambda s: int(s.ready))),
    Family("bridged_module_restarts", "counter",
           "Module re-initialisations by reason (reboot seen, reset sent, serial reopened).",
           ("reason",), by_key(RESTART_REASONS, lambda s: s.modem.restarts)),
    # -- AT engine
    Family("bridged_at_engine_healthy", "gauge",
           "1 while the AT engine is connected and in sync (0 from a timeout until resync).",
           (), scalar(_engine_healthy)),
    Family("bridged_at_pending_commands", "gauge", "AT commands queued or in flight.", (),
           scalar(_engine_pending)),
    Family("bridged_at_commands", "counter", "AT commands by result (ok, error, timeout).",
           ("command", "result"), _command_results),
    Family("bridged_at_command_duration_seconds", "histogram",
           "Time from writing an AT command to its final result or timeout.", ("command",),
           _durations),
    Family("bridged_at_timeouts", "counter", "AT commands that timed out.", ("command",),
           _timeouts),
    Family("bridged_urcs", "counter",
           "Unsolicited lines from the module by type (unsolicited: a line nobody asked for).",
           ("type",), by_key(URC_TYPE_NAMES, lambda s: _at(s).urcs)),
    Family("bridged_protocol_errors", "counter",
           "Serial input that broke the AT dialect, by kind.", ("kind",),
           by_key(PROTOCOL_ERROR_KINDS, lambda s: _at(s).protocol_errors)),
    Family("bridged_serial_bytes", "counter",
           "Bytes on the serial line (in: read from the module, out: written to it).",
           ("direction",), _serial_bytes),
    Family("bridged_send_chunks", "counter",
           "AT+QSSLSEND commands issued (payload bytes / chunks = coalescing).", (),
           scalar(lambda s: s.send_chunks)),
    # -- sockets
    Family("bridged_socket_info", "gauge", "Configured socket; always 1.",
           ("connect_id", "mode", "listen", "remote"), _socket_info),
    Family("bridged_socket_state", "gauge",
           "SSL socket state: 0 closed, 1 opening, 2 open, 3 closing.", CID,
           per_socket(lambda sock: int(sock.state))),
    Family("bridged_socket_up", "gauge", "1 while the SSL socket is open.", CID,
           per_socket(lambda sock: int(sock.state is ChannelState.OPEN))),
    Family("bridged_socket_queue_bytes", "gauge",
           "Client bytes accepted and not yet confirmed sent by the module.", CID,
           per_socket(lambda sock: sock.queued_bytes)),
    Family("bridged_socket_recv_buffer_bytes", "gauge",
           "Received bytes held for a client that is not connected (persistent mode).", CID,
           per_socket(lambda sock: sock.recv_buffered_bytes)),
    Family("bridged_socket_clients", "gauge", "Local TCP clients attached (0 or 1).", CID,
           per_socket(lambda sock: int(sock.client_peer is not None))),
    Family("bridged_socket_opens", "counter", "AT+QSSLOPEN outcomes by result name.",
           ("connect_id", "result"), per_socket_by(OPEN_RESULTS, lambda sock: sock.opens)),
    Family("bridged_socket_remote_closes", "counter",
           'Connections closed by the network (+QSSLURC: "closed").', CID,
           per_socket(lambda sock: sock.remote_closes)),
    Family("bridged_socket_tx_bytes", "counter",
           "Payload bytes confirmed sent (+QSSLSEND: ...,0).", CID,
           per_socket(lambda sock: sock.tx_bytes)),
    Family("bridged_socket_rx_bytes", "counter", "Payload bytes received in recv URCs.", CID,
           per_socket(lambda sock: sock.rx_bytes)),
    Family("bridged_socket_rx_dropped_bytes", "counter",
           "Received payload bytes dropped (no client and buffer full, or none allowed).",
           CID, per_socket(lambda sock: sock.rx_dropped_bytes)),
    Family("bridged_socket_tx_lost_bytes", "counter",
           "Client bytes never confirmed sent; their client was disconnected.", CID,
           per_socket(lambda sock: sock.tx_lost_bytes)),
    Family("bridged_socket_send_failures", "counter", "AT+QSSLSEND commands that failed.",
           CID, per_socket(lambda sock: sock.send_failures)),
    Family("bridged_client_connections", "counter",
           "Local TCP client connections by outcome (accepted, refused).",
           ("connect_id", "outcome"),
           per_socket_by(CLIENT_OUTCOMES, lambda sock: sock.client_connections)),
    Family("bridged_socket_streams_ended", "counter",
           "SSL connections bridged ended itself, and their clients, by reason "
           "(damaged_data, idle_timeout, recv_buffer_full, reconfigured, send_stall).",
           ("connect_id", "reason"),
           per_socket_by(STREAM_END_REASONS, lambda sock: sock.streams_broken)),
    # -- link health (absent, never zero, when unknown)
    Family("bridged_signal_rssi_dbm", "gauge",
           "Received signal strength from AT+CSQ, dBm (absent when unknown).", (),
           _link(lambda r: r.signal.rssi_dbm if r.signal else None)),
    Family("bridged_signal_rsrp_dbm", "gauge", "Serving cell RSRP from AT+QENG=0, dBm.", (),
           _link(lambda r: r.cell.rsrp_dbm if r.cell else None)),
    Family("bridged_signal_rsrq_db", "gauge", "Serving cell RSRQ from AT+QENG=0, dB.", (),
           _link(lambda r: r.cell.rsrq_db if r.cell else None)),
    Family("bridged_signal_sinr_db", "gauge", "Serving cell SINR from AT+QENG=0, dB.", (),
           _link(lambda r: r.cell.sinr_db if r.cell else None)),
    Family("bridged_signal_ecl", "gauge",
           "NB-IoT coverage enhancement level from AT+QENG=0 (0 normal .. 2 extreme).", (),
           _link(lambda r: r.cell.ecl if r.cell else None)),
    Family("bridged_network_registered", "gauge",
           "1 when AT+CEREG? says registered (home or roaming), else 0.", (),
           _link(lambda r: int(r.registration.registered) if r.registration else None)),
    Family("bridged_network_registration_status", "gauge",
           "AT+CEREG? <stat>: 0 not searching, 1 home, 2 searching, 3 denied, "
           "4 unknown, 5 roaming.", (),
           _link(lambda r: r.registration.status if r.registration else None)),
    Family("bridged_serving_cell_info", "gauge", "Serving cell from AT+QENG=0; always 1.",
           ("cell_id", "pci", "earfcn", "band", "tac"), _serving_cell),
)
# fmt: on

# --------------------------------------------------------------------------- collector


def render(family: Family, samples: Iterable[Sample]) -> Metric:
    """One family of one scrape, as prometheus_client writes it."""
    labels = list(family.labels)
    if family.type == "histogram":
        histogram = HistogramMetricFamily(family.name, family.help, labels=labels)
        for values, found in samples:
            assert isinstance(found, Histogram)
            histogram.add_metric(list(values), list(found.buckets), found.total)
        return histogram
    kind = GaugeMetricFamily if family.type == "gauge" else CounterMetricFamily
    metric = kind(family.name, family.help, labels=labels)
    for values, found in samples:
        assert not isinstance(found, Histogram)
        metric.add_metric(list(values), found)
    return metric


class BridgedCollector(Collector):
    """Renders :data:`FAMILIES` from one snapshot per scrape. Call in the reactor thread."""

    def __init__(
        self,
        snapshot: Callable[[], DaemonSnapshot],
        families: Sequence[Family] = FAMILIES,
    ) -> None:
        self.snapshot = snapshot
        self.families = families

    def describe(self) -> Iterable[Metric]:
        return []  # names are fixed; no collect() at registration time

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot()
        for family in self.families:
            samples = family.samples(snapshot)
            if samples is not None:
                yield render(family, samples)


def make_registry(snapshot: Callable[[], DaemonSnapshot]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BridgedCollector(snapshot))
    return registry


def install_metrics(
    snapshot: Callable[[], DaemonSnapshot], reactor: IReactorTCP, listen: Endpoint
) -> IListeningPort:
    """Serve ``/metrics`` and ``/healthz`` at ``listen``, both read from ``snapshot``;
    returns the listening port. AT traffic is in the snapshot when an :class:`ATStats`
    counts it (the composition root attaches one before the modem starts)."""
    site = make_site(make_registry(snapshot), snapshot)
    port = reactor.listenTCP(listen.port, site, interface=listen.host)  # type: ignore[arg-type]
    log.info("metrics on http://{listen}/metrics", listen=listen)
    return port


# ATStats and its buckets are re-exported: they are what a metrics user attaches.
__all__ = [
    "AT_DURATION_BUCKETS",
    "FAMILIES",
    "ATStats",
    "BridgedCollector",
    "Family",
    "install_metrics",
    "make_registry",
]
