"""Module data reaches a local client at once, and whole and in order when the client is
slow: ``ClientConnection.write`` sends directly while nothing waits in Twisted's buffer
and buffers behind whatever the kernel did not take (issue 14)."""

from __future__ import annotations

import socket
from typing import Any

import pytest_twisted
from twisted.internet import reactor as _reactor

from bridged.shell.listener import ClientConnection, ClientFactory
from tests.support.waiting import wait_until

reactor: Any = _reactor


class Sink:
    """The bridge's side of the connection, recorded."""

    def __init__(self) -> None:
        self.clients: list[ClientConnection] = []
        self.closed: list[str] = []

    def client_connected(self, client: ClientConnection) -> bool:
        self.clients.append(client)
        return True

    def client_data(self, client: ClientConnection, data: bytes) -> None:
        pass

    def client_eof(self, client: ClientConnection) -> None:
        pass

    def client_closed(self, client: ClientConnection, reason: str) -> None:
        self.closed.append(reason)


async def connected(sink: Sink, stall_limit: int) -> tuple[Any, socket.socket]:
    port = reactor.listenTCP(0, ClientFactory(sink, stall_limit), interface="127.0.0.1")
    app = socket.create_connection(("127.0.0.1", port.getHost().port))
    app.setblocking(False)
    await wait_until(lambda: sink.clients, what="the connection accepted")
    return port, app


def read_available(app: socket.socket) -> bytes:
    got = bytearray()
    while True:
        try:
            data = app.recv(1 << 16)
        except BlockingIOError:
            return bytes(got)
        if not data:
            return bytes(got)
        got += data


@pytest_twisted.ensureDeferred
async def test_a_write_reaches_the_client_without_waiting_for_the_reactor() -> None:
    sink = Sink()
    port, app = await connected(sink, stall_limit=1 << 20)
    try:
        sink.clients[0].write(b"hello")
        # No reactor turn since the write: the bytes are already in the client's socket
        # (a buffered write would go out on the next turn; failed before the change).
        app.settimeout(1.0)
        assert app.recv(100) == b"hello"
    finally:
        app.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_slow_client_gets_every_byte_in_order() -> None:
    sink = Sink()
    port, app = await connected(sink, stall_limit=64 << 20)
    try:
        client = sink.clients[0]
        assert client.transport is not None
        client.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        # Far more than the kernel holds for a client that does not read: the first
        # writes go straight to the socket, the rest wait in Twisted's buffer behind them.
        blocks = [bytes([i % 251]) * 7001 for i in range(200)]
        for block in blocks:
            client.write(block)
        assert client.transport._tempDataLen > 0  # type: ignore[attr-defined]
        expected = b"".join(blocks)
        got = bytearray()

        def drained() -> bool:
            got.extend(read_available(app))
            return len(got) >= len(expected)

        await wait_until(drained, timeout=20, what="every byte read")
        assert bytes(got) == expected
        assert client.bytes_out == len(expected)
        assert sink.closed == []
    finally:
        app.close()
        await port.stopListening()
