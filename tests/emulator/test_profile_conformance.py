"""The emulator speaks each built-in module profile's numbers (one definition per module):
its ids, its identity, its send and recv limits, its result-code sign, its TLS versions."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted

from bridged.core.module_profile import BUILTIN_PROFILES, ModuleProfile
from bridged.emulator import Emulator
from tests.emulator.conftest import TEST_PROFILE
from tests.emulator.helpers import (
    booted,
    configure_mutual_tls,
    ok,
    open_socket,
    receive,
    send_fixed,
)
from tests.support.pki import Pki
from tests.support.pty_host import FINAL_RESULT, PtyHost
from tests.support.tls_servers import RunningServer, free_port

PROFILES = [pytest.param(p, id=name) for name, p in BUILTIN_PROFILES.items()]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    made: list[tuple[Emulator, PtyHost]] = []

    def make(module: ModuleProfile) -> tuple[Emulator, PtyHost]:
        timing = dataclasses.replace(TEST_PROFILE)
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


@pytest.mark.parametrize("module", PROFILES)
@pytest_twisted.ensureDeferred
async def test_identity_and_id_ranges(start, module: ModuleProfile) -> None:
    emulator, host = start(module)
    await booted(emulator, host)
    assert module.label.encode() in await ok(host, "ATI")
    assert f"\r\n{module.label}\r\n".encode() in await ok(host, "AT+CGMM")
    lo_ctx, hi_ctx = module.syntax_context_ids[0], module.syntax_context_ids[-1]
    lo_id, hi_id = module.syntax_connect_ids[0], module.syntax_connect_ids[-1]
    assert f"+QSSLCFG: ({lo_ctx}-{hi_ctx}),({lo_id}-{hi_id})".encode() in await ok(
        host, "AT+QSSLCFG=?"
    )
    ctx = module.context_id
    for good in module.connect_ids:
        await ok(host, f'AT+QSSLCFG={ctx},{good},"seclevel",0')
    # Ids the syntax takes but the firmware does not: ERROR, like a wrong context.
    for bad in sorted(set(module.syntax_connect_ids) - set(module.connect_ids)):
        assert await host.command(f'AT+QSSLCFG={ctx},{bad},"seclevel",0') == b"\r\nERROR\r\n"
    other_ctx = next(c for c in module.syntax_context_ids if c != ctx)
    assert await host.command(f'AT+QSSLCFG={other_ctx},0,"seclevel",0') == b"\r\nERROR\r\n"
    for version in range(5):
        answer = await host.command(f'AT+QSSLCFG={ctx},0,"sslversion",{version}')
        assert answer == (b"\r\nOK\r\n" if version in module.ssl_versions else b"\r\nERROR\r\n")


@pytest.mark.parametrize("module", PROFILES)
@pytest.mark.parametrize("hex_format", [True, False], ids=["hex", "text"])
@pytest_twisted.ensureDeferred
async def test_largest_send_and_recv_limits(
    start, module: ModuleProfile, hex_format: bool, pki: Pki, tls_echo_server: RunningServer
) -> None:
    emulator, host = start(module)
    await booted(emulator, host)
    ctx, cid = module.context_id, module.connect_ids[-1]
    await configure_mutual_tls(host, pki, cid, ctx=ctx)
    fmt = int(hex_format)
    await ok(host, f'AT+QSSLCFG={ctx},{cid},"dataformat",{fmt},{fmt}')
    assert await open_socket(host, tls_echo_server.port, cid, ctx=ctx) == 0
    size = module.max_send(hex_format)
    host.write(f"AT+QSSLSEND={ctx},{cid},{size + 1}\r".encode())
    assert b"ERROR" in (await host.expect(FINAL_RESULT)).text  # too long for the module
    payload = bytes(i * 7 % 251 for i in range(size))
    await send_fixed(host, cid, payload, hex_format, ctx=ctx)
    parts = await receive(host, size, hex_format)
    assert b"".join(parts) == payload
    assert max(map(len, parts)) <= module.max_recv(hex_format)


@pytest.mark.parametrize("module", PROFILES)
@pytest_twisted.ensureDeferred
async def test_failure_codes_have_the_profile_sign(start, module: ModuleProfile) -> None:
    emulator, host = start(module)
    await booted(emulator, host)
    ctx, cid = module.context_id, module.connect_ids[0]
    await ok(host, f'AT+QSSLCFG={ctx},{cid},"seclevel",0')
    code = await open_socket(host, free_port(), cid, ctx=ctx)  # nothing listens there
    expected = module.open_result("port_closed")
    assert code == (abs(expected) if module.unsigned_results else expected)
    assert re.fullmatch(rb"\d+" if module.unsigned_results else rb"-\d+", str(code).encode())
