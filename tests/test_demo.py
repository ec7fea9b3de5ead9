"""README's first command: ``bridged demo`` really bridges a client to the echo server."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.rig import read_exactly
from tests.support.tls_servers import free_port


@pytest.mark.parametrize(("model", "title"), [("bc26", "BC26"), ("bc660k", "BC660K-GL")])
def test_bridged_demo_echoes_through_the_emulated_module(
    tmp_path: Path, model: str, title: str
) -> None:
    port, metrics_port = free_port(), free_port()
    log = tmp_path / "demo.log"
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridged",
            "demo",
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
            "--model",
            model,
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while "bridged demo is running" not in log.read_text(errors="replace"):
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
            client.sendall(b"hello through the module")
            assert read_exactly(client, 24) == b"hello through the module"
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read()
        assert b'bridged_socket_tx_bytes_total{connect_id="0"} 24.0' in metrics
        assert f"emulated {title}" in log.read_text()
        assert f"module {title}" in log.read_text()  # bridged's own start-up line
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(15) == 0
        assert "bridged stopped" in log.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()


def test_ctrl_c_stops_the_demo_even_when_started_with_sigint_ignored(tmp_path: Path) -> None:
    """A shell without job control starts background commands with SIGINT ignored (so do
    some CI runners and `nohup`-style wrappers). The banner promises Ctrl+C: it must work."""
    log = tmp_path / "demo.log"
    ports = ["--port", str(free_port()), "--metrics-port", str(free_port())]
    demo = subprocess.Popen(
        [sys.executable, "-m", "bridged", "demo", *ports],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 30
        while "bridged demo is running" not in log.read_text(errors="replace"):
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(15) == 0, log.read_text()
        assert "bridged stopped" in log.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
