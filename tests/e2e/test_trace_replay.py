"""Serial trace of a real run, replayed: the daemon on the emulator's pty with
``serial.trace`` set, real TLS echo traffic on two sockets (hex and text), and faults
(line noise, a damaged recv URC, a peer that vanishes, a module reboot). The replay of
the trace must yield the event sequence the daemon's engine saw live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from bridged.config import load_config
from bridged.core.at_codec import URC_TYPES, Event, ProtocolError, RecvUrc
from bridged.shell.at_engine import ATEngine
from bridged.shell.daemon import Daemon
from bridged.tools.replay import replay_files
from tests.support.pki import Pki
from tests.support.rig import BridgeRig, SocketSpec, read_exactly
from tests.support.tls_servers import RunningServer
from tests.support.waiting import wait_until


class TracedRig(BridgeRig):
    def __init__(self, *args: object, trace: Path, keep_payload: bool, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.trace = trace
        self.keep_payload = keep_payload
        self.live: list[Event] = []
        self.live_outcomes: list[tuple[str, str]] = []

    def config_text(self, sockets: list[SocketSpec]) -> str:
        text = super().config_text(sockets)
        payload = "true" if self.keep_payload else "false"
        return text.replace(
            "reopen_backoff:", f"trace: {self.trace}, trace_payload: {payload}, reopen_backoff:"
        )

    async def start(self, sockets: list[SocketSpec]) -> Daemon:
        self.config_path.write_text(self.config_text(sockets))
        config = load_config(self.config_path)
        self.emulator.start()
        await self.emulator.when_ready()
        self.daemon = Daemon(reactor, config)
        # What the engine reports live: every URC and protocol error, in order.
        self.daemon.modem.engine_observers.append(self._subscribe)
        self.daemon.start()
        await self.daemon.ready_once
        return self.daemon

    def _subscribe(self, engine: ATEngine, qssl: object) -> None:
        engine.event_observers.append(self._live_event)
        # Each command's outcome as the session reported it live (ok/error/timeout/aborted).
        engine.command_observers.append(
            lambda name, result, seconds: self.live_outcomes.append((name, result))
        )

    def _live_event(self, event: Event) -> None:
        # The engine also reports unsolicited lines and results: not URCs.
        if isinstance(event, (*URC_TYPES, ProtocolError)):
            self.live.append(event)


def _comparable(events: list[Event], keep_payload: bool) -> list[object]:
    """Without payloads the replay knows each recv's length, not its bytes."""
    if keep_payload:
        return list(events)
    return [("recv", e.connect_id, len(e.data)) if isinstance(e, RecvUrc) else e for e in events]


@pytest.mark.parametrize("keep_payload", [True, False], ids=["payload", "no-payload"])
@pytest_twisted.ensureDeferred
async def test_replay_of_a_recorded_run_yields_the_live_event_sequence(
    keep_payload: bool, rig_dir: Path, pki: Pki, echo_server: RunningServer
) -> None:
    trace = rig_dir / "serial.trace"
    rig = TracedRig(
        rig_dir, pki, baud=460800, trace=trace, keep_payload=keep_payload, prompt_delay=0.01
    )
    await rig.start(
        [SocketSpec(0, echo_server.port), SocketSpec(3, echo_server.port, dataformat="text")]
    )
    try:
        for connect_id in (0, 3):
            data = os.urandom(3000) + b'\r\nOK\r\n"+QSSLURC: "closed",1,0\r\n'
            assert await rig.roundtrip(connect_id, data) == data
        # Faults: line noise, a recv URC with a broken length, a peer that vanishes.
        rig.emulator.inject_bytes(b"\x00\xffgarbage\r\n")
        rig.emulator.inject_line(b'+QSSLURC: "recv",1,0,9999,"00"')
        sock = await threads.deferToThread(rig.connect, 0)
        await threads.deferToThread(sock.sendall, b"hello")
        assert await threads.deferToThread(read_exactly, sock, 5) == b"hello"
        rig.emulator.close_from_network(0)
        await wait_until(lambda: any(type(e).__name__ == "ClosedUrc" for e in rig.live), 10)
        sock.close()
        # A reboot: boot signs, and the daemon configures everything again.
        rig.emulator.reboot()
        await wait_until(lambda: not rig.daemon.ready, 10)  # type: ignore[union-attr]
        await rig.wait_ready(20)
        assert await rig.roundtrip(3, b"after the reboot") == b"after the reboot"
    finally:
        await rig.stop()

    text = trace.read_text()
    assert "BEGIN CERTIFICATE" not in text and "PRIVATE KEY" not in text
    assert "[redacted " in text
    assert ("[payload " in text) is not keep_payload and ("[recv " in text) is not keep_payload
    replay = replay_files([trace])
    assert _comparable(replay.events, keep_payload) == _comparable(rig.live, keep_payload)
    # The session decided live which command each answer completed; so it does in replay.
    assert replay.observed == rig.live_outcomes
    assert any(isinstance(e, ProtocolError) for e in replay.events)
    assert replay.protocol_errors >= 1
    # Asynchronous results are paired with the commands they answer.
    for kind in ("OPEN", "SEND", "CLOSE"):
        assert any(f"answers AT+QSSL{kind}=1," in line for line in replay.lines), kind


def test_rotation_bounds_the_trace_and_replay_reads_both_files(tmp_path: Path) -> None:
    from bridged.core.serial_trace import TraceRecorder
    from bridged.shell.serial_tap import TraceFile

    path = tmp_path / "t.trace"
    out = TraceFile(path, max_bytes=20_000)
    recorder = TraceRecorder()
    now = 0.0
    for _ in range(2000):
        now += 0.01
        out.write(recorder.host_wrote(b"AT+CSQ\r", now))
        out.write(recorder.module_sent(b"\r\n+CSQ: 22,99\r\n\r\nOK\r\n", now + 0.005))
    out.close()
    rotated = path.with_name("t.trace.1")
    assert path.stat().st_size <= 20_000 and rotated.stat().st_size <= 20_000
    replay = replay_files([rotated, path])
    assert replay.protocol_errors == 0
    assert replay.commands and all(c == ("AT+CSQ", "OK") for c in replay.commands)
