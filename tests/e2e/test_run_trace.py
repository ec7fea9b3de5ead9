"""``bridged run --trace PATH`` as a real process beside ``bridged emulate``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from bridged.tools.replay import replay_files
from tests.e2e.test_daemon_process import (
    BRIDGED,
    Process,
    config_text,
    listening,
    setup,  # noqa: F401 (the fixture)
    wait_for,
)
from tests.support.rig import read_exactly


def test_run_with_trace_records_the_line_across_a_reload(setup: dict[str, object]) -> None:  # noqa: F811
    s = setup
    directory: Path = s["dir"]  # type: ignore[assignment]
    ports: dict[int, int] = s["ports"]  # type: ignore[assignment]
    config = directory / "bridged.yaml"
    config.write_text(config_text(s))
    trace = directory / "line.trace"
    daemon = Process(
        [*BRIDGED, "run", "-c", str(config), "--trace", str(trace)], directory / "bridged.log"
    )
    try:
        wait_for(lambda: listening(ports[0]), 20, "listener")
        # listening() was a client too: one client per socket, so wait until it has gone.
        wait_for(lambda: " left (" in daemon.text(), 10, "the probe connection gone")
        client = socket.create_connection(("127.0.0.1", ports[0]), timeout=20)
        client.sendall(b"traced before")
        assert read_exactly(client, 13) == b"traced before"
        # The self-test will not touch the port the daemon has, and names it.
        refused = subprocess.run(
            [*BRIDGED, "selftest", "--device", str(s["device"]), "--out", str(directory / "st")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 3, refused.stderr
        assert f"pid {daemon.proc.pid}" in refused.stderr and " run -c " in refused.stderr
        client.sendall(b"still working")
        assert read_exactly(client, 13) == b"still working"
        # A reload re-reads the file, which names no trace: --trace still applies.
        config.write_text(config_text(s, socket1_mode="persistent"))
        os.kill(daemon.proc.pid, signal.SIGHUP)
        wait_for(lambda: "reloading" in daemon.text(), 10, "reload")
        client.sendall(b"traced after!")
        assert read_exactly(client, 13) == b"traced after!"
        client.close()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(15) == 0, daemon.text()
    finally:
        daemon.stop()
    text = trace.read_text()
    assert b"traced before".hex().upper() in text and b"traced after!".hex().upper() in text
    assert "[redacted " in text and "PRIVATE KEY" not in text
    replay = replay_files([trace])
    assert replay.protocol_errors == 0
    assert any('AT+QSSLOPEN=1,0,"127.0.0.1",' in line for line in replay.lines)
