"""Pipelined sends end to end (issue 15): bridged's module profile allows
``max_unconfirmed_sends: 4``, the emulated BC26 either takes that many sends per socket
before the first one's ``+QSSLSEND`` result (accepting) or answers ERROR to a second one
(refusing, as the BC26 profile says). Either way every byte reaches a real TLS echo
server once, in order; against the refusing module bridged falls back to one send at a
time by itself and says so once."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads
from twisted.logger import formatEvent, globalLogPublisher

from bridged.core.channel import ChannelState
from bridged.core.module_profile import BC26
from tests.support.pki import Pki
from tests.support.rig import BridgeRig, SocketSpec
from tests.support.tls_servers import RunningServer
from tests.support.waiting import wait_until

WINDOW = 4
# The emulated network's round trip: several sends' line time at 921600 baud, so results
# trail their OKs and a socket really has sends unconfirmed.
RTT = 0.2
FALLBACK_LOG = "refused a pipelined AT+QSSLSEND"


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    seen: list[str] = []

    def observe(event: dict[str, object]) -> None:
        if event.get("log_namespace") == "bridged.socket":
            seen.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)


def pipelining_rig(rig_dir: Path, pki: Pki, module_window: int) -> BridgeRig:
    """bridged told the module takes WINDOW sends; the module takes ``module_window``."""
    profile_file = rig_dir / "module.yaml"
    profile_file.write_text(f"base: bc26\nmax_unconfirmed_sends: {WINDOW}\n")
    return BridgeRig(
        rig_dir,
        pki,
        module=dataclasses.replace(BC26, max_unconfirmed_sends=module_window),
        modem_extra=f"profile_file: {profile_file}",
        rtt=RTT,
    )


@pytest.mark.parametrize("dataformat", ["hex", "text"])
@pytest_twisted.ensureDeferred
async def test_a_module_that_takes_pipelined_sends_gets_them_and_every_byte_arrives(
    rig_dir: Path, pki: Pki, echo_server: RunningServer, warnings: list[str], dataformat: str
) -> None:
    rig = pipelining_rig(rig_dir, pki, module_window=WINDOW)
    await rig.start([SocketSpec(0, echo_server.port, dataformat=dataformat)])
    try:
        data = os.urandom(40_000)
        assert await rig.roundtrip(0, data) == data
        stats = rig.emulator.stats
        assert stats.sent_payload_bytes == len(data)  # each byte taken once
        assert stats.pipelined_sends > 0
        assert 2 <= stats.most_unconfirmed_sends <= WINDOW
        assert stats.pipelined_sends_refused == 0
        assert rig.bridge(0).stats.tx_bytes == len(data)
        assert rig.bridge(0).stats.tx_lost_bytes == 0
        assert not any(FALLBACK_LOG in line for line in warnings)
    finally:
        await rig.stop()


@pytest.mark.parametrize("dataformat", ["hex", "text"])
@pytest_twisted.ensureDeferred
async def test_a_module_that_refuses_them_makes_bridged_fall_back_once_losing_nothing(
    rig_dir: Path, pki: Pki, echo_server: RunningServer, warnings: list[str], dataformat: str
) -> None:
    rig = pipelining_rig(rig_dir, pki, module_window=1)
    await rig.start([SocketSpec(0, echo_server.port, dataformat=dataformat)])
    try:
        # After the fallback every send waits a round trip: a few sends' worth.
        data = os.urandom(10_000)
        assert await rig.roundtrip(0, data) == data
        assert await rig.roundtrip(0, data[:2000]) == data[:2000]  # a second client
        stats = rig.emulator.stats
        # The refused chunk was sent again: the module took every byte exactly once.
        assert stats.sent_payload_bytes == len(data) + 2000
        assert stats.pipelined_sends_refused == 1  # then one at a time
        assert stats.pipelined_sends == 0
        bridge = rig.bridge(0)
        assert (bridge.stats.tx_lost_bytes, bridge.stats.send_failures) == (0, 0)
        assert bridge.stats.client_connections["accepted"] == 2
        assert [line for line in warnings if FALLBACK_LOG in line] == [
            "the module refused a pipelined AT+QSSLSEND (socket 0: send failed: module "
            "answered +CME ERROR: 3 before '>'): sending one at a time from now on "
            f"(max_unconfirmed_sends {WINDOW} -> 1)"
        ]
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_a_connection_lost_with_sends_unconfirmed_disconnects_the_client_counting_them(
    rig_dir: Path, pki: Pki, echo_server: RunningServer
) -> None:
    rig = pipelining_rig(rig_dir, pki, module_window=WINDOW)
    await rig.start([SocketSpec(0, echo_server.port)])
    try:
        sock = await threads.deferToThread(rig.connect, 0)
        bridge = rig.bridge(0)
        writer = threads.deferToThread(_write_until_closed, sock, os.urandom(200_000))
        await wait_until(
            lambda: bridge.channel.unconfirmed_sends >= 2, timeout=15, what="sends pipelined"
        )
        rig.emulator.close_from_network(0)
        await wait_until(lambda: bridge.channel.state is ChannelState.CLOSED, timeout=10)
        await writer
        echoed = await threads.deferToThread(_read_until_closed, sock)
        # Nothing silently lost: whatever was not confirmed is counted, its client is gone.
        assert bridge.stats.tx_lost_bytes > 0
        assert bridge.channel.queued_bytes == 0 and not bridge.channel.client_attached
        assert len(echoed) <= bridge.stats.tx_bytes
    finally:
        await rig.stop()


def _write_until_closed(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the bridge closed the client: expected
        sock.sendall(data)


def _read_until_closed(sock: socket.socket) -> bytes:
    received = bytearray()
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except OSError:
        pass
    finally:
        sock.close()
    return bytes(received)
