"""The self-test's driver against a scripted module on a real pty (answers the emulator
has no reason to give at these moments)."""

from __future__ import annotations

import os
import select
import threading
import tty
from collections.abc import Iterator

import pytest
import serial

from bridged.tools.selftest.line import Line
from bridged.tools.selftest.socket_commands import open_socket, send

#: (what the host's bytes must contain, what the module then answers)
Script = list[tuple[bytes, bytes]]


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    """A pty whose module side answers ``script`` steps in order."""
    master, slave = os.openpty()
    tty.setraw(slave)
    script: Script = []
    stop = threading.Event()

    def module() -> None:
        heard = b""
        while not stop.is_set():
            if not select.select([master], [], [], 0.05)[0]:
                continue
            heard += os.read(master, 4096)
            if script and script[0][0] in heard:
                heard = b""
                os.write(master, script.pop(0)[1])

    thread = threading.Thread(target=module, daemon=True)
    thread.start()
    yield os.ttyname(slave), script
    stop.set()
    thread.join(2)
    os.close(master)
    os.close(slave)


def test_a_stale_send_result_of_the_last_connection_is_not_taken_for_a_new_send(
    scripted: tuple[str, Script],
) -> None:
    path, script = scripted
    script += [
        # The open: OK, then the old connection's last send result, then the open result.
        (b"AT+QSSLOPEN=1,0", b"\r\nOK\r\n\r\n+QSSLSEND: 1,0,-2\r\n\r\n+QSSLOPEN: 1,0,0\r\n"),
        (b"AT+QSSLSEND=1,0,2\r", b"\r\n> "),
        (b"6869", b"\r\nOK\r\n\r\n+QSSLSEND: 1,0,0\r\n"),
    ]
    port = serial.Serial(path, 115200, timeout=0.02)
    line = Line(port, lambda lines: None)
    try:
        assert open_socket(line, 0, "127.0.0.1", 4433) == 0
        assert send(line, 0, b"hi", hex_format=True, prompt_wait=0.0)
    finally:
        port.close()
