"""Issue 12 end to end, as a user meets it: real TCP clients, the daemon, the emulator on a
pty, real TLS servers. Each failed on the code before the fix."""

from __future__ import annotations

import os
import socket
import threading

import pytest_twisted
from twisted.internet import threads

from bridged.config import load_config
from bridged.ops.status import socket_status
from bridged.shell.modem import ModemState
from bridged.shell.snapshots import socket_snapshot
from tests.support.pki import Pki
from tests.support.rig import BridgeRig, SocketSpec, read_exactly, read_until_eof
from tests.support.tls_servers import RunningServer, start_scripted_tls_server
from tests.support.waiting import wait_until


def eof_within(sock: socket.socket, seconds: float) -> bytes:
    """What the client reads until EOF; socket.timeout if no EOF comes in time."""
    sock.settimeout(seconds)
    return read_until_eof(sock)


@pytest_twisted.ensureDeferred
async def test_problem5_half_closing_client_gets_the_reply(rig_dir, pki: Pki) -> None:
    # printf 'request' | nc -N: write, shut down the write side, read the reply to EOF.
    request = b"GET /status HTTP/1.0\r\n\r\n"
    with start_scripted_tls_server(pki, close_after=len(request)) as server:
        rig = BridgeRig(rig_dir, pki)
        await rig.start([SocketSpec(0, server.port)])
        try:

            def ask() -> bytes:
                with rig.connect(0) as sock:
                    sock.sendall(request)
                    sock.shutdown(socket.SHUT_WR)
                    return eof_within(sock, 20)

            assert await threads.deferToThread(ask) == request  # the server's whole reply
            assert rig.bridge(0).stats.rx_dropped_bytes == 0
        finally:
            await rig.stop()


