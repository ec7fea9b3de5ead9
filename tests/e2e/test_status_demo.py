"""``bridged demo`` as a real process: ``bridged status`` during a transfer, quiet logs.

The demo runs the emulator, a TLS echo server and the daemon in one process, exactly as a
new user starts it; its stderr is the log an operator reads.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
from pathlib import Path

from tests.e2e.test_daemon_process import BRIDGED, wait_for
from tests.support.rig import read_exactly
from tests.support.tls_servers import free_port

# time level [namespace] message, the namespace bridged's own.
OWN_LINE = re.compile(r"^\S+ (debug|info|warn|error|critical)\s* \[bridged(\.[\w.]+)?\] ")


def bridged(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BRIDGED, *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_status_during_a_transfer_and_only_own_log_lines(tmp_path: Path) -> None:
    """Also: the debug log of a normal start + echo + stop is bridged's own, no warning,
    AT traffic summarised, no payload and no certificate."""
    port, metrics_port = free_port(), free_port()
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    args = ["demo", "--port", str(port), "--metrics-port", str(metrics_port)]
    demo = subprocess.Popen(
        [*BRIDGED, *args, "--log-level", "debug"],
        stdout=out.open("w"),
        stderr=err.open("w"),
        start_new_session=True,
    )
    try:
        wait_for(lambda: "bridged demo is running" in out.read_text(), 60, "demo ready")
        found = re.search(r"config and certs in\s+(\S+)", out.read_text())
        assert found is not None
        directory = Path(found.group(1))
        control = str(directory / "control.sock")

        with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
            client.sendall(b"status please")
            assert read_exactly(client, 13) == b"status please"

            text = bridged("status", "-s", control)
            assert text.returncode == 0, text.stderr
            shown = text.stdout
            assert re.match(r"bridged \S+, up \d+s\n", shown), shown
            assert f"serial   {directory}/ttyBC26 at 115200 baud: ready\n" in shown
            assert "module   Quectel_BC26, firmware BC26NBR01A10\n" in shown
            assert re.search(
                r"network  registered, home network; RSRP -?\d+ dBm, SINR -?\d+ dB, ECL \d "
                r"\(read \d+s ago\)",
                shown,
            ), shown
            assert f"socket 0 127.0.0.1:{port} -> 127.0.0.1:" in shown
            assert "(on-demand)\n  state   open for " in shown
            assert re.search(r"  client  127\.0\.0\.1:\d+, connected for \d+s\n", shown), shown
            assert "  bytes   13 B sent, 13 B received\n" in shown
            assert "  opens   1 ok, 0 failed\n" in shown

            as_json = bridged("status", "-c", str(directory / "bridged.yaml"), "--json")
            assert as_json.returncode == 0, as_json.stderr
            status = json.loads(as_json.stdout)
            assert status["serial"]["state"] == "ready"
            assert status["module"]["firmware"] == "BC26NBR01A10"
            (sock,) = status["sockets"]
            assert (sock["state"], sock["tx_bytes"], sock["rx_bytes"]) == ("open", 13, 13)
            assert sock["client"]["peer"] == f"127.0.0.1:{client.getsockname()[1]}"
            assert sock["client"]["connected_at"] <= status["now"]

        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0, err.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()

    log = err.read_text().splitlines()
    # Debug: the AT traffic, with payloads as byte counts and certificates never shown.
    assert any("AT> AT+QSSLSEND=" in line for line in log)
    assert any("AT> <13 payload bytes>" in line for line in log)  # text sends: the default
    assert any('AT< +QSSLURC: "recv",0 <13 payload bytes>' in line for line in log)
    assert sum("bytes redacted>" in line for line in log) == 3  # CA, client cert and key
    text = "\n".join(log)
    assert "status please" not in text and b"status please".hex() not in text.lower()
    assert "BEGIN" not in text and "PRIVATE" not in text
    # One line per event: the open is the state change, not also "SSL connection open".
    assert sum("opening -> open" in line for line in log) == 1
    assert not any("SSL connection open" in line for line in log)
    foreign = [line for line in log if not OWN_LINE.match(line)]
    assert foreign == [], "\n".join(foreign)
    # Nothing went wrong, so nothing is a warning (the port closing at shutdown is ours).
    faults = [line for line in log if line.split()[1] in ("warn", "error", "critical")]
    assert faults == [], "\n".join(faults)
    assert any("bridged demo stopping" in line for line in log)
    assert "bridged stopped" in log[-1]


def test_status_without_a_daemon_says_so(tmp_path: Path) -> None:
    missing = bridged("status", "-s", str(tmp_path / "none.sock"))
    assert missing.returncode == 2
    assert f"cannot get the status from {tmp_path}/none.sock" in missing.stderr


def test_status_shows_failed_opens_and_the_last_error(tmp_path: Path) -> None:
    """A socket whose server is down: its opens fail, and status says so, with the error."""
    from tests.e2e.test_daemon_process import Process
    from tests.e2e.test_exclusive_serial import daemon_config

    device = tmp_path / "ttyBC26"
    emulator = Process(
        [*BRIDGED, "emulate", "--device", str(device), "--baud", "921600", "--profile", "fast"],
        tmp_path / "emulator.log",
    )
    daemon = None
    try:
        wait_for(device.exists, 10, "emulator pty")
        config = daemon_config(tmp_path, "down", device)  # remote: a port nobody listens on
        daemon = Process([*BRIDGED, "run", "-c", str(config)], tmp_path / "daemon.log")
        wait_for(lambda: ": listening" in daemon.text(), 30, "daemon ready")
        port = int(re.findall(r"127\.0\.0\.1:(\d+) ->", daemon.text())[0])
        with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
            client.sendall(b"anyone?")
            wait_for(lambda: "open failed" in daemon.text(), 20, "a failed open")
            shown = bridged("status", "-c", str(config)).stdout
        assert re.search(r"  opens   0 ok, [1-9]\d* failed\n", shown), shown
        assert re.search(r"  error   socket 0: open failed: .+ \d+s ago\n", shown), shown
    finally:
        if daemon is not None:
            daemon.stop()
        emulator.stop()
