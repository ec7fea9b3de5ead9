"""``bridged run`` as a real process, beside ``bridged emulate``: signals and passthrough."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pki import Pki
from tests.support.rig import read_exactly
from tests.support.tls_servers import RunningServer, free_port

BRIDGED = [sys.executable, "-m", "bridged"]


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout}s")
        time.sleep(0.05)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Process:
    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            args, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def setup(tmp_path: Path, pki: Pki, echo_server: RunningServer) -> Iterator[dict[str, object]]:
    device = tmp_path / "ttyBC26"
    emulator = Process(
        [
            *BRIDGED,
            "emulate",
            "--device",
            str(device),
            "--baud",
            "921600",
            "--profile",
            "fast",
            "--prompt-max-delay",
            "0.01",
        ],
        tmp_path / "emulator.log",
    )
    wait_for(device.exists, 10, "emulator pty")
    ports = {0: free_port(), 1: free_port()}
    yield {
        "dir": tmp_path,
        "device": device,
        "ports": ports,
        "pki": pki,
        "server": echo_server,
        "emulator": emulator,
    }
    emulator.stop()


def config_text(s: dict[str, object], socket1_mode: str = "on-demand") -> str:
    pki: Pki = s["pki"]  # type: ignore[assignment]
    ports: dict[int, int] = s["ports"]  # type: ignore[assignment]
    server: RunningServer = s["server"]  # type: ignore[assignment]
    return f"""
serial: {{device: {s["device"]}, baudrate: 921600}}
modem: {{prompt_delay: 0.015, guard_time: 0.002}}
ssl: {{seclevel: 2, cacert: {pki.ca_cert}, clientcert: {pki.client_cert},
       clientkey: {pki.client_key}}}
sockets:
  - {{connect_id: 0, listen: "127.0.0.1:{ports[0]}", remote: "127.0.0.1:{server.port}"}}
  - {{connect_id: 1, listen: "127.0.0.1:{ports[1]}", remote: "127.0.0.1:{server.port}",
     mode: {socket1_mode}}}
metrics: null
control: {{socket: {s["dir"]}/control.sock}}
"""


def at(s: dict[str, object], command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BRIDGED, "at", "-s", f"{s['dir']}/control.sock", command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_reload_passthrough_and_sigterm(setup: dict[str, object]) -> None:
    s = setup
    directory: Path = s["dir"]  # type: ignore[assignment]
    ports: dict[int, int] = s["ports"]  # type: ignore[assignment]
    config = directory / "bridged.yaml"
    config.write_text(config_text(s))
    daemon = Process([*BRIDGED, "run", "-c", str(config)], directory / "bridged.log")
    try:
        wait_for(lambda: listening(ports[0]) and listening(ports[1]), 20, "listeners")

        # Passthrough: a harmless query works; a command on a managed socket is refused.
        csq = at(s, "AT+CSQ")
        assert csq.returncode == 0, csq.stdout + csq.stderr
        assert csq.stdout.splitlines()[-1] == "OK" and csq.stdout.startswith("+CSQ:")
        refused = at(s, 'AT+QSSLOPEN=1,0,"evil.example",443,0')
        assert refused.returncode == 1
        assert refused.stdout.startswith("REFUSED: only queries and reads")  # an allowlist
        assert at(s, "ATE1").stdout.startswith("REFUSED:")
        assert (directory / "control.sock").stat().st_mode & 0o777 == 0o660

        # A client on socket 0 stays connected across a reload that changes socket 1 only.
        client = socket.create_connection(("127.0.0.1", ports[0]), timeout=20)
        client.sendall(b"before reload")
        assert read_exactly(client, 13) == b"before reload"
        config.write_text(config_text(s, socket1_mode="persistent"))
        os.kill(daemon.proc.pid, signal.SIGHUP)
        wait_for(
            lambda: "reloading: 1 socket(s) unchanged, 1 removed or changed" in daemon.text(),
            10,
            "reload",
        )
        client.sendall(b"after reload")
        assert read_exactly(client, 12) == b"after reload"

        # An invalid new file is refused and the running config keeps working.
        config.write_text("sockets: [this is not valid\n")
        os.kill(daemon.proc.pid, signal.SIGHUP)
        wait_for(lambda: "new configuration refused" in daemon.text(), 10, "refusal")
        client.sendall(b"still")
        assert read_exactly(client, 5) == b"still"
        client.close()

        # SIGTERM: open SSL sockets are closed and the process exits 0 promptly.
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(15) == 0, daemon.text()
        assert time.monotonic() - started < 10
        assert "bridged stopped" in daemon.text()
    finally:
        daemon.stop()
