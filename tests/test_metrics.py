"""Metrics and /healthz: the collector against real daemon objects, and scrapes over real
HTTP during real end-to-end transfers (emulator on a pty, socat mutual-TLS echo server)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from bridged.config import Endpoint, load_config, parse_config
from bridged.core.channel import ChannelState
from bridged.core.link_readings import (
    LinkReadings,
    Registration,
    ServingCell,
    SignalQuality,
    parse_cereg,
    parse_csq,
    parse_qeng,
)
from bridged.emulator import Emulator, ResultCode
from bridged.emulator.basic_commands import ENGINEERING_LINE, SIGNAL_QUALITY_LINE
from bridged.ops.metrics import (
    AT_DURATION_BUCKETS,
    FAMILIES,
    ATStats,
    install_metrics,
    make_registry,
)
from bridged.ops.status import install_status
from bridged.ops.web import health_report, make_site
from bridged.shell.at_engine import ATEngine
from bridged.shell.daemon import Daemon, Readout
from bridged.shell.link_health import LinkHealth, start_link_health
from bridged.shell.modem import ModemState
from tests.support.pki import Pki, make_pki
from tests.support.tls_servers import RunningServer, free_port, start_socat_echo_server
from tests.support.waiting import sleep, wait_until

PROMTOOL = shutil.which("promtool")

# --------------------------------------------------------------------------- helpers


@dataclass
class Scrape:
    """One /metrics body, parsed: ``scrape.value("name", label="x")``."""

    text: str
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for family in text_string_to_metric_families(self.text):
            self.types[family.name] = family.type
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                assert key not in self.samples, f"duplicate sample {key}"
                self.samples[key] = sample.value

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def v(self, name: str, **labels: str) -> float:
        value = self.value(name, **labels)
        assert value is not None, f"no sample {name}{labels}"
        return value

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def delta(self, before: Scrape, name: str, **labels: str) -> float:
        """Counter increase since ``before``; a series not there yet counted 0."""
        return self.v(name, **labels) - (before.value(name, **labels) or 0.0)


def _blocking_get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


async def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """A real HTTP GET from another thread, as Prometheus would do it."""
    url = f"http://127.0.0.1:{port}{path}"
    result: tuple[int, dict[str, str], bytes] = await threads.deferToThread(_blocking_get, url)
    return result


async def scrape(port: int) -> Scrape:
    code, headers, body = await http_get(port, "/metrics")
    assert code == 200, body
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return Scrape(body.decode())


def promtool_check(text: str) -> str:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    return (result.stdout + result.stderr).strip()


def daemon_from(text: str) -> Daemon:
    return Daemon(reactor, parse_config(text, check_files=False))


TWO_SOCKETS = """
serial: {device: /dev/null-bridged-test}
ssl: {seclevel: 0}
sockets:
  - {connect_id: 0, listen: "127.0.0.1:17100", remote: "example.com:443"}
  - {connect_id: 4, listen: "127.0.0.1:17104", remote: "example.com:8883", mode: persistent}
