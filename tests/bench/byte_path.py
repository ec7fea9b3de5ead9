"""``python -m tests.bench.byte_path``: the calls a client's bytes go through to the serial
line, and a recv URC's bytes to the client, recorded from the real code.

The real listener connection, socket bridge, send pump, QSSL layer and AT engine, on
in-memory transports and a virtual clock (no reactor, no emulator), one socket open.
Every function of bridged entered is recorded with ``sys.setprofile`` and printed as a
call tree, one leg at a time:

1. a client's 100 bytes arrive (``ClientConnection.dataReceived``): they are queued, the
   pump starts a send and ``AT+QSSLSEND`` is written;
2. the module's ``>`` arrives: the engine waits the prompt delay;
3. the prompt delay ends: the payload is written to the serial transport;
4. a recv URC arrives (``ATEngine.dataReceived``) and its bytes are written to the client.

The number printed per leg is every bridged function entered (helpers included); the
path itself (docs/performance.md, "The path of a byte") is the chain from the leg's entry
to the transport's ``write``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from twisted.internet import task
from twisted.internet.testing import StringTransport

import bridged
from bridged.config import Endpoint, SocketConfig
from bridged.shell.at_engine import ATEngine
from bridged.shell.bridge import SocketBridge
from bridged.shell.listener import ClientConnection
from bridged.shell.qssl import QsslClient
from bridged.shell.send_pump import SendPump

PACKAGE = Path(bridged.__file__).resolve().parent


class Recorder:
    """The bridged frames entered while recording, with their depth."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []
        self._depth = 0

    def _profile(self, frame: FrameType, event: str, _arg: Any) -> None:
        if event == "call":
            self._depth += 1
            code = frame.f_code
            path = Path(code.co_filename)
            if path.is_relative_to(PACKAGE) or (code.co_name == "write" and "testing" in str(path)):
                where = (
                    path.relative_to(PACKAGE.parent)
                    if path.is_relative_to(PACKAGE)
                    else "transport"
                )
                self.calls.append((self._depth, f"{where}: {code.co_qualname}"))
        elif event == "return":
            self._depth -= 1

    def record(self, action: Callable[[], object]) -> list[tuple[int, str]]:
        self.calls, self._depth = [], 0
        sys.setprofile(self._profile)
        try:
            action()
        finally:
            sys.setprofile(None)
        return self.calls


def build() -> tuple[task.Clock, ATEngine, StringTransport, ClientConnection, StringTransport]:
    clock = task.Clock()
    engine = ATEngine(clock, prompt_delay=0.5, guard_time=0.0)
    serial = StringTransport()
    engine.makeConnection(serial)
    qssl = QsslClient(engine, clock)
    config = SocketConfig(
        connect_id=0, listen=Endpoint("127.0.0.1", 1), remote=Endpoint("example.org", 443)
    )
    pump = SendPump([])
    bridge = SocketBridge(config, reactor=None, clock=clock, data_ready=pump.kick)  # type: ignore[arg-type]
    pump.set_bridges([bridge])
    pump.qssl = qssl
    bridge.attach(qssl)
    client = ClientConnection(bridge, stall_limit=1 << 16, clock=clock)
    client_transport = StringTransport()
    client.makeConnection(client_transport)
    bridge.module_ready()  # persistent: opens at once
    serial.clear()
    engine.dataReceived(b"\r\nOK\r\n\r\n+QSSLOPEN: 1,0,0\r\n")
    assert bridge.channel.sendable() == 0 and bridge.state.name == "OPEN", bridge.state
    return clock, engine, serial, client, client_transport


def main() -> int:
    clock, engine, serial, client, client_transport = build()
    recorder = Recorder()
    payload = b"x" * 100
    recv = b'\r\n+QSSLURC: "recv",1,0,4,"74657374"\r\n'
    legs: list[tuple[str, Callable[[], object]]] = [
        ("1. client bytes arrive -> AT+QSSLSEND written", lambda: client.dataReceived(payload)),
        ("2. '>' arrives -> prompt delay armed", lambda: engine.dataReceived(b"\r\n> ")),
        ("3. prompt delay over -> payload written", lambda: clock.advance(0.5)),
        ("4. recv URC -> bytes written to the client", lambda: engine.dataReceived(recv)),
    ]
    for title, action in legs:
        calls = recorder.record(action)
        print(f"{title}: {len(calls)} bridged calls")
        for depth, name in calls:
            print(f"  {'  ' * (depth - 1)}{name}")
        print()
    written = serial.value()
    assert written.startswith(b"AT+QSSLSEND=1,0,100\r"), written
    assert written.endswith((payload, payload.hex().encode())), written  # text or hex
    assert client_transport.value() == b"test"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
