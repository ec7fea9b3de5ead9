"""bridged end to end: real TCP clients → bridge → pty → emulator → real TLS servers."""

from __future__ import annotations

import contextlib
import os
import socket

import pytest
import pytest_twisted
from twisted.internet import defer, threads

from tests.support.pki import Pki
from tests.support.rig import BridgeRig, SocketSpec, read_exactly, read_until_eof
from tests.support.tls_servers import RunningServer
from tests.support.waiting import wait_until


# 300 KB in the default suite; the full megabyte (~45 s) with the slow ones.
@pytest.mark.parametrize(
    "total", [300_000, pytest.param(1_000_000, marks=pytest.mark.slow, id="1MB")]
)
@pytest_twisted.ensureDeferred
async def test_random_binary_round_trips_on_three_sockets_at_once(
    rig_dir, pki: Pki, echo_server: RunningServer, total: int
) -> None:
    # Random binary, a third per socket, hex and text formats mixed.
    rig = BridgeRig(rig_dir, pki, baud=921600, prompt_delay=0.003, prompt_max_delay=0.002)
    specs = [
        SocketSpec(0, echo_server.port),
        SocketSpec(3, echo_server.port, dataformat="text"),
        SocketSpec(5, echo_server.port),
    ]
    await rig.start(specs)
    try:
        payloads = {s.connect_id: os.urandom(total // 3) for s in specs}
        results = await defer.gatherResults(
            [
                defer.Deferred.fromCoroutine(rig.roundtrip(cid, data, timeout=120))
                for cid, data in payloads.items()
            ]
        )
        for (cid, sent), received in zip(payloads.items(), results, strict=True):
            assert len(received) == len(sent), f"socket {cid}"
            assert received == sent, f"socket {cid}: bytes differ"
        for cid, sent in payloads.items():
            stats = rig.bridge(cid).stats
            assert stats.tx_bytes == len(sent) and stats.rx_bytes == len(sent)
            assert stats.tx_lost_bytes == 0 and stats.rx_dropped_bytes == 0
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_remote_close_gives_the_client_eof_and_a_new_connection_works(
    rig_dir, pki: Pki, echo_server: RunningServer
) -> None:
    rig = BridgeRig(rig_dir, pki)
    await rig.start([SocketSpec(1, echo_server.port)])
    try:
        sock = await threads.deferToThread(rig.connect, 1)
        closes_before = rig.emulator.stats.commands["AT+QSSLCLOSE"]
        await threads.deferToThread(sock.sendall, b"ping")
        assert await threads.deferToThread(read_exactly, sock, 4) == b"ping"
        rig.emulator.close_from_network(1)
        assert await threads.deferToThread(read_until_eof, sock) == b""  # EOF, like any peer
        sock.close()
        await wait_until(lambda: rig.bridge(1).state == 0, timeout=5, what="socket closed")
        assert rig.emulator.stats.commands["AT+QSSLCLOSE"] == closes_before, (
            "no QSSLCLOSE after 'closed'"
        )
        assert await rig.roundtrip(1, b"again") == b"again"
        assert rig.bridge(1).stats.remote_closes == 1
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_persistent_socket_reconnects_after_closed_urc(
    rig_dir, pki: Pki, echo_server: RunningServer
) -> None:
    rig = BridgeRig(rig_dir, pki)
    await rig.start([SocketSpec(2, echo_server.port, mode="persistent")])
    try:
        bridge = rig.bridge(2)
        await wait_until(lambda: bridge.state == 2, timeout=5, what="persistent socket open")
        opens_before = rig.emulator.stats.opens
        rig.emulator.close_from_network(2)
        await wait_until(
            lambda: rig.emulator.stats.opens > opens_before and bridge.state == 2,
            timeout=10,
            what="persistent socket reopened",
        )
        assert await rig.roundtrip(2, b"still here") == b"still here"
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_second_client_is_refused_while_one_is_attached(
    rig_dir, pki: Pki, echo_server: RunningServer
) -> None:
    rig = BridgeRig(rig_dir, pki)
    await rig.start([SocketSpec(0, echo_server.port)])
    try:
        first = await threads.deferToThread(rig.connect, 0)
        await threads.deferToThread(first.sendall, b"x")
        assert await threads.deferToThread(read_exactly, first, 1) == b"x"
        second = await threads.deferToThread(rig.connect, 0)
        assert await threads.deferToThread(read_until_eof, second) == b""
        second.close()
        await threads.deferToThread(first.sendall, b"y")
        assert await threads.deferToThread(read_exactly, first, 1) == b"y"
        first.close()
        assert rig.bridge(0).stats.client_connections["refused"] == 1
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_module_reboot_mid_transfer_closes_the_client_and_recovers(
    rig_dir, pki: Pki, echo_server: RunningServer
) -> None:
    rig = BridgeRig(rig_dir, pki, baud=115200)
    await rig.start(
        [SocketSpec(0, echo_server.port), SocketSpec(4, echo_server.port, mode="persistent")]
    )
    try:
        sock = await threads.deferToThread(rig.connect, 0)
        data = os.urandom(200_000)  # far more than fits through before the reboot
        sender = threads.deferToThread(_send_ignoring_reset, sock, data)
        await wait_until(
            lambda: rig.bridge(0).stats.rx_bytes > 1000, timeout=10, what="transfer under way"
        )
        rig.emulator.reboot()
        received = await threads.deferToThread(_read_until_closed, sock)
        await sender
        sock.close()
        # The client was closed, and what it got is a prefix of what it sent: nothing
        # corrupted, nothing duplicated.
        assert data.startswith(received)
        assert len(received) < len(data)
        # The client may be closed a moment before the boot banner is read (the reboot cut
        # a recv URC in half, and a garbled recv disconnects its client at once).
        assert rig.daemon is not None
        modem = rig.daemon.modem
        await wait_until(
            lambda: modem.restarts.get("reboot", 0) >= 1, timeout=10, what="reboot noticed"
        )
        await wait_until(
            lambda: rig.daemon is not None and rig.daemon.ready and rig.bridge(4).state == 2,
            timeout=15,
            what="recovered",
        )
        assert await rig.roundtrip(0, b"after reboot") == b"after reboot"
        assert await rig.roundtrip(4, b"persistent too") == b"persistent too"
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_pty_hangup_and_return(rig_dir, pki: Pki, echo_server: RunningServer) -> None:
    rig = BridgeRig(rig_dir, pki)
    await rig.start([SocketSpec(0, echo_server.port)])
    try:
        assert await rig.roundtrip(0, b"before") == b"before"
        assert rig.daemon is not None
        daemon = rig.daemon
        back = rig.emulator.hangup(downtime=1.0)
        await wait_until(lambda: not daemon.ready, timeout=5, what="daemon sees hang-up")
        await back
        await rig.wait_ready()
        assert daemon.modem.serial_reopens >= 1
        assert await rig.roundtrip(0, b"after") == b"after"
    finally:
        await rig.stop()


def _send_ignoring_reset(sock: socket.socket, data: bytes) -> None:
    # The bridge closes us mid-send: that is what the test expects.
    with contextlib.suppress(OSError):
        sock.sendall(data)


def _read_until_closed(sock: socket.socket) -> bytes:
    chunks = bytearray()
    try:
        while chunk := sock.recv(65536):
            chunks += chunk
    except OSError:
        pass
    return bytes(chunks)
