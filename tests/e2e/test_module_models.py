"""bridged end to end on each module model: the BC26's six sockets on context 1 and the
BC660K-GL's one socket on context 0 (1024-byte sends, 1400-byte recvs, unsigned result
codes), configured by name or found by ``modem.model: auto``."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads

from bridged.config import Config, load_config
from bridged.core.module_profile import BC26, BC660K, ModuleProfile
from bridged.emulator import FAST, Emulator
from bridged.shell.daemon import modem_options, socket_setup
from bridged.shell.modem import Modem
from tests.support.pki import Pki
from tests.support.rig import BridgeRig, SocketSpec, read_exactly, read_until_eof
from tests.support.tls_servers import RunningServer

MODELS = [pytest.param(BC26, id="bc26"), pytest.param(BC660K, id="bc660k")]


@pytest.mark.parametrize("module", MODELS)
@pytest.mark.parametrize(
    ("dataformat", "send_hex", "recv_hex"),
    [
        pytest.param("hex", True, True, id="hex"),
        pytest.param("text", False, False, id="text"),
        pytest.param("{send: text, recv: hex}", False, True, id="text-send-hex-recv"),
        pytest.param("{send: hex, recv: text}", True, False, id="hex-send-text-recv"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_binary_round_trip_in_the_modules_largest_chunks(
    rig_dir: Path,
    pki: Pki,
    echo_server: RunningServer,
    module: ModuleProfile,
    dataformat: str,
    send_hex: bool,
    recv_hex: bool,
) -> None:
    rig = BridgeRig(rig_dir, pki, module=module)
    cid = module.connect_ids[-1]
    await rig.start([SocketSpec(cid, echo_server.port, dataformat=dataformat)])
    try:
        data = os.urandom(60_000)
        sends_before = rig.emulator.stats.sends
        assert await rig.roundtrip(cid, data) == data
        # Written as "dataformat",<send>,<recv>: the module holds each direction's format.
        settings = rig.emulator.sockets[cid].settings
        assert (settings.send_hex, settings.recv_hex) == (send_hex, recv_hex)
        # Coalesced into the module's largest sends in the send format (1460 text on a
        # BC26, 1024 either way on a BC660K).
        chunk = module.max_send(send_hex)
        sends = rig.emulator.stats.sends - sends_before
        assert math.ceil(len(data) / chunk) <= sends <= math.ceil(len(data) / chunk) + 5
        stats = rig.bridge(cid).stats
        assert stats.tx_lost_bytes == 0 and stats.rx_dropped_bytes == 0
    finally:
        await rig.stop()


@pytest.mark.parametrize("module", MODELS)
@pytest_twisted.ensureDeferred
async def test_remote_close_and_a_failed_open_on_each_model(
    rig_dir: Path, pki: Pki, echo_server: RunningServer, module: ModuleProfile
) -> None:
    rig = BridgeRig(rig_dir, pki, module=module)
    cid = module.connect_ids[0]
    await rig.start([SocketSpec(cid, echo_server.port)])
    try:
        sock = await threads.deferToThread(rig.connect, cid)
        await threads.deferToThread(sock.sendall, b"ping")
        assert await threads.deferToThread(read_exactly, sock, 4) == b"ping"
        rig.emulator.close_from_network(cid)
        assert await threads.deferToThread(read_until_eof, sock) == b""
        sock.close()
        assert rig.bridge(cid).stats.remote_closes == 1
        # An open that fails (the BC660K writes its code unsigned): the client is closed,
        # the next one works.
        for _ in range(3):
            rig.emulator.fail_next_open(-3)
        sock = await threads.deferToThread(rig.connect, cid)
        await threads.deferToThread(sock.sendall, b"x")
        assert await threads.deferToThread(read_until_eof, sock) == b""
        sock.close()
        assert await rig.roundtrip(cid, b"again") == b"again"
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_model_auto_finds_a_bc660k_and_uses_its_limits(
    rig_dir: Path, pki: Pki, echo_server: RunningServer
) -> None:
    rig = BridgeRig(rig_dir, pki, module=BC660K, model="auto")
    await rig.start([SocketSpec(0, echo_server.port)])
    try:
        assert rig.daemon is not None
        qssl = rig.daemon.modem.qssl
        assert qssl is not None and qssl.profile is BC660K
        data = os.urandom(20_480)
        sends_before = rig.emulator.stats.sends
        assert await rig.roundtrip(0, data) == data
        assert rig.emulator.stats.sends - sends_before <= 20 + 3  # 1024-byte hex sends
        assert rig.emulator.stats.commands["ATI"] >= 1
    finally:
        await rig.stop()


async def fatal_reason(emulator: Emulator, config: Config) -> str:
    """Start the modem on the emulator; what it gives up with (within 15 s)."""
    emulator.start()
    modem = Modem(reactor, modem_options(config), [socket_setup(s) for s in config.sockets])
    fatal: defer.Deferred[str] = defer.Deferred()
    modem.fatal_observers.append(fatal.callback)
    try:
        await emulator.when_ready()
        modem.start()
        return await fatal.addTimeout(15, reactor)
    finally:
        modem.stop()
        emulator.stop()


@pytest_twisted.ensureDeferred
async def test_model_auto_refuses_a_socket_the_module_lacks_naming_it(
    tmp_path: Path, pki: Pki, echo_server: RunningServer
) -> None:
    device = tmp_path / "tty"
    emulator = Emulator(device, profile=FAST, module_profile=BC660K)
    config_path = tmp_path / "bridged.yaml"
    config_path.write_text(
        f"serial: {{device: {device}}}\nmodem: {{model: auto, prompt_delay: 0.01}}\n"
        "ssl: {seclevel: 0}\nmetrics: null\nsockets:\n"
        f"  - {{connect_id: 0, listen: '127.0.0.1:1', remote: '127.0.0.1:{echo_server.port}'}}\n"
        f"  - {{connect_id: 3, listen: '127.0.0.1:2', remote: '127.0.0.1:{echo_server.port}'}}\n"
    )
    config = load_config(config_path)  # valid: "auto" is only known at start
    why = await fatal_reason(emulator, config)
    assert "BC660K-GL" in why and "only connectID 0" in why and "3" in why
    assert emulator.stats.commands["AT+QSSLCFG"] == 0  # nothing configured


@pytest_twisted.ensureDeferred
async def test_model_auto_refuses_an_sslversion_the_module_lacks(
    tmp_path: Path, echo_server: RunningServer
) -> None:
    device = tmp_path / "tty"
    emulator = Emulator(device, profile=FAST, module_profile=BC660K)
    config_path = tmp_path / "bridged.yaml"
    config_path.write_text(
        f"serial: {{device: {device}}}\nmodem: {{model: auto, prompt_delay: 0.01}}\n"
        "ssl: {seclevel: 0, sslversion: 0}\nmetrics: null\nsockets:\n"
        f"  - {{connect_id: 0, listen: '127.0.0.1:1', remote: '127.0.0.1:{echo_server.port}'}}\n"
    )
    config = load_config(config_path)
    why = await fatal_reason(emulator, config)
    assert "BC660K-GL" in why and "sslversion 0" in why
