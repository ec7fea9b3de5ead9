"""The emulator's line takes line time both ways (8N1: baud / 10 bytes a second).

Host → module: what the host writes reaches the module when its last bit would have
arrived, and the module reads the pty no faster, so a host that writes ahead is held
back by the kernel's pty buffer as by a real UART. Module → host: no burst after an
idle line. Download: while output is backlogged the module stops reading its TLS
connections, so a fast server is slowed down instead of bytes being dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_twisted

from bridged.emulator import Emulator
from tests.emulator.conftest import MakeEmulator
from tests.emulator.helpers import DATA_MODE_WAIT, booted, configure_mutual_tls, ok, open_socket
from tests.support.pki import Pki
from tests.support.pty_host import FINAL_RESULT, PtyHost
from tests.support.tls_servers import start_socat_tls_server
from tests.support.waiting import now, sleep, wait_until

HostFor = Callable[[Emulator], PtyHost]


@pytest_twisted.ensureDeferred
async def test_a_command_line_takes_its_line_time_to_arrive(
    make_emulator: MakeEmulator, host_for: HostFor
) -> None:
    emulator = make_emulator(baud=9600)  # 960 bytes/s
    host = host_for(emulator)
    await booted(emulator, host)
    line = b" " * 957 + b"AT\r"  # whatever precedes AT is noise: 960 bytes, one command
    before = emulator.stats.bytes_in
    start = now()
    host.write(line)
    await sleep(0.5)
    halfway = emulator.stats.bytes_in - before
    seen = await host.expect(FINAL_RESULT, timeout=5)
    elapsed = now() - start
    assert seen.text == b"\r\nOK\r\n"
    assert 400 <= halfway <= 560, halfway  # about 480 bytes in half a second
    # 1 s for the line itself, then the 6-byte answer; a little slack for a busy machine.
    assert 1.0 <= elapsed < 1.6, elapsed


@pytest_twisted.ensureDeferred
async def test_an_upload_takes_its_line_time(
    make_emulator: MakeEmulator, host_for: HostFor, pki: Pki
) -> None:
    emulator = make_emulator(baud=19200)  # 1920 bytes/s
    host = host_for(emulator)
    await booted(emulator, host)
    pem = pki.ca_cert.read_bytes()
    host.write(b'AT+QSSLCFG=1,0,"cacert"\r')
    await host.expect(b"\r\n> ")
    await sleep(DATA_MODE_WAIT)
    start = now()
    host.write(pem + b"\x1a")  # lands in the pty at once; the module reads it paced
    await host.expect(f'\r\n+QSSLCFG: 1,0,"cacert",{len(pem)}\r\n\r\nOK\r\n'.encode())
    elapsed = now() - start
    line_time = (len(pem) + 1) / 1920
    assert line_time <= elapsed < line_time + 0.5, (elapsed, line_time)


@pytest.mark.parametrize("baud", [115200, 921600])
@pytest_twisted.ensureDeferred
async def test_output_after_an_idle_line_is_not_early(
    make_emulator: MakeEmulator, host_for: HostFor, baud: int
) -> None:
    emulator = make_emulator(baud=baud)
    host = host_for(emulator)
    await booted(emulator, host)
    size = baud // 10 // 4  # a quarter of a second of line time
    await sleep(0.1)  # the line is idle
    start = now()
    emulator.inject_bytes(b"x" * size)
    await host.expect(b"x" * size, timeout=3)
    elapsed = now() - start
    assert 0.245 <= elapsed < 0.8, elapsed  # the upper bound only catches a stall


@pytest_twisted.ensureDeferred
async def test_a_flood_from_the_server_waits_in_tcp_not_in_the_module(
    make_emulator: MakeEmulator, host_for: HostFor, pki: Pki, tmp_path: Path
) -> None:
    emulator = make_emulator(baud=115200)
    host = host_for(emulator)
    await booted(emulator, host)
    flood = 4_000_000  # hex URCs: 8 MB of serial output, far past the output buffer
    with start_socat_tls_server(
        pki.server_cert,
        pki.server_key,
        cafile=pki.ca_cert,
        peer=f"SYSTEM:'head -c {flood} /dev/zero; sleep 30'",
        log_path=tmp_path / "socat.log",
    ) as server:
        await configure_mutual_tls(host, pki)
        await ok(host, 'AT+QSSLCFG=1,0,"dataformat",1,1')
        assert await open_socket(host, server.port) == 0
        await wait_until(lambda: emulator.stats.recv_urcs > 10, timeout=5, what="recv URCs")
        peak = 0
        for _ in range(20):  # two seconds: the server could have sent it all by now
            peak = max(peak, emulator.output_backlog)
            await sleep(0.1)
        assert emulator.stats.output_dropped_bytes == 0
        # Below the high-water mark plus what one TCP read can bring, hex-encoded.
        assert peak < 200_000, peak
        assert emulator.stats.received_payload_bytes < flood // 4
