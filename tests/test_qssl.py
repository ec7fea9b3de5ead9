"""The QSSL layer: error names, byte-count checks, tolerant close, per-socket events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.serialport import SerialPort

from bridged.core.at_codec import DataFormat, DataFormatSetting
from bridged.core.qssl_commands import QsslError, SslSocketSettings, UploadMismatch, error_name
from bridged.emulator import FAST, Emulator
from bridged.shell.at_engine import ATEngine
from bridged.shell.qssl import QsslClient, SocketSubscriber
from tests.support.pki import Pki, make_pki
from tests.support.scripted_pty import ScriptedPty
from tests.support.tls_servers import free_port, start_socat_echo_server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedPty, QsslClient]]:
    pty = ScriptedPty()
    engine = ATEngine(reactor, prompt_delay=0.01, guard_time=0.001)
    port = SerialPort(engine, pty.path, reactor, baudrate=115200)
    yield pty, QsslClient(engine, reactor, command_timeout=1.0)
    port.loseConnection()
    pty.close()


@pytest.fixture
def module(tmp_path: Path) -> Iterator[tuple[Emulator, QsslClient]]:
    emulator = Emulator(tmp_path / "tty", baud=921600, profile=FAST)
    emulator.start()
    engine = ATEngine(reactor, prompt_delay=0.06, guard_time=0.001)
    qssl = QsslClient(engine, reactor)
    holder: dict[str, SerialPort] = {}

    async def connect() -> None:
        await emulator.when_ready()
        holder["port"] = SerialPort(engine, str(emulator.device_path), reactor, 921600)
        await qssl.init_module()

    qssl.connect = connect  # type: ignore[attr-defined]
    yield emulator, qssl
    if "port" in holder:
        holder["port"].loseConnection()
    emulator.stop()


SETTINGS = SslSocketSettings(
    seclevel=1, sslversion=4, dataformat=DataFormatSetting.both(DataFormat.HEX), timeout=10, debug=0
)


def test_error_names_follow_the_spec_table() -> None:
    assert [error_name(c) for c in (0, -1, -2, -3, -4, -5, -6, -7, -9)] == [
        "ok",
        "exception",
        "connection_error",
        "cert_error",
        "key_error",
        "cipher_error",
        "state_error",
        "timeout",
        "other",
    ]
    assert error_name(-8) == "unknown"


@pytest_twisted.ensureDeferred
async def test_open_errors_carry_the_modules_code(module, pki: Pki, tmp_path: Path) -> None:
    _emulator, qssl = module
    await qssl.connect()
    await qssl.configure_socket(0, SETTINGS)
    await qssl.upload(0, "cacert", pki.other_ca_cert.read_bytes())  # did not sign the server
    server = start_socat_echo_server(pki, require_client_cert=False)
    try:
        with pytest.raises(QsslError) as wrong_ca:
            await qssl.open(0, "127.0.0.1", server.port)
        assert (wrong_ca.value.code, wrong_ca.value.name) == (-3, "cert_error")
        assert "CA or client certificate error (-3)" in str(wrong_ca.value)

        await qssl.upload(0, "cacert", pki.ca_cert.read_bytes())
        with pytest.raises(QsslError) as refused:
            await qssl.open(0, "127.0.0.1", free_port())  # nobody listens there
        assert refused.value.name == "connection_error"

        await qssl.open(0, "127.0.0.1", server.port)  # and now it works
        received = bytearray()
        qssl.subscribers[0] = SocketSubscriber(received.extend, lambda: None)
        accepted, confirmed = qssl.send(0, b"\x00binary\xff", DataFormat.HEX)
        await accepted
        await confirmed
        await qssl.close(0)
        assert bytes(received) == b"\x00binary\xff"
    finally:
        server.stop()


@pytest_twisted.ensureDeferred
async def test_an_unknown_open_code_is_kept_as_a_number(scripted) -> None:
    pty, qssl = scripted
    d = Deferred.fromCoroutine(qssl.open(4, "example.org", 443))
    await pty.wait_for(b'AT+QSSLOPEN=1,4,"example.org",443,0\r')
    pty.send(b"\r\nOK\r\n\r\n+QSSLOPEN: 1,4,-8\r\n")
    with pytest.raises(QsslError) as unknown:
        await d
    assert (unknown.value.code, unknown.value.name) == (-8, "unknown")
    assert "unknown error -8" in str(unknown.value)


@pytest_twisted.ensureDeferred
async def test_upload_checks_the_byte_count(scripted) -> None:
    pty, qssl = scripted
    d = Deferred.fromCoroutine(qssl.upload(1, "cacert", b"-----BEGIN CERTIFICATE-----\n"))
    await pty.wait_for(b'AT+QSSLCFG=1,1,"cacert"\r')
    pty.send(b"\r\n> ")
    await pty.wait_for(b"\x1a")
    pty.send(b'\r\n+QSSLCFG: 1,1,"cacert",27\r\n\r\nOK\r\n')  # one byte short
    with pytest.raises(UploadMismatch, match="counted 27 bytes, sent 28"):
        await d


@pytest_twisted.ensureDeferred
async def test_close_tolerates_ok_without_a_close_result(scripted) -> None:
    pty, qssl = scripted
    d = Deferred.fromCoroutine(qssl.close(2))
    await pty.wait_for(b"AT+QSSLCLOSE=1,2\r")
    pty.send(b"\r\nOK\r\n")  # and no +QSSLCLOSE line ever
    await d  # returns after the short wait instead of hanging or failing


@pytest_twisted.ensureDeferred
async def test_closed_urc_fails_a_pending_send_and_reaches_the_listener(scripted) -> None:
    pty, qssl = scripted
    closed: list[bool] = []
    qssl.subscribers[3] = SocketSubscriber(lambda data: None, lambda: closed.append(True))
    accepted, confirmed = qssl.send(3, b"abc", DataFormat.HEX)
    await pty.wait_for(b"AT+QSSLSEND=1,3,3\r")
    pty.send(b"\r\n> ")
    await pty.wait_for(b"616263")
    pty.send(b'\r\nOK\r\n\r\n+QSSLURC: "closed",1,3\r\n')
    await accepted
    with pytest.raises(Exception, match="closed"):
        await confirmed
    assert closed == [True]
