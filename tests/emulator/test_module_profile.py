"""The emulator honours its module profile: pipelined sends, recv quoting, open codes."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted

from bridged.core.module_profile import BC26, ModuleProfile
from bridged.emulator import Emulator
from tests.emulator.conftest import TEST_PROFILE
from tests.emulator.helpers import (
    booted,
    configure_mutual_tls,
    ok,
    open_socket,
    prompt_then,
)
from tests.support.pki import Pki
from tests.support.pty_host import PtyHost
from tests.support.tls_servers import RunningServer, free_port
from tests.support.waiting import sleep, wait_until


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    made: list[tuple[Emulator, PtyHost]] = []

    def make(module: ModuleProfile) -> tuple[Emulator, PtyHost]:
        timing = dataclasses.replace(TEST_PROFILE, rtt=0.3)
        emulator = Emulator(tmp_path / f"tty{len(made)}", profile=timing, module_profile=module)
        emulator.start()
        host = PtyHost(emulator.device_path)
        host.open()
        made.append((emulator, host))
        return emulator, host

    yield make
    for emulator, host in made:
        host.close()
        emulator.stop()


@pytest.mark.parametrize(
    ("max_unconfirmed", "second_answer"), [(1, b"\r\nERROR\r\n"), (2, b"\r\n> ")]
)
@pytest_twisted.ensureDeferred
async def test_a_second_send_before_the_first_result_follows_the_profile(
    start, pki: Pki, tls_echo_server: RunningServer, max_unconfirmed: int, second_answer: bytes
) -> None:
    emulator, host = start(dataclasses.replace(BC26, max_unconfirmed_sends=max_unconfirmed))
    await booted(emulator, host)
    await configure_mutual_tls(host, pki)
    assert await open_socket(host, tls_echo_server.port) == 0
    await prompt_then(host, "AT+QSSLSEND=1,0,2", b"hi")
    await host.expect(b"\r\nOK\r\n")
    host.skip_all()
    host.write(b"AT+QSSLSEND=1,0,2\r")  # the first one's +QSSLSEND is 0.3 s away
    await host.expect(second_answer)
    assert b"+QSSLSEND: 1,0" not in host.unread()


def _since(host: PtyHost, start: int) -> tuple[list[int], bytes]:
    """The socket 0 ``+QSSLSEND`` codes and echoed text bytes received since ``start``
    (results and echoes race each other, so they are read from one record)."""
    text = bytes(host.received[start:])
    codes = [int(c) for c in re.findall(rb"\+QSSLSEND: 1,0,(-?\d+)\r\n", text)]
    echoed = b"".join(re.findall(rb'\+QSSLURC: "recv",1,0,\d+,"([^"]*)"\r\n', text))
    return codes, echoed


async def _until(host: PtyHost, start: int, results: int, echoed: int = 0) -> None:
    def seen() -> bool:
        codes, data = _since(host, start)
        return len(codes) >= results and len(data) >= echoed

    await wait_until(seen, 5, what=f"{results} send results, {echoed} echoed bytes")


@pytest_twisted.ensureDeferred
async def test_a_refused_pipelined_send_takes_no_data_and_the_earlier_result_still_comes(
    start, pki: Pki, tls_echo_server: RunningServer
) -> None:
    """The refusal is at the command, before '>': the host may send the same chunk again
    once the earlier result is in, and the server sees each byte once, in order."""
    emulator, host = start(BC26)  # max_unconfirmed_sends 1
    await booted(emulator, host)
    await configure_mutual_tls(host, pki)
    assert await open_socket(host, tls_echo_server.port) == 0
    mark = len(host.received)
    await prompt_then(host, "AT+QSSLSEND=1,0,3", b"one")
    await host.expect(b"\r\nOK\r\n")
    host.write(b"AT+QSSLSEND=1,0,3\r")  # its result is 0.3 s away
    await host.expect(b"\r\nERROR\r\n")
    await _until(host, mark, results=1)
    await prompt_then(host, "AT+QSSLSEND=1,0,3", b"two")  # the refused chunk, again
    await host.expect(b"\r\nOK\r\n")
    await _until(host, mark, results=2, echoed=6)
    assert _since(host, mark) == ([0, 0], b"onetwo")  # no result for the refused one
    stats = emulator.stats
    assert (stats.sends, stats.pipelined_sends_refused, stats.pipelined_sends) == (2, 1, 0)


@pytest_twisted.ensureDeferred
async def test_pipelined_sends_up_to_the_limit_get_their_results_in_order(
    start, pki: Pki, tls_echo_server: RunningServer
) -> None:
    emulator, host = start(dataclasses.replace(BC26, max_unconfirmed_sends=2))
    await booted(emulator, host)
    await configure_mutual_tls(host, pki)
    assert await open_socket(host, tls_echo_server.port) == 0
    mark = len(host.received)
    for piece in (b"aa", b"bb"):
        await prompt_then(host, "AT+QSSLSEND=1,0,2", piece)
        await host.expect(b"\r\nOK\r\n")
    # A third while both results are out (0.3 s away): beyond this module's two.
    host.write(b"AT+QSSLSEND=1,0,2\r")
    await host.expect(b"\r\nERROR\r\n")
    await _until(host, mark, results=2, echoed=4)
    assert _since(host, mark) == ([0, 0], b"aabb")
    stats = emulator.stats
    assert (stats.pipelined_sends, stats.most_unconfirmed_sends) == (1, 2)
    assert stats.pipelined_sends_refused == 1


@pytest_twisted.ensureDeferred
async def test_a_send_on_a_new_connection_is_not_refused_for_the_last_ones_result(
    start, pki: Pki, tls_echo_server: RunningServer
) -> None:
    emulator, host = start(BC26)
    await booted(emulator, host)
    await configure_mutual_tls(host, pki)
    assert await open_socket(host, tls_echo_server.port) == 0
    await prompt_then(host, "AT+QSSLSEND=1,0,2", b"hi")
    await host.expect(b"\r\nOK\r\n")
    await ok(host, "AT+QSSLCLOSE=1,0")  # before that send's result (0.3 s away)
    assert await open_socket(host, tls_echo_server.port) == 0
    host.skip_all()
    host.write(b"AT+QSSLSEND=1,0,2\r")
    await host.expect(b"\r\n> ")


@pytest.mark.parametrize(("quoted", "line"), [(True, b',2,"6869"\r\n'), (False, b",2,6869\r\n")])
@pytest_twisted.ensureDeferred
async def test_recv_data_is_quoted_or_bare_as_the_profile_says(
    start, pki: Pki, tls_echo_server: RunningServer, quoted: bool, line: bytes
) -> None:
    emulator, host = start(dataclasses.replace(BC26, recv_quoted=quoted))
    await booted(emulator, host)
    await configure_mutual_tls(host, pki)
    await ok(host, 'AT+QSSLCFG=1,0,"dataformat",1,1')
    assert await open_socket(host, tls_echo_server.port) == 0
    await prompt_then(host, "AT+QSSLSEND=1,0,2", b"6869")
    await host.expect(b'+QSSLURC: "recv",1,0' + line)


@pytest_twisted.ensureDeferred
async def test_open_codes_come_from_the_profile(start) -> None:
    codes = {"wrong_ca": -4, "client_cert_missing": -3, "port_closed": -9, "dns_failure": -7}
    emulator, host = start(dataclasses.replace(BC26, open_results=codes))
    await booted(emulator, host)
    assert await open_socket(host, free_port()) == -9
    assert await open_socket(host, 443, connect_id=1, host_name="nothing.invalid") == -7


@pytest_twisted.ensureDeferred
async def test_a_closed_connections_sends_get_no_result_on_the_next_one(
    start, pki: Pki, tls_echo_server: RunningServer
) -> None:
    emulator, host = start(dataclasses.replace(BC26, max_unconfirmed_sends=2))
    await booted(emulator, host)
    await configure_mutual_tls(host, pki)
    assert await open_socket(host, tls_echo_server.port) == 0
    mark = len(host.received)
    await prompt_then(host, "AT+QSSLSEND=1,0,2", b"hi")
    await host.expect(b"\r\nOK\r\n")
    await ok(host, "AT+QSSLCLOSE=1,0")  # before that send's result (0.3 s away)
    assert await open_socket(host, tls_echo_server.port) == 0
    await prompt_then(host, "AT+QSSLSEND=1,0,2", b"yo")
    await host.expect(b"\r\nOK\r\n")
    await _until(host, mark, results=1, echoed=2)
    await sleep(0.4)  # past when the first send's result would have come
    assert _since(host, mark) == ([0], b"yo")  # one result: the new connection's own