"""


def readout(daemon: Daemon, stats: ATStats | None = None, health: Any = None) -> Readout:
    """What the composition root gives metrics, /healthz and status to read."""
    source = Readout(daemon)
    source.at_stats = stats or ATStats()
    source.link_health = health
    return source


def collect(daemon: Daemon, stats: ATStats | None = None, health: Any = None) -> Scrape:
    registry = make_registry(readout(daemon, stats, health))
    return Scrape(generate_latest(registry).decode())


# --------------------------------------------------------------------------- collector


def test_every_family_is_exported_from_the_start_with_zeros() -> None:
    daemon = daemon_from(TWO_SOCKETS)
    s = collect(daemon)
    assert s.v("bridged_build_info", version="0.1.0") == 1
    assert s.v("bridged_serial_up") == 0 and s.v("bridged_module_ready") == 0
    for reason in ("reboot", "reset", "serial_reopen"):
        assert s.v("bridged_module_restarts_total", reason=reason) == 0
    for cid in ("0", "4"):
        assert s.v("bridged_socket_state", connect_id=cid) == 0
        assert s.v("bridged_socket_up", connect_id=cid) == 0
        for result in (
            "ok",
            "exception",
            "connection_error",
            "cert_error",
            "key_error",
            "cipher_error",
            "state_error",
            "timeout",
            "other",
            "unknown",
        ):
            assert s.v("bridged_socket_opens_total", connect_id=cid, result=result) == 0
        for outcome in ("accepted", "refused"):
            assert s.v("bridged_client_connections_total", connect_id=cid, outcome=outcome) == 0
    assert s.v(
        "bridged_socket_info",
        connect_id="4",
        mode="persistent",
        listen="127.0.0.1:17104",
        remote="example.com:8883",
    )
    assert s.v("bridged_serial_bytes_total", direction="in") == 0
    assert s.v("bridged_urcs_total", type="recv") == 0
    assert s.v("bridged_protocol_errors_total", kind="bad_hex") == 0
    # No link health configured: those gauges are absent, not zero.
    assert not {n for n in s.names() if n.startswith(("bridged_signal", "bridged_network"))}
    # No `_created` series (prometheus_client adds them to its own Counter objects).
    assert not {n for n in s.names() if n.endswith("_created")}


def test_socket_stats_and_state_are_read_at_scrape_time() -> None:
    daemon = daemon_from(TWO_SOCKETS)
    bridge = daemon.bridges[1]
    stats = bridge.stats
    stats.tx_bytes, stats.rx_bytes, stats.rx_dropped_bytes = 1000, 2000, 30
    stats.tx_lost_bytes, stats.remote_closes, stats.send_failures = 7, 2, 1
    stats.opens["ok"] += 3
    stats.opens["cert_error"] += 1
    stats.client_connections["accepted"] += 5
    daemon.modem.restarts["reboot"] = 2
    daemon.modem.serial_reopens = 4
    s = collect(daemon)
    labels = {"connect_id": "4"}
    assert s.v("bridged_socket_tx_bytes_total", **labels) == 1000
    assert s.v("bridged_socket_rx_bytes_total", **labels) == 2000
    assert s.v("bridged_socket_rx_dropped_bytes_total", **labels) == 30
    assert s.v("bridged_socket_tx_lost_bytes_total", **labels) == 7
    assert s.v("bridged_socket_remote_closes_total", **labels) == 2
    assert s.v("bridged_socket_send_failures_total", **labels) == 1
    assert s.v("bridged_socket_opens_total", result="ok", **labels) == 3
    assert s.v("bridged_socket_opens_total", result="cert_error", **labels) == 1
    assert s.v("bridged_client_connections_total", outcome="accepted", **labels) == 5
    assert s.v("bridged_socket_tx_bytes_total", connect_id="0") == 0
    assert s.v("bridged_module_restarts_total", reason="reboot") == 2
    assert s.v("bridged_serial_reopens_total") == 4
    # A result name the list does not know still shows up (never silently dropped).
    stats.opens["surprise"] += 1
    assert collect(daemon).v("bridged_socket_opens_total", result="surprise", **labels) == 1


def test_at_totals_survive_a_new_engine() -> None:
    """A serial reopen builds a new ATEngine; counters must carry on, not restart."""
    daemon = daemon_from(TWO_SOCKETS)
    stats = Readout(daemon).count_at_traffic()
    assert stats.engine_created in daemon.modem.engine_observers

    def new_engine() -> ATEngine:
        engine = ATEngine(reactor, guard_time=0.0)
        engine.makeConnection(StringTransport())
        daemon.modem.engine = engine
        for listener in daemon.modem.engine_observers:
            if listener == stats.engine_created:
                listener(engine, None)  # type: ignore[arg-type]
        return engine

    first = new_engine()
    first.dataReceived(b'\r\n+QSSLURC: "closed",1,0\r\n\r\nRDY\r\n')
    first.dataReceived(b'\r\n+QSSLURC: "recv",1,0,2,"zzzz"\r\n')  # not hex
    first.bytes_out += 100
    for observer in first.command_observers:
        observer("AT+CSQ", "ok", 0.02)
        observer("AT+CSQ", "timeout", 5.0)
    second = new_engine()
    second.dataReceived(b'\r\n+QSSLURC: "closed",1,1\r\n')
    second.bytes_out += 11
    for observer in second.command_observers:
        observer("AT+CSQ", "ok", 0.5)
    s = collect(daemon, stats)
    assert s.v("bridged_serial_bytes_total", direction="in") == first.bytes_in + second.bytes_in
    assert s.v("bridged_serial_bytes_total", direction="out") == 111
    assert s.v("bridged_urcs_total", type="closed") == 2
    assert s.v("bridged_urcs_total", type="boot") == 1
    assert s.v("bridged_protocol_errors_total", kind="bad_hex") == 1
    assert s.v("bridged_at_commands_total", command="AT+CSQ", result="ok") == 2
    assert s.v("bridged_at_commands_total", command="AT+CSQ", result="timeout") == 1
    assert s.v("bridged_at_commands_total", command="AT+CSQ", result="error") == 0
    assert s.v("bridged_at_timeouts_total", command="AT+CSQ") == 1
    hist = "bridged_at_command_duration_seconds"
    assert s.v(f"{hist}_count", command="AT+CSQ") == 3
    assert s.v(f"{hist}_sum", command="AT+CSQ") == pytest.approx(5.52)
    assert s.v(f"{hist}_bucket", command="AT+CSQ", le="0.01") == 0
    assert s.v(f"{hist}_bucket", command="AT+CSQ", le="0.025") == 1
    assert s.v(f"{hist}_bucket", command="AT+CSQ", le="0.5") == 2  # le is inclusive
    assert s.v(f"{hist}_bucket", command="AT+CSQ", le="5.0") == 3
    assert s.v(f"{hist}_bucket", command="AT+CSQ", le="+Inf") == 3
    assert len([k for k in s.samples if k[0] == f"{hist}_bucket"]) == len(AT_DURATION_BUCKETS) + 1
    assert s.v("bridged_at_engine_healthy") == 1
    # Attaching the same engine again must not double-count.
    stats.attach(second)
    assert collect(daemon, stats).v("bridged_urcs_total", type="closed") == 2


def test_link_gauges_are_absent_when_unknown_never_zero() -> None:
    daemon = daemon_from(TWO_SOCKETS)
    health = LinkHealth(reactor, daemon.modem, interval=60)
    s = collect(daemon, health=health)
    link = {n for n in s.names() if n.startswith(("bridged_signal", "bridged_network"))}
    assert link == set()
    health.readings = LinkReadings(
        signal=SignalQuality(rssi=None, rssi_dbm=None),  # +CSQ: 99,99
        registration=Registration(mode=0, status=2),
        cell=ServingCell(
            earfcn=3736,
            earfcn_offset=None,
            pci=246,
            cell_id="0F4C7A21",
            rsrp_dbm=-121,
            rsrq_db=None,
            rssi_dbm=None,
            sinr_db=-3,
            band=8,
            tac="2F4A",
            ecl=2,
        ),
    )
    s = collect(daemon, health=health)
    assert s.value("bridged_signal_rssi_dbm") is None
    assert s.value("bridged_signal_rsrq_db") is None
    assert s.v("bridged_signal_rsrp_dbm") == -121
    assert s.v("bridged_signal_sinr_db") == -3
    assert s.v("bridged_signal_ecl") == 2
    assert s.v("bridged_network_registered") == 0
    assert s.v("bridged_network_registration_status") == 2
    assert s.v(
        "bridged_serving_cell_info",
        cell_id="0F4C7A21",
        pci="246",
        earfcn="3736",
        band="8",
        tac="2F4A",
    )


# --------------------------------------------------------------------------- pinned output

GOLDEN = Path(__file__).parent / "golden"


@dataclass
class PinnedState:
    """Daemon objects in one fixed state, every value distinct, and what reads them."""

    daemon: Daemon
    stats: ATStats
    health: LinkHealth
    clock: Clock


def pinned_state() -> PinnedState:
    """Every family with samples, every label set, no two values equal by chance."""
    daemon = daemon_from(TWO_SOCKETS)
    modem = daemon.modem
    modem.state = ModemState.READY
    modem.serial_reopens = 3
    modem.restarts.update({"reboot": 2, "reset": 1, "firmware_update": 7})
    daemon.listening = True
    daemon.pump.chunks_sent = 41
    engine = ATEngine(Clock(), guard_time=0.0)
    engine.makeConnection(StringTransport())
    modem.engine = engine
    stats = ATStats()
    stats.attach(engine)
    engine.dataReceived(b'\r\n+QSSLURC: "closed",4,0\r\n\r\nRDY\r\n+WEIRD: 1\r\n')
    engine.dataReceived(b'\r\n+QSSLURC: "recv",4,0,2,"zzzz"\r\n')  # not hex
    engine.dataReceived(b'\r\n+QSSLURC: "closed",1,0\r\n')
    engine.command("AT+CGMR")  # never answered: one command in flight
    engine.bytes_out += 1234
    stats.observe_command("AT+QSSLSEND", "ok", 0.61)
    stats.observe_command("AT+QSSLSEND", "ok", 0.004)
    stats.observe_command("AT+QSSLSEND", "error", 2.5)
    stats.observe_command("AT+CSQ", "timeout", 5.0)
    stats.observe_command("AT+QSSLOPEN", "ok", 75.0)
    for n, bridge in enumerate(daemon.bridges, start=1):
        s = bridge.stats
        s.tx_bytes, s.rx_bytes, s.rx_dropped_bytes = 1000 * n, 2000 * n + 1, 30 * n
        s.tx_lost_bytes, s.remote_closes, s.send_failures = 7 * n, 2 * n, 5 * n
        s.opens.update({"ok": 3 * n, "cert_error": n, "surprise": 11})
        s.client_connections.update({"accepted": 5 * n, "refused": 13 * n})
        s.streams_broken.update({"idle_timeout": n, "send_stall": 17, "new_reason": 19})
        s.state_since, s.client_since = 100.0 * n, 150.0 * n
        s.error(f"socket {bridge.connect_id}: open failed: timeout (-7)", 90.0 * n)
    open_bridge = daemon.bridges[1]
    channel = open_bridge.channel
    channel._state = ChannelState.OPEN
    channel._queue = bytearray(b"q" * 23)
    channel._recv_buffer = bytearray(b"r" * 29)
    open_bridge.client = SimpleNamespace(peer="127.0.0.1:50122")  # type: ignore[assignment]
    daemon.bridges[0].channel._state = ChannelState.CLOSING
    health = LinkHealth(reactor, modem, interval=60)
    health.readings = LinkReadings(
        signal=parse_csq([SIGNAL_QUALITY_LINE]),
        registration=parse_cereg(["+CEREG: 0,5"]),
        cell=parse_qeng([ENGINEERING_LINE]),
    )
    health.updated_at = 470.0
    clock = Clock()
    clock.advance(400)
    return PinnedState(daemon, stats, health, clock)


def pinned_readout(state: PinnedState) -> Readout:
    return readout(state.daemon, state.stats, state.health)


def pinned_metrics(state: PinnedState) -> str:
    return generate_latest(make_registry(pinned_readout(state))).decode()


def pinned_health(state: PinnedState) -> str:
    return json.dumps(health_report(pinned_readout(state)()), indent=2) + "\n"


def pinned_status(state: PinnedState) -> str:
    current = install_status(pinned_readout(state), state.clock)
    state.clock.advance(100)
    return json.dumps(current().to_json(), indent=2) + "\n"


@pytest.mark.parametrize(
    ("render", "golden"),
    [
        (pinned_metrics, "metrics.prom"),
        (pinned_health, "healthz.json"),
        (pinned_status, "status.json"),
    ],
)
def test_output_in_a_fixed_state_is_pinned(render: Any, golden: str) -> None:
    """The exact /metrics text (names, types, help, labels, values, order), /healthz body
    and status reply: dashboards, alerts and scripts read them, so any change shows here."""
    assert render(pinned_state()) == (GOLDEN / golden).read_text()


def test_the_family_table_is_consistent() -> None:
    """Each row: a unique name, and every sample it reads carries one value per label (a
    short tuple would be silently cut by prometheus_client)."""
    names = [family.name for family in FAMILIES]
    assert len(names) == len(set(names)) == 38
    snapshot = pinned_readout(pinned_state())()
    for family in FAMILIES:
        samples = family.samples(snapshot)
        assert samples is not None, family.name  # the pinned state shows every family
        for labels, _ in samples:
            assert len(labels) == len(family.labels), family.name


# --------------------------------------------------------------------------- HTTP


def test_the_metrics_endpoint_does_not_wake_an_idle_daemon() -> None:
    """Twisted's HTTP factory refreshes its access log's date every second: on a
    gateway that is a wake-up a second for a log bridged does not write."""
    readout = Readout(daemon_from(TWO_SOCKETS))
    site = make_site(make_registry(readout), readout)
    clock = Clock()
    site.reactor = clock  # type: ignore[assignment]
    site.doStart()
    try:
        assert clock.getDelayedCalls() == []
    finally:
        site.doStop()


@pytest.fixture
def served() -> Iterator[tuple[Daemon, int]]:
    daemon = daemon_from(TWO_SOCKETS)
    source = Readout(daemon)
    source.count_at_traffic()
    port = install_metrics(source, reactor, Endpoint("127.0.0.1", 0))
    yield daemon, port.getHost().port  # type: ignore[attr-defined]
    port.stopListening()


@pytest_twisted.ensureDeferred
async def test_healthz_is_503_with_json_while_serial_is_down(served: tuple[Daemon, int]) -> None:
    daemon, port = served
    code, headers, body = await http_get(port, "/healthz")
    assert code == 503
    assert headers["Content-Type"] == "application/json"
    report = json.loads(body)
    assert report["status"] == "unavailable" and report["serial"] == "down"
    assert [s["connect_id"] for s in report["sockets"]] == [0, 4]
    assert report["sockets"][1] == {
        "connect_id": 4,
        "state": "closed",
        "up": False,
        "client": False,
        "queue_bytes": 0,
        "mode": "persistent",
        "listen": "127.0.0.1:17104",
        "remote": "example.com:8883",
    }
    # Serial up but the module still initialising: still 503.
    daemon.modem.state = ModemState.INITIALISING
    code, _, body = await http_get(port, "/healthz")
    assert (code, json.loads(body)["serial"]) == (503, "up")


@pytest_twisted.ensureDeferred
async def test_metrics_index_and_unknown_paths(served: tuple[Daemon, int]) -> None:
    _, port = served
    s = await scrape(port)
    assert s.v("bridged_serial_up") == 0
    code, _, body = await http_get(port, "/")
    assert code == 200 and b"/metrics" in body
    code, _, _ = await http_get(port, "/nope")
    assert code == 404


@pytest_twisted.ensureDeferred
async def test_a_failing_collector_answers_500_and_the_next_scrape_works(
    served: tuple[Daemon, int],
) -> None:
    daemon, port = served
    bridge = daemon.bridges[0]
    channel, bridge.channel = bridge.channel, None  # type: ignore[assignment]
    code, _, body = await http_get(port, "/metrics")
    assert code == 500 and b"see the bridged log" in body
    bridge.channel = channel
    assert (await scrape(port)).v("bridged_socket_state", connect_id="0") == 0


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def echo_server(pki: Pki) -> Iterator[RunningServer]:
    with start_socat_echo_server(pki) as server:
        yield server


class Client(Protocol):
    """A local TCP client of one bridged socket."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.closed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed.callback(None)