@pytest_twisted.ensureDeferred
async def test_problem6_client_reconnecting_before_the_old_one_left_is_served(
    rig_dir, pki: Pki, echo_server: RunningServer
) -> None:
    rig = BridgeRig(rig_dir, pki)
    await rig.start([SocketSpec(0, echo_server.port)])
    try:
        old = await threads.deferToThread(rig.connect, 0)
        await threads.deferToThread(old.sendall, b"probe")
        assert await threads.deferToThread(read_exactly, old, 5) == b"probe"
        # The new connection is accepted while the old one is still attached; the old
        # one's close follows a moment later (a probe then the real client).
        new = await threads.deferToThread(rig.connect, 0)
        bridge = rig.bridge(0)
        await wait_until(
            lambda: bridge.held is not None or bridge.stats.client_connections["refused"],
            timeout=5,
            what="the new connection accepted",
        )
        old.close()
        await threads.deferToThread(new.sendall, b"real client")
        assert await threads.deferToThread(read_exactly, new, 11) == b"real client"
        new.close()
        assert rig.bridge(0).stats.client_connections["refused"] == 0
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_problem4_damaged_recv_disconnects_the_client_instead_of_a_hole(
    rig_dir, pki: Pki, echo_server: RunningServer
) -> None:
    rig = BridgeRig(rig_dir, pki)
    await rig.start([SocketSpec(0, echo_server.port)])
    try:
        client = await threads.deferToThread(rig.connect, 0)
        await threads.deferToThread(client.sendall, b"before")
        assert await threads.deferToThread(read_exactly, client, 6) == b"before"
        rig.emulator.inject_line(b'+QSSLURC: "recv",1,0,2,"41G"')  # a damaged recv
        assert await threads.deferToThread(eof_within, client, 10) == b""
        client.close()
        bridge = rig.bridge(0)
        assert bridge.stats.streams_broken["damaged_data"] == 1
        await wait_until(lambda: bridge.state == 0, timeout=5, what="socket closed")
        assert await rig.roundtrip(0, b"a fresh stream") == b"a fresh stream"
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_damaged_closed_urc_leaves_no_zombie_socket(
    rig_dir, pki: Pki, echo_server: RunningServer
) -> None:
    rig = BridgeRig(rig_dir, pki)
    await rig.start([SocketSpec(0, echo_server.port)])
    try:
        client = await threads.deferToThread(rig.connect, 0)
        await threads.deferToThread(client.sendall, b"hi")
        assert await threads.deferToThread(read_exactly, client, 2) == b"hi"
        rig.emulator.inject_line(b'+QSSLURC: "cl0sed",1,0')
        # The client hears of it at once, without writing first.
        assert await threads.deferToThread(eof_within, client, 10) == b""
        client.close()
        await wait_until(lambda: rig.bridge(0).state == 0, timeout=5, what="socket closed")
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_idle_timeout_closes_a_quiet_connection_end_to_end(
    rig_dir, pki: Pki, echo_server: RunningServer
) -> None:
    rig = BridgeRig(rig_dir, pki)
    await rig.start([SocketSpec(0, echo_server.port, extra="idle_timeout: 1")])
    try:
        client = await threads.deferToThread(rig.connect, 0)
        await threads.deferToThread(client.sendall, b"then silence")
        assert await threads.deferToThread(read_exactly, client, 12) == b"then silence"
        assert await threads.deferToThread(eof_within, client, 10) == b""
        client.close()
        bridge = rig.bridge(0)
        assert bridge.stats.streams_broken["idle_timeout"] == 1
        await wait_until(lambda: bridge.state == 0, timeout=5, what="socket closed")
        shown = socket_status(socket_snapshot(bridge))  # what `bridged status` shows
        assert shown.last_error is not None and shown.last_error.startswith("idle_timeout")
        assert (shown.idle_timeout, shown.idle_closes) == (1.0, 1)
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_problem1_reload_never_sends_the_old_clients_bytes_to_the_new_remote(
    rig_dir, pki: Pki, echo_server: RunningServer
) -> None:
    with start_scripted_tls_server(pki) as new_server:
        rig = BridgeRig(rig_dir, pki, baud=115200)
        spec = SocketSpec(0, echo_server.port)
        daemon = await rig.start([spec])
        try:
            old = await threads.deferToThread(rig.connect, 0)
            stop = threading.Event()

            def stream() -> None:
                # The old client writes 'O' without pause until it is disconnected.
                try:
                    while not stop.is_set():
                        old.sendall(b"O" * 730)
                except OSError:
                    pass

            writer = threading.Thread(target=stream, daemon=True)
            writer.start()
            old_bridge = rig.bridge(0)
            await wait_until(lambda: old_bridge.stats.tx_bytes > 2000, timeout=20)
            # The new socket 0 is persistent: its connection opens as soon as it may.
            rig.config_path.write_text(
                rig.config_text([SocketSpec(0, new_server.port, mode="persistent")])
            )
            await daemon.reload(load_config(rig.config_path))
            new_bridge = rig.bridge(0)
            await wait_until(lambda: new_bridge.state == 2, timeout=20, what="new socket open")
            stop.set()
            # The retired socket holds nothing: what its client wrote and was not confirmed
            # is counted lost, not queued for a connection that is not its own.
            await wait_until(
                lambda: old_bridge.state == 0 and old_bridge.channel.queued_bytes == 0,
                timeout=20,
                what="retired socket closed and empty",
            )
            assert old_bridge.stats.tx_lost_bytes > 0
            # The old client is disconnected; its unsent bytes are counted, not resent.
            old.settimeout(10)
            try:
                while old.recv(65536):
                    pass
            except OSError:
                pass  # a reset is a disconnect too
            old.close()
            fresh = os.urandom(3000)
            assert await rig.roundtrip(0, fresh) == fresh  # nothing of 'O' spliced in
            assert new_bridge.stats.send_failures == 0 and new_bridge.state == 2
        finally:
            stop.set()
            await rig.stop()


