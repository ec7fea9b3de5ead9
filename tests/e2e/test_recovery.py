"""The recovery ladder against a module whose firmware hangs."""

from __future__ import annotations

import dataclasses
import socket

import pytest_twisted
from twisted.internet import threads

from tests.support.pki import Pki
from tests.support.rig import BridgeRig, SocketSpec
from tests.support.tls_servers import RunningServer
from tests.support.waiting import wait_until


def _read_until_closed(sock: socket.socket) -> bytes:
    data = bytearray()
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except OSError:
        pass
    return bytes(data)


@pytest_twisted.ensureDeferred
async def test_hung_module_climbs_the_ladder_then_recovers_after_power_cycle(
    rig_dir, pki: Pki, echo_server: RunningServer
) -> None:
    # ssl.timeout 10 s (the least): before it climbs the ladder bridged stays silent that
    # long, in case the module sits in data mode waiting for bytes that were lost.
    rig = BridgeRig(
        rig_dir, pki, modem_extra="init_retries: 1, max_consecutive_timeouts: 2", ssl_timeout=10
    )
    daemon = await rig.start([SocketSpec(0, echo_server.port)])
    modem = daemon.modem
    modem.options = dataclasses.replace(modem.options, reset_grace=2.0)
    try:
        assert await rig.roundtrip(0, b"healthy") == b"healthy"
        client = await threads.deferToThread(rig.connect, 0)
        rig.emulator.hang()
        await threads.deferToThread(client.sendall, b"into the void")
        # The bytes can't be confirmed: the client is disconnected, not left hanging.
        assert await threads.deferToThread(_read_until_closed, client) == b""
        client.close()
        # Resync with AT fails; the port is reopened; then AT+QRST=1 is tried.
        await wait_until(
            lambda: modem.restarts.get("serial_reopen", 0) >= 1,
            timeout=60,
            what="step 1: serial port reopened",
        )
        await wait_until(
            lambda: modem.restarts.get("reset", 0) >= 1, timeout=30, what="step 2: AT+QRST=1"
        )
        assert rig.emulator.stats.hung_dropped_bytes > 0
        assert not daemon.ready
        # A power cycle (the gateway's GPIO, here the emulator) brings it back by itself.
        rig.emulator.reboot()
        await rig.wait_ready(timeout=30)
        assert await rig.roundtrip(0, b"back again") == b"back again"
    finally:
        await rig.stop()
