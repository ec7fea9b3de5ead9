"""Echo, general commands, errors, boot, reboot, hang-up, line noise, pacing — over the
emulator's real pty."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_twisted

from bridged.emulator import Emulator, LineMode
from tests.emulator.conftest import TEST_PROFILE, MakeEmulator
from tests.emulator.helpers import booted, ok
from tests.support.pty_host import FINAL_RESULT, PtyHost
from tests.support.waiting import now, wait_until

HostFor = Callable[[Emulator], PtyHost]


@pytest_twisted.ensureDeferred
async def test_boot_banner_then_echo_until_ate0(emulator: Emulator, host_for: HostFor) -> None:
    host = host_for(emulator)
    await emulator.when_ready()
    seen = await host.expect(b"\r\n+CPIN: READY\r\n")
    assert b"Leaving the BROM" in seen.text and b"\r\nRDY\r\n" in seen.text
    assert await host.command("AT") == b"AT\r\n\r\nOK\r\n"
    assert await host.command("ATE0") == b"ATE0\r\n\r\nOK\r\n"
    assert await host.command("AT") == b"\r\nOK\r\n"
    assert await host.command("ATE1") == b"\r\nOK\r\n"
    assert await host.command("at") == b"at\r\n\r\nOK\r\n"  # lower case is fine


@pytest_twisted.ensureDeferred
async def test_cr_lf_terminated_lines_and_noise_before_at(
    emulator: Emulator, host_for: HostFor
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    host.write(b"AT\r\n")
    assert (await host.expect(FINAL_RESULT)).text == b"\r\nOK\r\n"
    host.write(b"\x00\xffAT+CSQ\r")  # what precedes AT is noise, as in V.250
    assert (await host.expect(FINAL_RESULT)).text == b"\r\n+CSQ: 22,99\r\n\r\nOK\r\n"


@pytest.mark.parametrize(
    ("command", "response"),
    [
        ("ATI", b"\r\nQuectel_Ltd\r\n\r\nQuectel_BC26\r\n\r\nRevision: BC26NBR01A10\r\n\r\nOK\r\n"),
        ("AT+CSQ", b"\r\n+CSQ: 22,99\r\n\r\nOK\r\n"),
        ("AT+CEREG?", b"\r\n+CEREG: 0,1\r\n\r\nOK\r\n"),
        ("AT+CPIN?", b"\r\n+CPIN: READY\r\n\r\nOK\r\n"),
        ("AT+IPR?", b"\r\n+IPR: 115200\r\n\r\nOK\r\n"),
        ("AT+QSCLK=0", b"\r\nOK\r\n"),
        ("AT+QSCLK=1", b"\r\nOK\r\n"),
        ("AT+QSCLK=7", b"\r\nERROR\r\n"),
        ("AT+CMEE=0", b"\r\nOK\r\n"),
        ("AT+CMEE=3", b"\r\nERROR\r\n"),
        ("AT+NOSUCH", b"\r\nERROR\r\n"),
        ("ATX", b"\r\nERROR\r\n"),
        ('AT+QSSLCFG="1",0', b"\r\nERROR\r\n"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_general_commands(
    emulator: Emulator, host_for: HostFor, command: str, response: bytes
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    assert await host.command(command) == response


@pytest_twisted.ensureDeferred
async def test_qeng_line_is_plausible(emulator: Emulator, host_for: HostFor) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    response = await ok(host, "AT+QENG=0")
    fields = r'0,\d+,\d+,\d+,"[0-9A-F]+",-\d+,-\d+,-\d+,-?\d+,\d+,"[0-9A-F]+",[0-2],-?\d+'
    assert re.fullmatch(rb"\r\n\+QENG: " + fields.encode() + rb"\r\n\r\nOK\r\n", response)


@pytest_twisted.ensureDeferred
async def test_cmee_turns_errors_into_cme_errors(emulator: Emulator, host_for: HostFor) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await ok(host, "AT+CMEE=1")
    assert await host.command('AT+QSSLCFG=1,0,"timeout",5') == b"\r\n+CME ERROR: 50\r\n"
    assert await host.command("AT+NOSUCH") == b"\r\n+CME ERROR: 100\r\n"
    assert await host.command("AT+CMEE?") == b"\r\n+CMEE: 1\r\n\r\nOK\r\n"
    await ok(host, "AT+CMEE=2")
    assert await host.command("AT+QSSLSEND=1,0,1") == b"\r\n+CME ERROR: operation not allowed\r\n"


@pytest_twisted.ensureDeferred
async def test_reboot_loses_settings_and_ignores_input_while_booting(
    make_emulator: MakeEmulator, host_for: HostFor
) -> None:
    emulator = make_emulator(boot_time=0.3)
    host = host_for(emulator)
    await booted(emulator, host)
    await ok(host, 'AT+QSSLCFG=1,3,"timeout",20')
    await ok(host, "AT+CMEE=1")
    emulator.reboot()
    await host.expect(b"Leaving the BROM\r\n")
    host.write(b"AT\r")  # the module is deaf until RDY
    await host.expect(b"\r\nRDY\r\n", timeout=3)
    await host.expect(b"\r\n+CPIN: READY\r\n")
    assert emulator.stats.boot_dropped_bytes == 3 and emulator.stats.reboots == 1
    assert host.unread() == b""
    # Echo is back on, CMEE is off, QSSLCFG is back to defaults.
    assert await host.command('AT+QSSLCFG=1,3,"timeout"') == (
        b'AT+QSSLCFG=1,3,"timeout"\r\n\r\n+QSSLCFG: 1,3,"timeout",90\r\n\r\nOK\r\n'
    )
    assert await host.command("AT+NOSUCH") == b"AT+NOSUCH\r\n\r\nERROR\r\n"


@pytest_twisted.ensureDeferred
async def test_qrst_reboots_after_ok(emulator: Emulator, host_for: HostFor) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    assert await host.command("AT+QRST=1") == b"\r\nOK\r\n"
    await host.expect(b"Leaving the BROM\r\n")
    await host.expect(b"\r\n+CPIN: READY\r\n")
    assert emulator.stats.reboots == 1 and emulator.echo


@pytest_twisted.ensureDeferred
async def test_hangup_then_return_at_the_same_path(emulator: Emulator, host_for: HostFor) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    returned = emulator.hangup(downtime=0.3)
    await wait_until(lambda: host.hung_up, timeout=2, what="host sees the hang-up")
    assert not os.path.lexists(emulator.device_path)
    await returned
    assert os.readlink(emulator.device_path) == emulator.slave_name
    again = host_for(emulator)
    await ok(again, "AT")  # echo stayed off: the module did not reboot
    assert emulator.stats.hangups == 1


@pytest_twisted.ensureDeferred
async def test_hangup_with_reboot_shows_banner_on_the_new_line(
    emulator: Emulator, host_for: HostFor
) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    await emulator.hangup(downtime=0.1, reboot=True)
    again = host_for(emulator)
    await booted(emulator, again, echo=True)
    assert await again.command("AT") == b"AT\r\n\r\nOK\r\n"


@pytest_twisted.ensureDeferred
async def test_injected_noise_reaches_the_host(emulator: Emulator, host_for: HostFor) -> None:
    host = host_for(emulator)
    await booted(emulator, host)
    emulator.inject_bytes(b"\x00\xfe~garbage")
    emulator.inject_line(b"+QSSLURC: bogus")
    await host.expect(b"\x00\xfe~garbage\r\n+QSSLURC: bogus\r\n")
    await ok(host, "AT")


@pytest_twisted.ensureDeferred
async def test_output_is_paced_at_the_line_rate(
    make_emulator: MakeEmulator, host_for: HostFor
) -> None:
    emulator = make_emulator(baud=9600)  # 960 bytes/s
    host = host_for(emulator)
    await booted(emulator, host)
    start = now()
    emulator.inject_bytes(b"x" * 480)
    await host.expect(b"x" * 480, timeout=3)
    elapsed = now() - start
    assert 0.4 < elapsed < 1.2, elapsed
    assert emulator.line_mode is LineMode.COMMAND


@pytest_twisted.ensureDeferred
async def test_echo_can_end_with_cr_like_real_modules(tmp_path: Path, host_for: HostFor) -> None:
    emulator = Emulator(tmp_path / "tty", profile=TEST_PROFILE, echo_line_end=b"\r")
    emulator.start()
    try:
        host = host_for(emulator)
        await booted(emulator, host, echo=True)
        assert await host.command("AT") == b"AT\r\r\nOK\r\n"
    finally:
        emulator.stop()
    assert not os.path.lexists(tmp_path / "tty")


def test_refuses_to_replace_a_file_that_is_not_a_symlink(tmp_path: Path) -> None:
    precious = tmp_path / "ttyUSB0"
    precious.write_text("not ours")
    with pytest.raises(FileExistsError):
        Emulator(precious).start()
    assert precious.read_text() == "not ours"
