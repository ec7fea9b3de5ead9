"""AT+QSSLCFG: range checks, reads, the test command, certificate upload."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import pytest_twisted

from bridged.emulator import Emulator
from tests.emulator.helpers import booted, ok, prompt_then, upload
from tests.support.pki import Pki
from tests.support.pty_host import FINAL_RESULT, PtyHost

HostFor = Callable[[Emulator], PtyHost]

# (arguments after AT+QSSLCFG=, accepted?, the value a read shows afterwards)
RANGE_TABLE = [
    ('1,0,"seclevel",0', True, "0"),
    ('1,0,"seclevel",2', True, "2"),
    ('1,0,"seclevel",3', False, None),
    ('1,0,"seclevel",-1', False, None),
    ('1,0,"seclevel","1"', False, None),
    ('1,1,"sslversion",0', True, "0"),
    ('1,1,"sslversion",4', True, "4"),
    ('1,1,"sslversion",5', False, None),
    ('1,2,"dataformat",1,1', True, "1,1"),
    ('1,2,"dataformat",0,1', True, "0,1"),
    ('1,2,"dataformat",2,0', False, None),
    ('1,2,"dataformat",1', False, None),
    ('1,3,"timeout",9', False, None),
    ('1,3,"timeout",10', True, "10"),
    ('1,3,"timeout",300', True, "300"),
    ('1,3,"timeout",301', False, None),
    ('1,4,"debug",4', True, "4"),
    ('1,4,"debug",5', False, None),
    ('1,5,"secllevel",1', True, "1"),  # the note's misspellings are aliases
    ('1,5,"secclevel",2', True, "2"),
    ('2,0,"seclevel",1', False, None),  # contextID 2, 3: syntax ok, not supported
    ('4,0,"seclevel",1', False, None),
    ('1,6,"seclevel",1', False, None),
    ("1,-1", False, None),
    ('1,0,"nosuch",1', False, None),
    ('1,0,"cacert",1', False, None),
    ("1,0,seclevel,1", False, None),  # names are quoted strings
]


@pytest.mark.parametrize(("args", "accepted", "read_back"), RANGE_TABLE)
@pytest_twisted.ensureDeferred
async def test_setting_range_checks(
    emulator: Emulator, host_for: HostFor, args: str, accepted: bool, read_back: str | None
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    expected = b"\r\nOK\r\n" if accepted else b"\r\nERROR\r\n"
    assert await host.command(f"AT+QSSLCFG={args}") == expected
    if read_back is not None:
        name_part = args.rsplit(",", 2 if "dataformat" in args else 1)[0]
        response = await host.command(f"AT+QSSLCFG={name_part}")
        assert response == f"\r\n+QSSLCFG: {name_part},{read_back}\r\n\r\nOK\r\n".encode()


@pytest_twisted.ensureDeferred
async def test_read_one_read_all_and_test_command(emulator: Emulator, host_for: HostFor) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    assert await host.command('AT+QSSLCFG=1,2,"secllevel"') == (
        b'\r\n+QSSLCFG: 1,2,"secllevel",0\r\n\r\nOK\r\n'
    )
    assert await host.command('AT+QSSLCFG=1,2,"dataformat"') == (
        b'\r\n+QSSLCFG: 1,2,"dataformat",0,0\r\n\r\nOK\r\n'
    )
    everything = await ok(host, "AT+QSSLCFG=1,2")
    assert everything.split(b"\r\n\r\n") == [
        b'\r\n+QSSLCFG: 1,2,"seclevel",0',
        b'+QSSLCFG: 1,2,"sslversion",4',
        b'+QSSLCFG: 1,2,"dataformat",0,0',
        b'+QSSLCFG: 1,2,"timeout",90',
        b'+QSSLCFG: 1,2,"debug",0',
        b'+QSSLCFG: 1,2,"cacert",0',
        b'+QSSLCFG: 1,2,"clientcert",0',
        b'+QSSLCFG: 1,2,"clientkey",0',
        b"OK\r\n",
    ]
    ranges = await ok(host, "AT+QSSLCFG=?")
    for line in (
        b"+QSSLCFG: (1-3),(0-5)\r\n",
        b'+QSSLCFG: (1-3),(0-5),"seclevel",(0-2)\r\n',
        b'+QSSLCFG: (1-3),(0-5),"sslversion",(0-4)\r\n',
        b'+QSSLCFG: (1-3),(0-5),"dataformat",(0,1),(0,1)\r\n',
        b'+QSSLCFG: (1-3),(0-5),"timeout",(10-300)\r\n',
        b'+QSSLCFG: (1-3),(0-5),"debug",(0-4)\r\n',
        b'+QSSLCFG: (1-3),(0-5),"clientkey"\r\n',
    ):
        assert line in ranges


@pytest_twisted.ensureDeferred
async def test_cert_upload_reports_byte_count_and_esc_keeps_previous(
    emulator: Emulator, host_for: HostFor, pki: Pki
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    pem = pki.ca_cert.read_bytes()
    await upload(host, 4, "cacert", pem)
    await prompt_then(host, 'AT+QSSLCFG=1,4,"cacert"', b"-----BEGIN half a cert\x1b")
    assert (await host.expect(FINAL_RESULT)).text == b"\r\nOK\r\n"
    response = await ok(host, "AT+QSSLCFG=1,4")
    assert f'+QSSLCFG: 1,4,"cacert",{len(pem)}\r\n'.encode() in response
    assert b'+QSSLCFG: 1,4,"clientkey",0\r\n' in response
    assert emulator.sockets[4].settings.certs["cacert"] == pem
    assert emulator.stats.cert_uploads == 1


@pytest_twisted.ensureDeferred
async def test_cert_upload_that_never_ends_times_out(emulator: Emulator, host_for: HostFor) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await prompt_then(host, 'AT+QSSLCFG=1,0,"clientcert"', b"-----BEGIN CERT")
    assert (await host.expect(FINAL_RESULT, timeout=3)).text == b"\r\nERROR\r\n"
    assert emulator.stats.data_mode_timeouts == 1
    await ok(host, "AT")
