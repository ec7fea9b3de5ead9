"""An open that gets no +QSSLOPEN result is closed before it is retried (no -6 loop)."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.serialport import SerialPort

from bridged.config import Endpoint, ReconnectPolicy, SocketConfig
from bridged.core.channel import ChannelState
from bridged.shell.at_engine import ATEngine
from bridged.shell.bridge import SocketBridge
from bridged.shell.qssl import QsslClient
from tests.support.scripted_pty import ScriptedPty
from tests.support.waiting import wait_until


@pytest_twisted.ensureDeferred
async def test_an_open_without_result_is_closed_before_the_retry() -> None:
    pty = ScriptedPty()
    engine = ATEngine(reactor, prompt_delay=0.01)
    port = SerialPort(engine, pty.path, reactor, baudrate=115200)
    try:
        qssl = QsslClient(engine, reactor, command_timeout=1.0)
        config = SocketConfig(
            connect_id=2,
            listen=Endpoint("127.0.0.1", 1),
            remote=Endpoint("example.org", 443),
            mode="persistent",
            reconnect=ReconnectPolicy(initial=0.2, max=0.2, jitter=0.0, open_retries=1),
        )
        bridge = SocketBridge(config, reactor, reactor, data_ready=lambda: None)
        bridge.attach(qssl)
        qssl.open_timeouts[2] = 0.3  # the module's "timeout" setting plus margin, shortened
        bridge.module_ready()
        await pty.wait_for(b'AT+QSSLOPEN=1,2,"example.org",443,0\r')
        pty.send(b"\r\nOK\r\n")  # ... and then no +QSSLOPEN: 1,2,<err> in time
        await pty.wait_for(b"AT+QSSLCLOSE=1,2\r", timeout=3)
        before_retry = pty.take()
        assert before_retry.index(b"AT+QSSLCLOSE=1,2\r") > before_retry.index(b"AT+QSSLOPEN")
        pty.send(b"\r\nOK\r\n\r\n+QSSLCLOSE: 1,2,0\r\n")
        await pty.wait_for(b'AT+QSSLOPEN=1,2,"example.org",443,0\r', timeout=3)  # the retry
        pty.send(b"\r\nOK\r\n\r\n+QSSLOPEN: 1,2,0\r\n")
        await wait_until(lambda: bridge.state is ChannelState.OPEN, timeout=3, what="open")
        bridge.cancel_timers()
    finally:
        port.loseConnection()
        pty.close()
