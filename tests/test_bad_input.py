"""Bad input, one test per row of docs/bad-input.md: what bridged does with it and what
the user sees (a log line, a metric, the client's fate).

Serial-side rows drive the real AT engine and QSSL layer on a recording transport and a
virtual clock (tests/fuzz/harness.py); client-, device- and key-side rows run the whole
bridge (emulator on a pty, real TLS servers, real sockets).
"""

from __future__ import annotations

import os
import random
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from bridged.config import ConfigError, check_config_main, load_config
from bridged.core.at_codec import DataFormat, Event, ProtocolError
from bridged.core.channel import Channel, CountRxDropped, QueueLimits, ReconnectPolicy
from bridged.ops.metrics import ATStats
from bridged.shell.at_engine import DataPhase, ProtocolViolation, Response
from bridged.shell.daemon import Daemon
from bridged.shell.listener import ClientConnection
from tests.fuzz.harness import MAX_LINE, PROBE_ANSWERS, EngineHarness
from tests.support.pki import Pki, make_pki
from tests.support.rig import BridgeRig, SocketSpec, read_exactly, read_until_eof
from tests.support.tls_servers import (
    RunningServer,
    start_socat_echo_server,
    start_socat_tls_server,
)
from tests.support.waiting import wait_until

# ------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def echo_server(pki: Pki) -> Iterator[RunningServer]:
    server = start_socat_echo_server(pki)
    yield server
    server.stop()


@pytest.fixture
def rig_dir(tmp_path: Path) -> Path:
    return tmp_path


class LogLines:
    """Every log event while active, as (level name, namespace, text)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level", LogLevel.info)
        self.lines.append((level.name, event.get("log_namespace", ""), formatEvent(event)))

    def find(self, text: str, level: str | None = None) -> list[str]:
        return [t for lv, _, t in self.lines if text in t and (level is None or lv == level)]


@pytest.fixture
def logs() -> Iterator[LogLines]:
    capture = LogLines()
    globalLogPublisher.addObserver(capture)
    yield capture
    globalLogPublisher.removeObserver(capture)


@pytest.fixture
def engine() -> Iterator[tuple[EngineHarness, list[Event], ATStats]]:
    """The engine harness, the events its listeners saw, and the metrics' AT counters."""
    h = EngineHarness()
    events: list[Event] = []
    h.engine.event_observers.append(events.append)
    stats = ATStats()
    stats.attach(h.engine)
    yield h, events, stats
    h.close()


def frame(line: bytes) -> bytes:
    return b"\r\n" + line + b"\r\n"


def errors(events: list[Event]) -> list[str]:
    return [e.kind for e in events if isinstance(e, ProtocolError)]


# ------------------------------------------------------------------------------ serial line


def test_malformed_urcs_are_counted_and_the_next_urc_still_works(engine, logs) -> None:
    h, events, stats = engine
    h.feed(frame(b'+QSSLURC: "bogus",1,0'))
    h.feed(frame(b'+QSSLURC: "recv",x,y'))
    h.feed(frame(b'+QSSLURC: "closed",1'))
    h.feed(frame(b'+QSSLURC: "recv",1,0,2,"4142"'))
    assert errors(events) == ["bad_urc", "bad_recv_header", "bad_urc"]
    assert h.received[0] == b"AB" and h.closed[0] == 0
    assert stats.protocol_errors == {"bad_urc": 2, "bad_recv_header": 1}
    assert logs.find("serial protocol error (bad_urc)", "warn")


def test_urcs_for_unknown_connect_ids_are_dropped(engine, logs) -> None:
    h, events, stats = engine
    h.feed(frame(b'+QSSLURC: "recv",1,7,3,"414243"'))  # connectID 7: there are 0..5
    h.feed(frame(b'+QSSLURC: "recv",2,0,3,"414243"'))  # contextID 2: only 1 works
    h.feed(frame(b'+QSSLURC: "closed",1,9'))
    h.feed(frame(b"+QSSLOPEN: 1,8,0"))
    assert errors(events) == ["bad_recv_header", "bad_recv_header", "bad_urc", "bad_urc"]
    assert all(not data for data in h.received.values())
    assert not any(h.closed.values())
    assert stats.protocol_errors["bad_recv_header"] == 2


