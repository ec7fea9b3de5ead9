"""Data over an open socket: QSSLSEND in both formats, recv URCs, data-mode timing,
closing from either side, URC placement, send faults."""

from __future__ import annotations

import binascii
from collections.abc import Callable

import pytest
import pytest_twisted

from bridged.emulator import Emulator, SendErrorStage, SocketState, UrcRelease
from tests.emulator.conftest import MakeEmulator
from tests.emulator.helpers import (
    booted,
    configure_mutual_tls,
    ok,
    open_socket,
    prompt_then,
    read_recv_urc,
    receive,
    send_fixed,
)
from tests.support.pki import Pki
from tests.support.pty_host import FINAL_RESULT, PtyHost
from tests.support.tls_servers import RunningServer, start_scripted_tls_server
from tests.support.waiting import now, wait_until

HostFor = Callable[[Emulator], PtyHost]


async def connected(
    emulator: Emulator, host: PtyHost, pki: Pki, server: RunningServer, connect_id: int = 0
) -> None:
    await configure_mutual_tls(host, pki, connect_id)
    assert await open_socket(host, server.port, connect_id) == 0


@pytest.mark.parametrize(
    ("hex_format", "size", "limit"),
    [pytest.param(True, 730, 650, id="hex"), pytest.param(False, 1460, 1300, id="text")],
)
@pytest_twisted.ensureDeferred
async def test_largest_send_echoes_back_in_limited_urcs(
    emulator: Emulator,
    host_for: HostFor,
    pki: Pki,
    tls_echo_server: RunningServer,
    hex_format: bool,
    size: int,
    limit: int,
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await connected(emulator, host, pki, tls_echo_server)
    fmt = int(hex_format)
    await ok(host, f'AT+QSSLCFG=1,0,"dataformat",{fmt},{fmt}')
    payload = bytes(i * 7 % 251 for i in range(size))
    await send_fixed(host, 0, payload, hex_format)
    parts = await receive(host, size, hex_format)
    assert b"".join(parts) == payload
    assert len(parts) >= 2 and max(map(len, parts)) <= limit
    assert emulator.stats.sent_payload_bytes == emulator.stats.received_payload_bytes == size


@pytest_twisted.ensureDeferred
async def test_binary_text_payload_round_trips(
    emulator: Emulator, host_for: HostFor, pki: Pki, tls_echo_server: RunningServer
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await connected(emulator, host, pki, tls_echo_server)
    # Fixed length is binary safe: quotes, CR, LF, NUL, 0xFF, Ctrl+Z, Esc are data.
    payload = b'"\r\n\x00\xff\x1a\x1b",\r\n' + bytes(range(256))
    await send_fixed(host, 0, payload, hex_format=False)
    assert b"".join(await receive(host, len(payload), hex_format=False)) == payload


@pytest_twisted.ensureDeferred
async def test_hex_send_with_text_receive(
    emulator: Emulator, host_for: HostFor, pki: Pki, tls_echo_server: RunningServer
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await connected(emulator, host, pki, tls_echo_server)
    await ok(host, 'AT+QSSLCFG=1,0,"dataformat",1,0')
    await prompt_then(host, "AT+QSSLSEND=1,0,4", b"4f6B0d0A")  # either case
    await host.expect(b"\r\nOK\r\n\r\n+QSSLSEND: 1,0,0\r\n")
    assert await read_recv_urc(host, hex_format=False) == (0, b"Ok\r\n")


@pytest_twisted.ensureDeferred
async def test_variable_length_send_ends_with_ctrl_z_and_esc_cancels(
    emulator: Emulator, host_for: HostFor, pki: Pki, tls_echo_server: RunningServer
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await connected(emulator, host, pki, tls_echo_server)
    await prompt_then(host, "AT+QSSLSEND=1,0", b"never sent\x1b")
    assert (await host.expect(FINAL_RESULT)).text == b"\r\nOK\r\n"
    await prompt_then(host, "AT+QSSLSEND=1,0", b"1234567890\x1a")
    await host.expect(b"\r\nOK\r\n\r\n+QSSLSEND: 1,0,0\r\n")
    assert await read_recv_urc(host, hex_format=False) == (0, b"1234567890")
    assert emulator.stats.sends == 1


@pytest_twisted.ensureDeferred
async def test_send_errors_come_at_once_without_prompt(
    emulator: Emulator, host_for: HostFor, pki: Pki, tls_echo_server: RunningServer
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    assert await host.command("AT+QSSLSEND=1,0,5") == b"\r\nERROR\r\n"  # not connected
    await connected(emulator, host, pki, tls_echo_server)
    for length in (0, 1461):
        assert await host.command(f"AT+QSSLSEND=1,0,{length}") == b"\r\nERROR\r\n"
    await ok(host, 'AT+QSSLCFG=1,0,"dataformat",1,1')
    assert await host.command("AT+QSSLSEND=1,0,731") == b"\r\nERROR\r\n"
    assert await host.command("AT+QSSLSEND=1,1,1") == b"\r\nERROR\r\n"  # socket 1 closed
    assert await host.command("AT+QSSLSEND=2,0,1") == b"\r\nERROR\r\n"
    await prompt_then(host, "AT+QSSLSEND=1,0,2", b"zz11")  # not hex digits
    assert (await host.expect(FINAL_RESULT)).text == b"\r\nERROR\r\n"
    assert emulator.stats.sends == 0 and emulator.line_mode.value == "command"


@pytest_twisted.ensureDeferred
async def test_bytes_before_data_mode_are_dropped_and_the_send_times_out(
    emulator: Emulator, host_for: HostFor, pki: Pki, tls_echo_server: RunningServer
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await connected(emulator, host, pki, tls_echo_server)
    emulator.set_prompt_delay(0.3)
    host.write(b"AT+QSSLSEND=1,0,10\r")
    await host.expect(b"\r\n> ")
    host.write(b"0123456789")  # too early: the module is not listening yet
    await wait_until(lambda: emulator.stats.early_dropped_bytes == 10, what="early drop")
    # Data mode begins, nothing more comes, the module gives up (test profile: 1 s).
    assert (await host.expect(FINAL_RESULT, timeout=3)).text == b"\r\nERROR\r\n"
    assert emulator.stats.data_mode_timeouts == 1 and emulator.stats.sends == 0
    # The line is usable again and the socket still open.
    emulator.set_prompt_delay(None)
    await send_fixed(host, 0, b"again", hex_format=False)
    assert await read_recv_urc(host, hex_format=False) == (0, b"again")


@pytest.mark.parametrize("abrupt", [False, True], ids=["close_notify", "reset"])
@pytest_twisted.ensureDeferred
async def test_closed_urc_when_the_server_closes(
    emulator: Emulator, host_for: HostFor, pki: Pki, abrupt: bool
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    # Echo five bytes, then the server ends the connection.
    with start_scripted_tls_server(pki, close_after=5, abrupt=abrupt) as server:
        await connected(emulator, host, pki, server)
        await send_fixed(host, 0, b"hello", hex_format=False)
        assert await read_recv_urc(host, hex_format=False) == (0, b"hello")
        await host.expect(b'\r\n+QSSLURC: "closed",1,0\r\n', timeout=5)
    assert emulator.socket_state(0) is SocketState.CLOSED
    assert await host.command("AT+QSSLSEND=1,0,1") == b"\r\nERROR\r\n"
    # Closed by the module itself: the socket can be opened again straight away.
    assert emulator.stats.closed_urcs == 1


@pytest_twisted.ensureDeferred
async def test_qsslclose_and_network_side_close(
    emulator: Emulator, host_for: HostFor, pki: Pki, tls_echo_server: RunningServer
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await connected(emulator, host, pki, tls_echo_server, connect_id=0)
    await connected(emulator, host, pki, tls_echo_server, connect_id=1)
    await ok(host, "AT+QSSLCLOSE=1,0")
    await host.expect(b"\r\n+QSSLCLOSE: 1,0,0\r\n")
    assert emulator.socket_state(0) is SocketState.CLOSED
    emulator.close_from_network(1)
    await host.expect(b'\r\n+QSSLURC: "closed",1,1\r\n')
    assert emulator.socket_state(1) is SocketState.CLOSED
    assert b"closed" not in host.unread()  # exactly one closed URC, none for socket 0


@pytest_twisted.ensureDeferred
async def test_urcs_wait_while_in_data_mode(
    emulator: Emulator, host_for: HostFor, pki: Pki, tls_echo_server: RunningServer
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await connected(emulator, host, pki, tls_echo_server, connect_id=0)
    await connected(emulator, host, pki, tls_echo_server, connect_id=1)
    emulator.set_prompt_delay(0.2)
    host.write(b"AT+QSSLSEND=1,0,5\r")
    await host.expect(b"\r\n> ")
    emulator.close_from_network(1)
    await wait_until(lambda: emulator.stats.closed_urcs == 1, what="socket 1 closed")
    await wait_until(lambda: emulator.line_mode.value == "data", what="data mode")
    assert b"closed" not in host.unread()
    host.write(b"hello")
    seen = await host.expect(b'\r\n+QSSLURC: "closed",1,1\r\n')
    assert seen.text.startswith(b"\r\nOK\r\n")


@pytest.mark.parametrize("where", list(UrcRelease))
@pytest_twisted.ensureDeferred
async def test_urcs_released_inside_a_response(
    emulator: Emulator,
    host_for: HostFor,
    pki: Pki,
    tls_echo_server: RunningServer,
    where: UrcRelease,
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await connected(emulator, host, pki, tls_echo_server)
    emulator.release_urcs_in_next_response(where)
    await prompt_then(host, "AT+QSSLSEND=1,0,4", b"ping")
    await host.expect(b"\r\nOK\r\n")
    await wait_until(lambda: emulator.stats.recv_urcs == 1, what="echo arrived (held)")
    response = await ok(host, "AT+QSSLCFG=1,0")
    urcs = b'\r\n+QSSLSEND: 1,0,0\r\n\r\n+QSSLURC: "recv",1,0,4,"ping"\r\n'
    first = b'\r\n+QSSLCFG: 1,0,"seclevel",2\r\n'
    if where is UrcRelease.AFTER_FIRST_LINE:
        assert response.startswith(first + urcs)
    else:
        assert response.endswith(urcs + b"\r\nOK\r\n")


@pytest_twisted.ensureDeferred
async def test_forced_send_errors(
    emulator: Emulator, host_for: HostFor, pki: Pki, tls_echo_server: RunningServer
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await connected(emulator, host, pki, tls_echo_server)
    emulator.fail_next_sends(1, SendErrorStage.COMMAND)
    emulator.fail_next_sends(1, SendErrorStage.AFTER_DATA)
    assert await host.command("AT+QSSLSEND=1,0,3") == b"\r\nERROR\r\n"
    await prompt_then(host, "AT+QSSLSEND=1,0,3", b"abc")
    assert (await host.expect(FINAL_RESULT)).text == b"\r\nERROR\r\n"
    await send_fixed(host, 0, b"xyz", hex_format=False)
    assert await read_recv_urc(host, hex_format=False) == (0, b"xyz")
    assert (emulator.stats.sends, emulator.stats.send_failures) == (1, 2)


@pytest_twisted.ensureDeferred
async def test_uplink_rate_and_rtt_delay_the_send_result(
    make_emulator: MakeEmulator, host_for: HostFor, pki: Pki, tls_echo_server: RunningServer
) -> None:
    emulator = make_emulator(uplink_rate=2000.0, rtt=0.2)
    host = host_for(emulator)
    await booted(emulator, host)
    await connected(emulator, host, pki, tls_echo_server)
    payload = binascii.hexlify(bytes(200))[:400]  # 400 text bytes: 0.2 s of uplink
    await prompt_then(host, f"AT+QSSLSEND=1,0,{len(payload)}", payload)
    await host.expect(b"\r\nOK\r\n")
    start = now()
    await host.expect(b"\r\n+QSSLSEND: 1,0,0\r\n")
    assert now() - start >= 0.35
    assert b"".join(await receive(host, len(payload), hex_format=False)) == payload
