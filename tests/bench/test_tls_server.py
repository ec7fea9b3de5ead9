"""The bench's TLS servers bind the ports the kernel chooses and say which.

Choosing a free port first and binding it later lets another process take it in
between (a client's outgoing connection draws from the same ephemeral range): the smoke
run once failed with "Address already in use" that way. Port 0 leaves the choice to the
bind itself.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.rig import REPO
from tests.support.pki import make_pki


@pytest.mark.bench
def test_servers_asked_for_port_0_listen_where_their_ready_line_says(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    command = [sys.executable, "-m", "tests.bench.tls_server"]
    command += ["--cert", str(pki.server_cert), "--key", str(pki.server_key)]
    command += ["--listen", "0:sink", "--listen", "0:messages"]
    server = subprocess.Popen(
        command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        ready = json.loads(server.stdout.readline())
        ports = ready["ports"]
        assert len(ports) == 2 and len(set(ports)) == 2 and 0 not in ports
        for port in ports:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        server.stdin.write("quit\n")
        server.stdin.flush()
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
