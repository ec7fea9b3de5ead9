"""The emulator honours its module profile: pipelined sends, recv quoting, open codes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted

from bridged.core.module_profile import BC26, ModuleProfile
from bridged.emulator import Emulator
from tests.emulator.conftest import TEST_PROFILE
from tests.emulator.helpers import booted, configure_mutual_tls, ok, open_socket, prompt_then
from tests.support.pki import Pki
from tests.support.pty_host import PtyHost
from tests.support.tls_servers import RunningServer, free_port


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