@dataclass
class Bench:
    """Emulator + daemon (+ link health + metrics) on real ports, in this reactor."""

    daemon: Daemon
    emulator: Emulator
    port: IListeningPort
    health: LinkHealth | None

    @property
    def metrics_port(self) -> int:
        return self.port.getHost().port  # type: ignore[attr-defined, no-any-return]

    def listen_port(self, connect_id: int) -> int:
        bridge = next(b for b in self.daemon.bridges if b.connect_id == connect_id)
        return bridge.config.listen.port

    async def connect(self, connect_id: int = 0) -> Client:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.listen_port(connect_id))
        client: Client = await connectProtocol(endpoint, Client())
        return client

    async def scrape(self) -> Scrape:
        return await scrape(self.metrics_port)

    async def stop(self) -> None:
        await self.daemon.stop()
        if self.health is not None:
            self.health.stop()
        stopped = self.port.stopListening()
        if stopped is not None:
            await stopped
        self.emulator.stop()


async def start_bench(tmp_path: Path, pki: Pki, server: RunningServer) -> Bench:
    device = tmp_path / "ttyBC26"
    emulator = Emulator(device, baud=921600, profile="fast")
    emulator.start()
    # Data mode begins 10 ms after '>'; the host waits 20 ms (prompt_delay below).
    emulator.set_prompt_delay(0.01)
    config_path = tmp_path / "bridged.yaml"
    config_path.write_text(
        f"""
serial: {{device: {device}, baudrate: 921600, reopen_backoff: {{initial: 0.1, max: 0.2}}}}
modem: {{prompt_delay: 0.02, health_interval: 5}}
ssl: {{seclevel: 2, cacert: {pki.ca_cert}, clientcert: {pki.client_cert},
      clientkey: {pki.client_key}}}
sockets:
  - connect_id: 0
    listen: "127.0.0.1:{free_port()}"
    remote: "127.0.0.1:{server.port}"
    reconnect: {{initial: 0.1, max: 0.2, jitter: 0}}
metrics: {{listen: "127.0.0.1:{free_port()}"}}
"""
    )
    config = load_config(config_path)
    assert config.metrics is not None
    daemon = Daemon(reactor, config)
    health = start_link_health(
        daemon.modem, reactor, config.modem.health_interval, config.modem.command_timeout
    )
    source = Readout(daemon)
    source.link_health = health
    source.count_at_traffic()
    port = install_metrics(source, reactor, config.metrics.listen)
    bench = Bench(daemon, emulator, port, health)
    try:
        await emulator.when_ready()
        daemon.start()
        await daemon.ready_once
        # The first link poll runs as soon as the module is ready.
        assert health is not None
        await wait_until(lambda: health.polls >= 1, timeout=5, what="first link-health poll")
    except BaseException:
        await bench.stop()
        raise
    return bench


