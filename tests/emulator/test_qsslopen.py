"""AT+QSSLOPEN against real TLS servers: every result code the emulator can produce."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_twisted

from bridged.emulator import Emulator, ResultCode, SocketState
from tests.emulator.conftest import MakeEmulator
from tests.emulator.helpers import booted, configure_mutual_tls, ok, open_socket, upload
from tests.support.pki import Pki
from tests.support.pty_host import PtyHost
from tests.support.tls_servers import (
    RunningServer,
    free_port,
    start_openssl_server,
    start_socat_echo_server,
)
from tests.support.waiting import now

HostFor = Callable[[Emulator], PtyHost]


@pytest_twisted.ensureDeferred
async def test_mutual_tls_open_succeeds(
    emulator: Emulator, host_for: HostFor, pki: Pki, tls_echo_server: RunningServer
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await configure_mutual_tls(host, pki, connect_id=5)
    assert await open_socket(host, tls_echo_server.port, connect_id=5) == 0
    assert emulator.socket_state(5) is SocketState.OPEN
    # A second open of the same socket is a state error; the first stays up.
    assert await open_socket(host, tls_echo_server.port, connect_id=5) == ResultCode.STATE
    assert emulator.socket_state(5) is SocketState.OPEN
    assert (emulator.stats.opens, emulator.stats.open_failures) == (2, 1)


@pytest_twisted.ensureDeferred
async def test_open_by_host_name_sends_sni_and_succeeds(
    emulator: Emulator, host_for: HostFor, pki: Pki, tls_echo_server: RunningServer
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await configure_mutual_tls(host, pki)
    code = await open_socket(host, tls_echo_server.port, host_name="localhost")
    assert code == 0


@pytest_twisted.ensureDeferred
async def test_server_signed_by_another_ca_is_a_certificate_error(
    emulator: Emulator, host_for: HostFor, pki: Pki, tmp_path: Path
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await ok(host, 'AT+QSSLCFG=1,0,"seclevel",1')
    await upload(host, 0, "cacert", pki.other_ca_cert.read_bytes())
    with start_socat_echo_server(pki, require_client_cert=False) as server:
        assert await open_socket(host, server.port) == ResultCode.CERTIFICATE
    assert emulator.socket_state(0) is SocketState.CLOSED


@pytest_twisted.ensureDeferred
async def test_refused_connection_is_a_connection_error(
    emulator: Emulator, host_for: HostFor
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    assert await open_socket(host, free_port()) == ResultCode.CONNECTION


@pytest.mark.parametrize(
    "server_options",
    [
        pytest.param(["-tls1_3"], id="tls13-only"),
        pytest.param(["-cipher", "ECDHE-RSA-AES128-GCM-SHA256", "-no_tls1_3"], id="ecdhe-only"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_no_common_protocol_or_suite_is_a_cipher_error(
    emulator: Emulator, host_for: HostFor, pki: Pki, server_options: list[str]
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    with start_openssl_server(pki, server_options) as server:
        assert await open_socket(host, server.port) == ResultCode.CIPHER


@pytest_twisted.ensureDeferred
async def test_sslversion_is_honoured(emulator: Emulator, host_for: HostFor, pki: Pki) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    with start_openssl_server(pki, ["-tls1_2"]) as server:
        await ok(host, 'AT+QSSLCFG=1,0,"sslversion",1')  # TLS 1.0 only
        assert await open_socket(host, server.port) == ResultCode.CIPHER
        await ok(host, 'AT+QSSLCFG=1,0,"sslversion",3')
        assert await open_socket(host, server.port) == 0
    await ok(host, 'AT+QSSLCFG=1,1,"sslversion",0')  # SSL 3.0: not available here
    assert await open_socket(host, free_port(), connect_id=1) == ResultCode.CIPHER


@pytest.mark.parametrize(
    ("seclevel", "uploads", "code"),
    [
        pytest.param(1, {}, ResultCode.CERTIFICATE, id="no-cacert"),
        pytest.param(1, {"cacert": b"not a PEM"}, ResultCode.CERTIFICATE, id="bad-cacert"),
        pytest.param(2, {"clientcert": b"junk"}, ResultCode.CERTIFICATE, id="bad-clientcert"),
        pytest.param(2, {"clientkey": b"junk"}, ResultCode.CLIENT_KEY, id="bad-clientkey"),
        pytest.param(2, {"clientkey": b""}, ResultCode.CLIENT_KEY, id="no-clientkey"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_unusable_certificates_and_keys(
    emulator: Emulator,
    host_for: HostFor,
    pki: Pki,
    tls_echo_server: RunningServer,
    seclevel: int,
    uploads: dict[str, bytes],
    code: ResultCode,
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    if seclevel == 2:
        await configure_mutual_tls(host, pki)
    await ok(host, f'AT+QSSLCFG=1,0,"seclevel",{seclevel}')
    for name, pem in uploads.items():
        await upload(host, 0, name, pem)
    assert await open_socket(host, tls_echo_server.port) == code


@pytest_twisted.ensureDeferred
async def test_server_demanding_a_client_cert_fails_seclevel_1(
    emulator: Emulator, host_for: HostFor, pki: Pki, tls_echo_server: RunningServer
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await ok(host, 'AT+QSSLCFG=1,0,"seclevel",1')
    await upload(host, 0, "cacert", pki.ca_cert.read_bytes())
    assert await open_socket(host, tls_echo_server.port) == ResultCode.CIPHER


@pytest_twisted.ensureDeferred
async def test_silent_server_times_out_per_the_timeout_setting(
    make_emulator: MakeEmulator, host_for: HostFor
) -> None:
    emulator = make_emulator(timeout_scale=0.05)  # "timeout",10 → 0.5 s
    host = host_for(emulator)
    await booted(emulator, host)
    await ok(host, 'AT+QSSLCFG=1,0,"timeout",10')
    with socket.socket() as silent:  # the kernel completes TCP; nobody speaks TLS
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        code = await open_socket(host, silent.getsockname()[1], timeout=3)
    assert code == ResultCode.TIMEOUT


@pytest_twisted.ensureDeferred
async def test_open_latency_and_forced_failure(
    make_emulator: MakeEmulator, host_for: HostFor
) -> None:
    emulator = make_emulator(open_latency=(0.3, 0.3))
    host = host_for(emulator)
    await booted(emulator, host)
    emulator.fail_next_open(-9)
    start = now()
    assert await open_socket(host, 443) == ResultCode.OTHER
    assert now() - start >= 0.29


@pytest.mark.parametrize(
    "args",
    [
        '2,0,"127.0.0.1",443,0',  # only contextID 1 works
        '1,6,"127.0.0.1",443,0',
        '1,0,"127.0.0.1",443,1',  # transparent mode is not supported
        '1,0,"127.0.0.1",0,0',
        '1,0,"127.0.0.1",65536,0',
        '1,0,"",443,0',
        "1,0,127.0.0.1,443,0",
        '1,0,"127.0.0.1",443',
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_open_calls_are_errors_at_once(
    emulator: Emulator, host_for: HostFor, args: str
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    assert await host.command(f"AT+QSSLOPEN={args}") == b"\r\nERROR\r\n"
    assert emulator.stats.opens == 0