def test_recv_for_a_socket_bridged_does_not_manage_is_dropped_with_a_warning(engine, logs) -> None:
    h, _, _ = engine
    del h.qssl.subscribers[4]  # socket 4 is not in the configuration
    h.feed(frame(b'+QSSLURC: "recv",1,4,3,"414243"'))
    assert logs.find("recv of 3 bytes on unmanaged socket 4 dropped", "warn")


def test_hex_of_the_wrong_length_or_not_hex_is_dropped_never_delivered(engine) -> None:
    h, events, stats = engine
    h.feed(frame(b'+QSSLURC: "recv",1,0,4,"414243"'))  # 3 bytes, says 4
    h.feed(frame(b'+QSSLURC: "recv",1,0,1,"414243"'))  # 3 bytes, says 1
    h.feed(frame(b'+QSSLURC: "recv",1,0,2,"41G2"'))
    h.feed(frame(b'+QSSLURC: "recv",1,0,2,"4142'))  # no closing quote
    h.feed(frame(b'+QSSLURC: "recv",1,0,651,"41"'))  # longer than a recv can be
    assert errors(events) == [
        "bad_recv_length",
        "bad_recv_length",
        "bad_hex",
        "bad_recv_data",
        "bad_recv_length",
    ]
    h.feed(frame(b'+QSSLURC: "recv",1,0,3,"00FF0A"'))
    assert h.received[0] == b"\x00\xff\n"  # only the good one, exactly
    assert stats.protocol_errors["bad_recv_length"] == 3


def test_over_long_lines_are_discarded_with_bounded_memory(engine) -> None:
    h, events, _ = engine
    d = h.engine.command("AT+CGMR", timeout=5.0)
    for _ in range(100):  # 100 KB without a line end
        h.feed(b"x" * 1000)
        assert h.engine.decoder.buffered <= MAX_LINE + 1000
    h.feed(b"\r\n" + frame(b"OK"))
    assert errors(events) == ["line_too_long"]
    assert isinstance(d.result, Response)


