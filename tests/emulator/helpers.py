"""Async steps the emulator tests share (each waits with a deadline)."""

from __future__ import annotations

import binascii
import re

from bridged.emulator import Emulator
from tests.support.pki import Pki
from tests.support.pty_host import PtyHost
from tests.support.waiting import sleep, wait_until

RECV_HEAD = re.compile(rb'\r\n\+QSSLURC: "recv",\d+,(\d),(\d+),"')
#: The note's advice is to wait 500 ms after '>'; the test profile needs under 50 ms.
DATA_MODE_WAIT = 0.08


async def booted(emulator: Emulator, host: PtyHost, echo: bool = False) -> None:
    """Wait for the boot to finish and its banner to arrive; switch echo off unless
    ``echo``."""
    await emulator.when_ready()
    await host.expect(b"\r\n+CPIN: READY\r\n")
    if not echo:
        assert await host.command("ATE0") == b"ATE0\r\n\r\nOK\r\n"


async def ok(host: PtyHost, line: str) -> bytes:
    """Run ``line``; fail unless it ends in OK. Returns the response."""
    response = await host.command(line)
    assert response.endswith(b"\r\nOK\r\n"), (line, response)
    return response


async def prompt_then(host: PtyHost, command: str, data: bytes) -> None:
    """Send ``command``, wait for '>' and for data mode, then send ``data``."""
    host.write(command.encode("ascii") + b"\r")
    await host.expect(b"\r\n> ")
    await sleep(DATA_MODE_WAIT)
    host.write(data)


async def upload(host: PtyHost, connect_id: int, name: str, pem: bytes, ctx: int = 1) -> None:
    """Upload a PEM as the note says (prompt, wait, data, Ctrl+Z); check the count."""
    await prompt_then(host, f'AT+QSSLCFG={ctx},{connect_id},"{name}"', pem + b"\x1a")
    await host.expect(
        f'\r\n+QSSLCFG: {ctx},{connect_id},"{name}",{len(pem)}\r\n\r\nOK\r\n'.encode()
    )


async def configure_mutual_tls(host: PtyHost, pki: Pki, connect_id: int = 0, ctx: int = 1) -> None:
    await ok(host, f'AT+QSSLCFG={ctx},{connect_id},"seclevel",2')
    await upload(host, connect_id, "cacert", pki.ca_cert.read_bytes(), ctx)
    await upload(host, connect_id, "clientcert", pki.client_cert.read_bytes(), ctx)
    await upload(host, connect_id, "clientkey", pki.client_key.read_bytes(), ctx)


async def open_socket(
    host: PtyHost,
    port: int,
    connect_id: int = 0,
    timeout: float = 10,
    host_name: str = "127.0.0.1",
    ctx: int = 1,
) -> int:
    """QSSLOPEN to ``host_name:port``; the ``<err>`` of ``+QSSLOPEN`` as written."""
    await ok(host, f'AT+QSSLOPEN={ctx},{connect_id},"{host_name}",{port},0')
    pattern = re.compile(rb"\r\n\+QSSLOPEN: %d,%d,(-?\d+)\r\n" % (ctx, connect_id))
    seen = await host.expect(pattern, timeout=timeout)
    return int(seen.group(1))


async def send_fixed(
    host: PtyHost, connect_id: int, payload: bytes, hex_format: bool, ctx: int = 1
) -> None:
    """Fixed-length QSSLSEND that must succeed (OK, then ``+QSSLSEND: <ctx>,<id>,0``)."""
    data = binascii.hexlify(payload) if hex_format else payload
    await prompt_then(host, f"AT+QSSLSEND={ctx},{connect_id},{len(payload)}", data)
    await host.expect(b"\r\nOK\r\n")
    await host.expect(b"\r\n+QSSLSEND: %d,%d,0\r\n" % (ctx, connect_id))


async def read_recv_urc(host: PtyHost, hex_format: bool, timeout: float = 5) -> tuple[int, bytes]:
    """The next recv URC's (connectID, payload), read by its length as the spec says:
    text data may hold quotes, CR and LF."""
    seen = await host.expect(RECV_HEAD, timeout=timeout)
    connect_id, length = int(seen.group(1)), int(seen.group(2))
    size = 2 * length if hex_format else length
    await wait_until(lambda: len(host.unread()) >= size + 3, timeout, what="recv URC body")
    body, tail = host.unread()[:size], host.unread()[size : size + 3]
    assert tail == b'"\r\n', tail
    host.consumed += size + 3
    return connect_id, binascii.unhexlify(body) if hex_format else body


async def receive(host: PtyHost, total: int, hex_format: bool) -> list[bytes]:
    """Payloads of recv URCs until ``total`` bytes have come."""
    parts: list[bytes] = []
    while sum(map(len, parts)) < total:
        parts.append((await read_recv_urc(host, hex_format))[1])
    return parts