async def wait_for_metric(bench: Bench, name: str, value: float, **labels: str) -> Scrape:
    """Scrape until the sample has ``value`` (a counter must not overshoot it)."""
    last: list[Scrape] = []

    async def check() -> bool:
        last[:] = [await bench.scrape()]
        return last[0].value(name, **labels) == value

    deadline = reactor.seconds() + 10
    while not await check():
        current = last[0].value(name, **labels)
        assert current is None or current < value, f"{name}{labels} went past {value}: {current}"
        assert reactor.seconds() < deadline, f"{name}{labels} stuck at {current}, want {value}"
        await sleep(0.02)
    return last[0]


@pytest_twisted.ensureDeferred
async def test_scrape_during_transfer_counts_exactly(
    tmp_path: Path, pki: Pki, echo_server: RunningServer
) -> None:
    bench = await start_bench(tmp_path, pki, echo_server)
    try:
        before = await bench.scrape()
        labels = {"connect_id": "0"}
        assert before.v("bridged_serial_up") == 1 and before.v("bridged_module_ready") == 1
        # Link health from the emulator's +CSQ: 22,99 / +CEREG: 0,1 / +QENG: 0,...
        assert before.v("bridged_signal_rssi_dbm") == -69
        assert before.v("bridged_signal_rsrp_dbm") == -87
        assert before.v("bridged_signal_rsrq_db") == -9
        assert before.v("bridged_signal_sinr_db") == 12
        assert before.v("bridged_signal_ecl") == 0
        assert before.v("bridged_network_registered") == 1
        assert before.v("bridged_network_registration_status") == 1

        # 1. A client sends N bytes; scrape while they are on their way, then at the end.
        first_payload = os.urandom(4000)
        client = await bench.connect()
        client.transport.write(first_payload)  # type: ignore[union-attr]
        during = await bench.scrape()
        moved = during.delta(before, "bridged_socket_tx_bytes_total", **labels)
        assert 0 <= moved <= len(first_payload)
        await wait_until(lambda: len(client.received) >= len(first_payload), timeout=10)
        assert bytes(client.received) == first_payload
        mid = await wait_for_metric(
            bench,
            "bridged_socket_tx_bytes_total",
            before.v("bridged_socket_tx_bytes_total", **labels) + len(first_payload),
            **labels,
        )
        assert mid.delta(before, "bridged_socket_rx_bytes_total", **labels) == len(first_payload)
        assert mid.v("bridged_socket_up", **labels) == 1
        assert mid.v("bridged_socket_state", **labels) == int(ChannelState.OPEN)
        assert mid.v("bridged_socket_clients", **labels) == 1
        assert mid.v("bridged_socket_queue_bytes", **labels) == 0

        # 2. The server side goes away: a remote close, and the client is closed.
        bench.emulator.close_from_network(0)
        await client.closed
        await wait_for_metric(
            bench,
            "bridged_socket_remote_closes_total",
            before.v("bridged_socket_remote_closes_total", **labels) + 1,
            **labels,
        )

        # 3. The next open fails with a certificate error; the retry succeeds.
        bench.emulator.fail_next_open(ResultCode.CERTIFICATE)
        second_payload = os.urandom(1500)
        client = await bench.connect()
        client.transport.write(second_payload)  # type: ignore[union-attr]
        await wait_until(lambda: len(client.received) >= len(second_payload), timeout=10)
        assert bytes(client.received) == second_payload
        total = len(first_payload) + len(second_payload)
        after = await wait_for_metric(
            bench,
            "bridged_socket_tx_bytes_total",
            before.v("bridged_socket_tx_bytes_total", **labels) + total,
            **labels,
        )

        def delta(name: str, **more: str) -> float:
            return after.delta(before, name, **more)

        assert delta("bridged_socket_tx_bytes_total", **labels) == total
        assert delta("bridged_socket_rx_bytes_total", **labels) == total
        assert delta("bridged_socket_opens_total", result="ok", **labels) == 2
        assert delta("bridged_socket_opens_total", result="cert_error", **labels) == 1
        for result in ("exception", "connection_error", "key_error", "timeout", "unknown"):
            assert delta("bridged_socket_opens_total", result=result, **labels) == 0
        assert delta("bridged_socket_remote_closes_total", **labels) == 1
        assert delta("bridged_client_connections_total", outcome="accepted", **labels) == 2
        assert delta("bridged_client_connections_total", outcome="refused", **labels) == 0
        for lost in ("rx_dropped_bytes", "tx_lost_bytes", "send_failures"):
            assert delta(f"bridged_socket_{lost}_total", **labels) == 0
        assert delta("bridged_urcs_total", type="closed") == 1
        assert delta("bridged_urcs_total", type="qsslopen") == 3
        assert delta("bridged_at_commands_total", command="AT+QSSLOPEN", result="ok") == 3
        sends = delta("bridged_at_commands_total", command="AT+QSSLSEND", result="ok")
        assert sends == delta("bridged_send_chunks_total") >= total / 1460  # text sends
        assert delta("bridged_urcs_total", type="qsslsend") == sends
        assert delta("bridged_urcs_total", type="recv") >= total / 650
        assert sum(after.delta(before, n, kind=k) for (n, k) in _error_kinds(after)) == 0
        # The default format: text sends (a byte per payload byte), hex receive (two).
        assert delta("bridged_serial_bytes_total", direction="out") >= total
        assert delta("bridged_serial_bytes_total", direction="in") >= 2 * total
        hist = "bridged_at_command_duration_seconds_count"
        assert after.v(hist, command="AT+QSSLSEND") == after.v(
            "bridged_at_commands_total", command="AT+QSSLSEND", result="ok"
        )

        code, _, body = await http_get(bench.metrics_port, "/healthz")
        report = json.loads(body)
        assert code == 200 and report["status"] == "ok" and report["module"] == "ready"
        assert report["sockets"][0]["connect_id"] == 0 and report["sockets"][0]["client"]
        if PROMTOOL is not None or os.environ.get("BRIDGED_REQUIRE_PROMTOOL"):
            assert promtool_check(after.text) == ""
        client.transport.loseConnection()  # type: ignore[union-attr]
        await client.closed
    finally:
        await bench.stop()