def test_garbage_on_the_line_leaves_commands_working(engine, logs) -> None:
    h, _, _ = engine
    rng = random.Random(6)
    h.feed(frame(b"OK"))  # a final result nobody asked for: logged and discarded
    assert logs.find("answer nobody can own discarded: OK", "info")
    d = h.engine.command("AT+CSQ", timeout=5.0)
    failed: list[Failure] = []
    d.addErrback(failed.append)
    h.feed(b"\r\n> ")  # a '>' while no prompt is awaited: the module wants data
    for _ in range(50):
        h.feed(rng.randbytes(200).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n")
    h.feed(frame(b"+CSQ: 20,99") + frame(b"OK"))
    # The command is cancelled (never completed by what follows a protocol error) and
    # the session stays silent until the module's data mode has timed out.
    assert failed and failed[0].check(ProtocolViolation)
    assert logs.find("protocol error: '>' while waiting for the final result", "warn")
    assert h.usable()
    assert h.failures == []


def test_text_recv_with_a_corrupted_length(engine) -> None:
    """Text data is read by length (it may hold quotes and line ends): a length too short
    is caught at the missing closing quote; one too long swallows what follows, which no
    reader of this format can undo. Hex sockets resynchronise at the line end."""
    h, events, _ = engine
    h.feed(frame(b'+QSSLURC: "recv",1,1,2,"abcd"'))  # socket 1 is text
    assert errors(events) == ["bad_recv_data"]
    h.feed(frame(b'+QSSLURC: "recv",1,1,4,"abcd"'))
    assert h.received[1] == b"abcd"
    events.clear()
    h.feed(frame(b'+QSSLURC: "recv",1,1,20,"ab"') + frame(b"RDY"))
    h.feed(frame(b'+QSSLURC: "recv",1,1,2,"ef"'))  # 8 bytes of it complete the 20
    assert errors(events) == ["bad_recv_data"]  # no quote after 20 bytes: line dropped
    assert h.received[1] == b"abcd"  # "ab", RDY and "ef" are gone, nothing misdelivered
    h.feed(frame(b'+QSSLURC: "recv",1,1,2,"gh"'))
    assert h.received[1] == b"abcdgh"


def test_module_stuck_in_data_mode_is_waited_out(engine, logs) -> None:
    """Regression (found by the soak): a hang-up or a lost '>' mid-send leaves the module
    in fixed-length data mode; every AT probe is taken as payload and restarts its timer,
    so probing never ends it. Resync now falls silent until data mode times out."""
    h, _, _ = engine
    send = h.engine.command(
        "AT+QSSLSEND=1,0,100", timeout=1.0, data=DataPhase(b"41" * 100)
    )  # the module never answers: it is in data mode from an earlier command
    h.track(send)
    h.clock.advance(1.0)  # the '>' never came: timeout, resync
    silent = "no answer to the probe: the module may be in data mode"
    while not logs.find(silent, "warn"):  # quiet period, then 3 probes, unanswered
        h.clock.advance(0.01)
        assert h.clock.seconds() < 3.0
    written = len(h.transport.writes)
    h.clock.advance(0.4)  # within data_mode_quiet (0.5 s) bridged writes nothing
    assert len(h.transport.writes) == written
    h.feed(frame(b"+CME ERROR: 100"))  # data mode timed out at last
    h.clock.advance(0.11)  # the silence runs its course: no probe can be payload
    assert h.transport.writes[-1] in PROBE_ANSWERS  # then a probe
    h.feed(PROBE_ANSWERS[h.transport.writes[-1]])
    assert h.engine.healthy
    h._answered = len(h.transport.writes)  # the module in data mode answered none of them
    assert h.usable()


class _CountingClock(task.Clock):
    def callLater(self, delay: float, f: Any, *args: Any, **kw: Any) -> Any:
        self.calls_made = getattr(self, "calls_made", 0) + 1
        if self.calls_made > 10_000:
            raise RuntimeError("timer re-armed without end")
        return super().callLater(delay, f, *args, **kw)


def test_resync_quiet_period_never_spins_on_float_rounding() -> None:
    """Regression (found by the fuzzer): quiet_period - elapsed a hair above 0 re-armed the
    timer for a delay that rounds to nothing; a virtual clock looped forever."""
    from bridged.shell.at_engine import ATEngine

    clock = _CountingClock()
    clock.advance(1000.0)
    engine = ATEngine(clock, guard_time=0.0, quiet_period=0.05)
    transport = StringTransport()
    engine.makeConnection(transport)
    engine.dataReceived(b"\r\nnoise\r\n")  # input at t = 1000.0
    engine.resync()
    clock.advance(0.05)  # 1000.05 - 1000.0 == 0.04999999999995453
    assert transport.value().endswith(tuple(PROBE_ANSWERS))


def test_late_data_of_a_socket_being_closed_is_not_kept_for_the_next_client() -> None:
    """Regression: a persistent socket closing after a failed send buffered the recv data
    still arriving, then gave it to the next client as if it were its own."""
    channel = Channel(
        0,
        "persistent",
        limits=QueueLimits(4096, 4096),
        reconnect=ReconnectPolicy(1.0, 8.0, 0.0, 3),
        max_chunk=730,
        rng=random.Random(0),
    )
    channel.module_ready()
    channel.open_result(0)
    channel.client_connected()
    channel.client_data(b"request")
    channel.next_chunk()
    channel.send_failed("ERROR")
    assert channel.recv(b"late reply") == [CountRxDropped(10, "socket not open (closing)")]
    channel.close_done()
    channel.timer_fired("reopen")
    channel.open_result(0)
    assert channel.client_connected() == []  # nothing stale delivered


# ------------------------------------------------------------------------------ the device


@pytest_twisted.ensureDeferred
async def test_serial_device_missing_at_start_is_retried_until_it_appears(
    rig_dir: Path, pki: Pki, echo_server: RunningServer, logs: LogLines
) -> None:
    rig = BridgeRig(rig_dir, pki)
    rig.config_path.write_text(rig.config_text([SocketSpec(0, echo_server.port)]))
    daemon = Daemon(reactor, load_config(rig.config_path))
    daemon.start()
    try:
        await wait_until(
            lambda: len(logs.find("cannot open serial device", "warn")) >= 2, timeout=5
        )
        assert not daemon.ready
        rig.emulator.start()  # the USB adapter is plugged in
        rig.daemon = daemon
        await rig.wait_ready(timeout=10)
        assert await rig.roundtrip(0, b"late but fine") == b"late but fine"
    finally:
        await daemon.stop()
        rig.emulator.stop()


TICKER = """#!/bin/sh
# One line every 10 ms naming this connection (its process), until the peer goes away.
while echo "conn-$$"; do sleep 0.01; done
"""


@pytest_twisted.ensureDeferred
async def test_hangup_while_the_module_keeps_its_socket_gives_the_next_client_no_stale_bytes(
    rig_dir: Path, pki: Pki
) -> None:
    """Regression: after a serial hang-up the module's socket is still open and its data
    arrives before re-initialisation closes it; a client already waiting for a connection
    of its own got those bytes of a connection it never had."""
    script = rig_dir / "ticker.sh"
    script.write_text(TICKER)
    script.chmod(0o755)
    ticker = start_socat_tls_server(
        pki.server_cert, pki.server_key, cafile=pki.ca_cert, peer=f"EXEC:{script}"
    )
    rig = BridgeRig(rig_dir, pki, ssl_timeout=10)
    # Sockets 3..5 are configured before 0 after the hang-up: a wider stale window.
    specs = [SocketSpec(cid, ticker.port) for cid in (3, 4, 5, 0)]
    daemon = await rig.start(specs)
    try:
        assert daemon.modem.engine is not None
        assert daemon.modem.engine.data_mode_quiet == 12.0  # ssl.timeout + 2
        first = await threads.deferToThread(rig.connect, 0)
        assert (await threads.deferToThread(read_exactly, first, 10)).startswith(b"conn-")
        back = rig.emulator.hangup(downtime=1.0, reboot=False)
        await threads.deferToThread(read_until_eof, first)  # closed: serial lost
        first.close()
        second = await threads.deferToThread(rig.connect, 0)  # waits for the module
        await back
        data = await threads.deferToThread(read_exactly, second, 400)
        second.close()
        names = {line for line in data.split(b"\n")[:-1]}
        assert len(names) == 1, f"the client saw data of {len(names)} connections: {names}"
        assert rig.bridge(0).stats.rx_dropped_bytes > 0  # the stale bytes did arrive
    finally:
        await rig.stop()
        ticker.stop()


@pytest_twisted.ensureDeferred
async def test_unreadable_key_fails_only_its_own_socket(
    rig_dir: Path, pki: Pki, echo_server: RunningServer, logs: LogLines
) -> None:
    """Regression: a key file that vanished (or became unreadable) after start-up failed
    the whole initialisation after the next module reboot, and the recovery ladder reset
    the module over and over: every socket stayed down."""
    key = rig_dir / "socket1.key"
    shutil.copy(pki.client_key, key)
    key.chmod(0o600)
    rig = BridgeRig(rig_dir, pki)
    text = rig.config_text([SocketSpec(0, echo_server.port), SocketSpec(1, echo_server.port)])
    head, socket1 = text.split("  - connect_id: 1\n")
    socket1 = socket1.replace("dataformat: hex}", f"dataformat: hex, clientkey: {key}}}", 1)
    rig.config_text = lambda sockets: f"{head}  - connect_id: 1\n{socket1}"  # type: ignore[method-assign]
    daemon = await rig.start([])
    try:
        assert await rig.roundtrip(1, b"before") == b"before"
        key.unlink()
        rig.emulator.reboot()  # the module forgets its certificates; bridged re-uploads
        await wait_until(lambda: not daemon.ready, timeout=5)
        await rig.wait_ready(timeout=15)
        assert logs.find(f"socket 1: cannot read clientkey {key}", "error")
        assert await rig.roundtrip(0, b"unaffected") == b"unaffected"
        with rig.connect(1) as sock:  # no key on the module: the open fails, EOF
            assert await threads.deferToThread(read_until_eof, sock) == b""
        assert rig.bridge(1).stats.opens["key_error"] >= 1
        assert daemon.modem.restarts.get("reset", 0) == 0
    finally:
        await rig.stop()


# ------------------------------------------------------------------------------ config


def _write_config(directory: Path, pki: Pki, body: str) -> Path:
    path = directory / "bad.yaml"
    path.write_text(
        "serial: {device: /dev/ttyUSB0}\n"
        f"ssl: {{cacert: {pki.ca_cert}, clientcert: {pki.client_cert}, "
        f"clientkey: {pki.client_key}}}\n" + body
    )
    return path


def test_config_errors_name_file_line_and_key(tmp_path: Path, pki: Pki, capsys) -> None:
    path = _write_config(
        tmp_path,
        pki,
        "sockets:\n"
        "  - {connect_id: 0, listen: 127.0.0.1:7000, remote: example.com:443, mdoe: x}\n"
        "  - {connect_id: 9, listen: 127.0.0.1:7001, remote: example.com:443}\n",
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    text = str(raised.value)
    assert f"{path}:4:" in text and "mdoe" in text
    assert f"{path}:5:" in text and "connect_id" in text
    assert check_config_main(path) == 2
    assert "test failed" in capsys.readouterr().err


def test_key_readable_by_others_or_missing_is_refused_at_load(tmp_path: Path, pki: Pki) -> None:
    key = tmp_path / "open.key"
    shutil.copy(pki.client_key, key)
    key.chmod(0o644)
    socket_line = "sockets:\n  - {connect_id: 0, listen: 127.0.0.1:7000, remote: h.example:1}\n"
    for key_path, message in (
        (key, "accessible by group or others"),
        (tmp_path / "missing.key", "cannot read"),
    ):
        path = tmp_path / "k.yaml"
        path.write_text(
            "serial: {device: /dev/ttyUSB0}\n"
            f"ssl: {{seclevel: 2, cacert: {pki.ca_cert}, clientcert: {pki.client_cert}, "
            f"clientkey: {key_path}}}\n" + socket_line
        )
        with pytest.raises(ConfigError, match=message):
            load_config(path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o644


# ------------------------------------------------------------------------------ clients


class _Sink:
    def __init__(self) -> None:
        self.closed: list[str] = []

    def client_connected(self, client: ClientConnection) -> bool:
        return True

    def client_data(self, client: ClientConnection, data: bytes) -> None:
        pass

    def client_closed(self, client: ClientConnection, reason: str) -> None:
        self.closed.append(reason)


def test_client_that_never_reads_is_disconnected_past_the_bound(logs) -> None:
    client = ClientConnection(_Sink(), stall_limit=4096)
    transport = StringTransport()
    client.makeConnection(transport)
    client.pauseProducing()  # the transport: the client's socket buffer is full
    client.write(b"x" * 4096)
    assert not transport.disconnecting
    client.write(b"x")  # one byte past the bound
    assert transport.disconnecting
    assert logs.find("stopped reading; 4097 bytes pending: disconnecting it", "warn")


def test_client_that_reads_again_in_time_is_kept() -> None:
    client = ClientConnection(_Sink(), stall_limit=4096)
    transport = StringTransport()
    client.makeConnection(transport)
    client.pauseProducing()
    client.write(b"x" * 4000)
    client.resumeProducing()  # drained: the count starts over
    client.pauseProducing()
    client.write(b"x" * 4000)
    assert not transport.disconnecting


@pytest_twisted.ensureDeferred
async def test_flooding_client_is_paused_and_memory_stays_bounded(
    rig_dir: Path, pki: Pki, echo_server: RunningServer
) -> None:
    rig = BridgeRig(rig_dir, pki)
    await rig.start(
        [SocketSpec(1, echo_server.port, dataformat="text", extra="queue: {send_max_bytes: 4096}")]
    )
    try:
        channel = rig.bridge(1).channel
        most = [0]
        sampler = task.LoopingCall(lambda: most.__setitem__(0, max(most[0], channel.queued_bytes)))
        sampler.start(0.001)
        data = os.urandom(120_000)
        echoed = await rig.roundtrip(1, data, timeout=60)  # one sendall: as fast as it can
        sampler.stop()
        assert echoed == data
        # Paused at 4096; at most one more read (64 KiB) had already arrived.
        assert 4096 <= most[0] <= 4096 + 65536
        assert rig.bridge(1).stats.tx_lost_bytes == 0
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_oversized_write_is_cut_into_module_sized_chunks(
    rig_dir: Path, pki: Pki, echo_server: RunningServer
) -> None:
    rig = BridgeRig(rig_dir, pki)
    await rig.start([SocketSpec(0, echo_server.port)])
    try:
        sends_before = rig.emulator.stats.sends
        data = os.urandom(20_000)
        assert await rig.roundtrip(0, data) == data
        sends = rig.emulator.stats.sends - sends_before
        assert sends >= len(data) // DataFormat.HEX.max_send  # 730 bytes at most each
        assert rig.bridge(0).stats.tx_bytes == len(data)
    finally:
        await rig.stop()
