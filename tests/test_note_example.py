"""The vendor note's own example (section 3.1), replayed through bridged's AT engine and
QSSL layer against the emulator and a real TLS server that demands a client certificate.

Mutual authentication on socket 5: sleep off, seclevel 2, CA / client cert / client key
uploaded (byte counts checked), open, a variable-length send ended by Ctrl+Z, the echo
back as a recv URC, close, sleep back on. Run with ``-s`` to see how long it took.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.serialport import SerialPort

from bridged.core.at_codec import CTRL_Z, ESC, DataFormat, DataFormatSetting, Event, SendResult
from bridged.core.qssl_commands import SslSocketSettings
from bridged.emulator import FAST, Emulator
from bridged.shell.at_engine import ATEngine, DataPhase
from bridged.shell.qssl import QsslClient, SocketSubscriber
from tests.support.pki import Pki, make_pki
from tests.support.tls_servers import start_socat_echo_server
from tests.support.waiting import wait_until


async def send_variable_length(engine: ATEngine, connect_id: int, payload: bytes) -> None:
    """The note's variable-length send (``AT+QSSLSEND=1,<id>``, data, Ctrl+Z) and its
    ``+QSSLSEND`` result. bridged itself always sends fixed length (this is not binary-safe:
    Ctrl+Z and Esc end or cancel it), so it lives here, with the note's own flow."""
    assert payload and CTRL_Z not in payload and ESC not in payload
    result: defer.Deferred[int] = defer.Deferred()

    def on_event(event: Event) -> None:
        if isinstance(event, SendResult) and event.connect_id == connect_id and not result.called:
            result.callback(event.err)

    engine.event_observers.append(on_event)
    try:
        await engine.command(
            f"AT+QSSLSEND=1,{connect_id}",
            timeout=5.0,
            data=DataPhase(payload, terminator=CTRL_Z),
            result_timeout=90.0,
        )
        result.addTimeout(90.0, reactor)
        assert await result == 0  # +QSSLSEND: 1,<id>,0
    finally:
        engine.event_observers.remove(on_event)


@pytest_twisted.ensureDeferred
async def test_the_notes_mutual_auth_example_on_socket_5(tmp_path: Path) -> None:
    pki: Pki = make_pki(tmp_path / "pki")
    server = start_socat_echo_server(pki, require_client_cert=True)  # socat verify=1
    # The note's timing: the module enters data mode up to 500 ms after '>', and the host
    # waits 500 ms as the note advises. 115200 baud, as on most gateways.
    emulator = Emulator(
        tmp_path / "ttyBC26", baud=115200, profile=replace(FAST, prompt_max_delay=0.5)
    )
    emulator.start()
    engine = ATEngine(reactor, prompt_delay=0.5)
    port = None
    try:
        await emulator.when_ready()
        port = SerialPort(engine, str(emulator.device_path), reactor, baudrate=115200)
        qssl = QsslClient(engine, reactor)
        received = bytearray()
        closed: list[bool] = []
        qssl.subscribers[5] = SocketSubscriber(received.extend, lambda: closed.append(True))
        started = time.monotonic()

        await qssl.init_module()  # AT, ATE0, AT+CMEE=1, AT+QSCLK=0 (the note's first step)
        await qssl.configure_socket(
            5,
            SslSocketSettings(
                seclevel=2,
                sslversion=4,
                dataformat=DataFormatSetting.both(DataFormat.TEXT),
                timeout=90,
                debug=0,
            ),
        )
        for kind, path in (
            ("cacert", pki.ca_cert),
            ("clientcert", pki.client_cert),
            ("clientkey", pki.client_key),
        ):
            await qssl.upload(5, kind, path.read_bytes())  # raises if the count differs
        assert emulator.stats.cert_uploads == 3

        await qssl.open(5, "127.0.0.1", server.port)
        # The note sends variable length: AT+QSSLSEND=1,5 > data Ctrl+Z.
        await send_variable_length(engine, 5, b"1234567890")
        await wait_until(lambda: len(received) >= 10, timeout=10, what="recv URC")
        assert bytes(received) == b"1234567890"  # +QSSLURC: "recv",1,5,10,"1234567890"

        await qssl.close(5)
        await engine.command("AT+QSCLK=1")
        elapsed = time.monotonic() - started
        print(f"\nthe note's example, end to end at 115200 baud: {elapsed:.2f} s")
        assert not closed
        assert emulator.stats.early_dropped_bytes == 0
    finally:
        if port is not None:
            port.loseConnection()
        emulator.stop()
        server.stop()
