"""The serial device is bridged's alone; whoever else has it is refused or named.

Real processes throughout: ``bridged emulate`` owns the pty, ``bridged run`` daemons open
it, and plain Python processes play the forgotten minicom / screen.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from bridged.shell.serial_access import LOCK_DIR, lock_names, read_lock_pid
from tests.e2e.test_daemon_process import BRIDGED, Process, wait_for
from tests.support.tls_servers import free_port

# Opens the device like screen would (no lock of any kind) and holds it.
HOLDER = textwrap.dedent(
    """
    import os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
    print("holding", flush=True)
    time.sleep(120)
    """
)

# Tries to open the device and take flock as a cooperating tool would; prints the errno.
TRY_OPEN = textwrap.dedent(
    """
    import fcntl, os, sys
    try:
        fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as e:
        print("open", e.errno)
        sys.exit(0)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        print("flock", e.errno)
        sys.exit(0)
    print("got it")
    """
)


def daemon_config(directory: Path, name: str, device: Path) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(
        f"""
serial: {{device: {device}, baudrate: 921600, reopen_backoff: {{initial: 0.2, max: 0.5}}}}
modem: {{prompt_delay: 0.015, guard_time: 0.002}}
ssl: {{seclevel: 0}}
sockets:
  - {{connect_id: 0, listen: "127.0.0.1:{free_port()}", remote: "127.0.0.1:{free_port()}"}}
metrics: {{enabled: false}}
control: {{socket: {directory}/{name}.sock}}
"""
    )
    return path


def try_open(device: Path, as_nobody: bool) -> str:
    user = 65534 if as_nobody and os.geteuid() == 0 else None
    # The system's interpreter: the venv's may sit where user nobody cannot read.
    python = "/usr/bin/python3" if user is not None else sys.executable
    done = subprocess.run(
        [python, "-c", TRY_OPEN, str(device)],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
        user=user,
        group=user,
    )
    return done.stdout.strip()


def test_second_openers_are_refused_and_named(tmp_path: Path) -> None:
    device = tmp_path / "ttyBC26"
    emulator = Process(
        [*BRIDGED, "emulate", "--device", str(device), "--baud", "921600", "--profile", "fast"],
        tmp_path / "emulator.log",
    )
    holder: subprocess.Popen[str] | None = None
    first = second = None
    try:
        wait_for(device.exists, 10, "emulator pty")
        pty = os.path.realpath(device)

        # A process that has the device open before bridged starts: bridged names it.
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, pty], stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        first = Process(
            [*BRIDGED, "run", "-c", str(daemon_config(tmp_path, "first", device))],
            tmp_path / "first.log",
        )
        named = f"in use by pid {holder.pid} ({sys.executable} -c"
        wait_for(lambda: named in first.text(), 20, "the holder named")
        assert f"cannot open serial device {device}: {named} import os, sys, time fd = " in (
            first.text()
        )  # the holder's command line, on the one log line

        # Once it is gone, bridged takes the device by itself.
        holder.kill()
        holder.wait()
        wait_for(lambda: "module ready" in first.text(), 30, "first daemon ready")

        # A second bridged on the same device is refused, and names the first one.
        second = Process(
            [*BRIDGED, "run", "-c", str(daemon_config(tmp_path, "second", device))],
            tmp_path / "second.log",
        )
        wait_for(lambda: f"in use by pid {first.proc.pid} (" in second.text(), 20, "first named")
        assert "bridged run -c" in second.text().split(f"in use by pid {first.proc.pid}")[1]
        assert "module ready" not in second.text()

        # Other openers: flock (cooperating tools) and TIOCEXCL (any non-root program).
        assert try_open(Path(pty), as_nobody=False) in (
            f"flock {errno.EWOULDBLOCK}",
            f"open {errno.EBUSY}",
        )
        os.chmod(pty, 0o666)  # so that only exclusivity, not permissions, can refuse
        assert try_open(Path(pty), as_nobody=True) == f"open {errno.EBUSY}"

        # minicom & co. see the UUCP lock file naming the daemon.
        if os.access(LOCK_DIR, os.W_OK):
            for name in lock_names(str(device)):
                assert read_lock_pid(LOCK_DIR / name) == first.proc.pid

        second.stop()
        first.stop()
        assert first.proc.returncode == 0, first.text()
        if os.access(LOCK_DIR, os.W_OK):
            assert not any((LOCK_DIR / n).exists() for n in lock_names(str(device)))
        # Closed: the device is free again, for root and for everyone else.
        assert try_open(Path(pty), as_nobody=True) == "got it"
    finally:
        for p in (second, first):
            if p is not None:
                p.stop()
        if holder is not None and holder.poll() is None:
            holder.kill()
        emulator.stop()
