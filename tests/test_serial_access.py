"""Serial access helpers: UUCP lock files, holders from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridged.shell.serial_access import (
    DeviceBusy,
    UucpLock,
    command_line,
    lock_names,
    open_by,
    read_lock_pid,
)

SLEEPER = [sys.executable, "-c", "import time; print('ok', flush=True); time.sleep(60)"]


def test_lock_names_cover_the_link_and_the_device(tmp_path: Path) -> None:
    assert lock_names("/dev/ttyUSB7") == ["LCK..ttyUSB7"]
    assert lock_names("/dev/pts/3") == ["LCK..3"]
    # A name in /dev is what minicom -D would lock (the udev SYMLINK+= case).
    assert lock_names("/dev/bc26-not-here") == ["LCK..bc26-not-here"]
    # A link elsewhere: only the device it points to (its basename need not be unique).
    link = tmp_path / "bc26"
    link.symlink_to("/dev/ttyUSB7")
    assert lock_names(str(link)) == ["LCK..ttyUSB7"]


def test_lock_file_formats(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("      1234\n")
    (tmp_path / "b").write_bytes((4321).to_bytes(4, "little"))
    (tmp_path / "c").write_text("garbage")
    assert [read_lock_pid(tmp_path / n) for n in "abcd"] == [1234, 4321, None, None]


def test_a_live_holder_is_named_and_a_stale_lock_replaced(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(SLEEPER, stdout=subprocess.PIPE, text=True)
    try:
        assert sleeper.stdout is not None and sleeper.stdout.readline() == "ok\n"  # exec'd
        (tmp_path / "LCK..ttyUSB7").write_text(f"{sleeper.pid:10d}\n")
        with pytest.raises(DeviceBusy) as refused:
            UucpLock("/dev/ttyUSB7", tmp_path).acquire()
        assert str(refused.value) == (
            f"in use by pid {sleeper.pid} ({' '.join(SLEEPER)}), "
            f"which holds {tmp_path}/LCK..ttyUSB7"
        )
    finally:
        sleeper.kill()
        sleeper.wait()
    lock = UucpLock("/dev/ttyUSB7", tmp_path)
    lock.acquire()  # the holder died: its lock is stale
    assert (tmp_path / "LCK..ttyUSB7").read_text() == f"{os.getpid():10d}\n"
    lock.release()
    assert not (tmp_path / "LCK..ttyUSB7").exists()


def test_an_unwritable_lock_directory_is_not_fatal(tmp_path: Path) -> None:
    lock = UucpLock("/dev/ttyUSB7", tmp_path / "missing")
    lock.acquire()
    assert lock.taken == []


def test_open_by_names_openers_but_not_the_pty_master() -> None:
    master, slave = os.openpty()
    device = os.ttyname(slave)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os,sys,time; os.open(sys.argv[1], os.O_RDWR | "
            "os.O_NOCTTY); print('ok', flush=True); time.sleep(60)",
            device,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ok\n"
        # This process holds the master (and a slave fd): the pty's other end, not a rival.
        (found,) = open_by(device)
        assert found.pid == holder.pid and found.how == "has it open"
        assert found.command is not None and found.command.startswith(sys.executable)
    finally:
        holder.kill()
        holder.wait()
        os.close(master)
        os.close(slave)
    assert open_by("/dev/pts/none") == []


def test_a_command_line_fits_on_one_log_line(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "cmdline").write_bytes(b"python3\0-c\0import os\nos.open(1)\n\0")
    assert command_line(7, tmp_path) == "python3 -c import os os.open(1)"
    (tmp_path / "7" / "cmdline").write_bytes(b"x" * 500)
    assert command_line(7, tmp_path) == "x" * 197 + "..."
    assert command_line(8, tmp_path) is None
