"""Running the script: on an opened line (:func:`run_selftest`), or on a serial device
with its lock, transcript and profile file (:func:`run_on_device`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bridged.config.module_profile_file import profile_yaml
from bridged.core.module_profile import OPEN_SITUATIONS
from bridged.tools.selftest.checks import (
    check_echo,
    check_firmware,
    check_malformed,
    check_opens,
    check_ranges,
    check_settings_read,
    check_uploads,
)
from bridged.tools.selftest.data_checks import check_data
from bridged.tools.selftest.findings import Selftest, SelftestOptions
from bridged.tools.selftest.line import Line, PortBusy
from bridged.tools.selftest.socket_commands import close_socket, reset_socket_settings

SCRIPT: tuple[Callable[[Selftest], None], ...] = (
    check_echo,
    check_firmware,
    check_settings_read,
    check_ranges,
    check_malformed,
    check_uploads,
    check_opens,
    check_data,
)


def run_selftest(line: Line, options: SelftestOptions) -> Selftest:
    """The whole script on an opened line. Never raises for what the module does."""
    t = Selftest(line, options)
    line.note("selftest begins")
    line.drain()
    if not line.resync():
        t.add("sync", "the module answers AT with OK", "no OK to AT after 4 tries", False, None)
        return t
    for check in SCRIPT:
        line.note(f"check {check.__name__}")
        check(t)
    for connect_id in t.sockets.opened():
        close_socket(line, connect_id)
        reset_socket_settings(line, connect_id)
    line.note("selftest ends")
    return t


def run_on_device(
    device: str, baud: int, options: SelftestOptions, out: Path
) -> tuple[Selftest, str]:
    """Open the port, run the script, write ``transcript.trace`` and
    ``module-profile.yaml`` under ``out``; the run and the profile text."""
    import serial

    from bridged.shell.serial_access import DeviceBusy, UucpLock
    from bridged.shell.serial_tap import TraceFile

    # The daemon's UUCP lock (and minicom's) keeps them off the port while we test.
    lock = UucpLock(device)
    try:
        lock.acquire()
    except DeviceBusy as exc:
        raise PortBusy(f"{device} is {exc}") from None
    try:
        port = serial.Serial(device, baud, timeout=0.02, exclusive=True)
    except (serial.SerialException, OSError) as exc:
        lock.release()
        raise PortBusy(f"cannot open {device}: {exc}") from None
    transcript = TraceFile(out / "transcript.trace", 10**9, f"bridged selftest on {device}")
    try:
        t = run_selftest(Line(port, transcript.write), options)
    finally:
        port.close()
        transcript.close()
        lock.release()
    comments = [
        f"written by bridged selftest on {time.strftime('%Y-%m-%d %H:%M:%S')} from {device}",
        *(f"{f.key}: {f.observed}" for f in t.findings if f.key == "firmware"),
    ]
    text = profile_yaml(t.profile(), t.base, comments)
    (out / "module-profile.yaml").write_text(text)
    return t, text


assert set(OPEN_SITUATIONS) == {"wrong_ca", "client_cert_missing", "port_closed", "dns_failure"}