def _error_kinds(s: Scrape) -> list[tuple[str, str]]:
    return [
        (name, dict(labels)["kind"])
        for name, labels in s.samples
        if name == "bridged_protocol_errors_total"
    ]


COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")


@pytest_twisted.ensureDeferred
async def test_counters_survive_a_serial_reopen(
    tmp_path: Path, pki: Pki, echo_server: RunningServer
) -> None:
    bench = await start_bench(tmp_path, pki, echo_server)
    try:
        labels = {"connect_id": "0"}
        client = await bench.connect()
        client.transport.write(b"x" * 900)  # type: ignore[union-attr]
        await wait_until(lambda: len(client.received) >= 900, timeout=10)
        before = await wait_for_metric(bench, "bridged_socket_tx_bytes_total", 900, **labels)

        # The serial line disappears for a while (USB unplugged).
        line_back = bench.emulator.hangup(downtime=0.6)
        modem = bench.daemon.modem
        await wait_until(lambda: modem.state is ModemState.SERIAL_DOWN, timeout=5)
        down = await bench.scrape()
        assert down.v("bridged_serial_up") == 0 and down.v("bridged_module_ready") == 0
        assert down.v("bridged_at_engine_healthy") == 0
        assert down.value("bridged_signal_rsrp_dbm") is None  # stale radio values are gone
        assert down.value("bridged_network_registered") is None
        code, _, body = await http_get(bench.metrics_port, "/healthz")
        assert code == 503 and json.loads(body)["serial"] == "down"
        await client.closed

        await line_back
        await wait_until(lambda: bench.daemon.ready, timeout=10, what="ready after reopen")
        health = bench.health
        assert health is not None
        polls = health.polls
        await wait_until(lambda: health.polls > polls, timeout=5, what="link poll after reopen")
        client = await bench.connect()
        client.transport.write(b"y" * 500)  # type: ignore[union-attr]
        await wait_until(lambda: len(client.received) >= 500, timeout=10)
        after = await wait_for_metric(bench, "bridged_socket_tx_bytes_total", 1400, **labels)

        assert after.delta(before, "bridged_serial_reopens_total") == 1
        assert after.v("bridged_serial_up") == 1 and after.v("bridged_module_ready") == 1
        assert after.v("bridged_signal_rsrp_dbm") == -87
        assert after.v("bridged_socket_rx_bytes_total", **labels) == 1400
        # Nothing counted before the reopen was lost with the old AT engine.
        for (name, labelset), value in before.samples.items():
            if name.endswith(COUNTER_SUFFIXES):
                assert after.samples[name, labelset] >= value, (name, dict(labelset))
        for direction in ("in", "out"):
            assert after.delta(before, "bridged_serial_bytes_total", direction=direction) > 0
        # The re-initialisation after the reopen ran its commands on the new engine.
        assert after.delta(before, "bridged_at_commands_total", command="ATE0", result="ok") >= 1
        client.transport.loseConnection()  # type: ignore[union-attr]
        await client.closed
    finally:
        await bench.stop()