@pytest_twisted.ensureDeferred
async def test_problem2_reload_during_initialisation_configures_the_new_socket(
    rig_dir, pki: Pki, echo_server: RunningServer
) -> None:
    rig = BridgeRig(rig_dir, pki, baud=115200)
    specs = [SocketSpec(0, echo_server.port, dataformat="text")]
    rig.config_path.write_text(rig.config_text(specs))
    rig.emulator.start()
    await rig.emulator.when_ready()
    from twisted.internet import reactor

    from bridged.shell.daemon import Daemon

    daemon = Daemon(reactor, load_config(rig.config_path))
    rig.daemon = daemon
    daemon.start()
    try:
        # Once the initialisation is writing socket 0's settings (its loop has started):
        await wait_until(
            lambda: (
                daemon.modem.state is ModemState.INITIALISING
                and rig.emulator.stats.commands["AT+QSSLCFG"] > 0
            ),
            timeout=10,
            what="initialising, writing socket settings",
        )
        # Socket 0 switches to hex, socket 1 is new (and needs its client certificate).
        changed = [SocketSpec(0, echo_server.port), SocketSpec(1, echo_server.port)]
        rig.config_path.write_text(rig.config_text(changed))
        await daemon.reload(load_config(rig.config_path))
        await daemon.ready_once
        for connect_id in (0, 1):
            await wait_until(
                lambda cid=connect_id: rig.bridge(cid).channel.module_is_ready,  # type: ignore[misc]
                timeout=20,
                what=f"socket {connect_id} ready",
            )
            assert await rig.roundtrip(connect_id, b"PING") == b"PING", connect_id
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_a_client_that_closed_its_socket_is_not_taken_for_a_half_closed_one(
    rig_dir, pki: Pki, echo_server: RunningServer
) -> None:
    # A FIN is a FIN: but a client whose process closed the socket reads nothing more, so
    # its on-demand connection is closed at once, not after the half-close bound.
    rig = BridgeRig(rig_dir, pki)
    await rig.start([SocketSpec(0, echo_server.port, extra="half_close_timeout: 600")])
    try:
        assert await rig.roundtrip(0, b"done") == b"done"  # then close()
        bridge = rig.bridge(0)
        await wait_until(lambda: bridge.state == 0, timeout=5, what="connection closed")
        assert bridge.stats.streams_broken["idle_timeout"] == 0
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_a_client_reset_while_paused_does_not_keep_its_successor_out(
    rig_dir, pki: Pki, echo_server: RunningServer
) -> None:
    """A client whose bytes wait for the module is paused (flow control), so bridged does
    not read it; if it aborts then (RST: a crash, a timeout of its own), bridged must not
    keep it attached until the stuck send fails: the next client is served, not refused.
    (Soak, late '>': the dead client held its persistent socket for 45 s and every
    reconnect in between was refused.)"""
    import struct

    rig = BridgeRig(rig_dir, pki)
    spec = SocketSpec(0, echo_server.port, extra="queue: {send_max_bytes: 2048}")
    daemon = await rig.start([spec])
    try:
        assert await rig.roundtrip(0, b"warm up") == b"warm up"
        bridge = rig.bridge(0)
        rig.emulator.prompt_late(6.0)  # the next send hangs for 3 s (command_timeout)
        old = await threads.deferToThread(rig.connect, 0)
        old.setblocking(False)
        written = 0
        try:
            while written < 1 << 20:
                written += old.send(b"x" * 65536)
        except BlockingIOError:
            pass
        await wait_until(
            lambda: bridge.client is not None and bridge.client.reading_paused,
            timeout=5,
            what="the client paused",
        )
        dead = bridge.client
        old.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        old.close()  # RST
        new = await threads.deferToThread(rig.connect, 0)
        await wait_until(
            lambda: bridge.client is not None and bridge.client is not dead,
            timeout=1.5,  # before the handover wait (2 s) and the stuck send (3 s) end
            what="the new client attached",
        )
        assert bridge.stats.client_connections["refused"] == 0
        new.close()
        # Done. A power cycle ends the wedged send at once, so stopping does not wait it
        # out (the shutdown's 5 s bound on closing SSL sockets).
        rig.emulator.reboot()
        await wait_until(
            lambda: daemon.modem.state is not ModemState.READY, timeout=5, what="reboot seen"
        )
    finally:
        await rig.stop()
