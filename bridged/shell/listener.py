"""The local TCP side: one listener per SSL socket, one client at a time.

Thin Twisted glue. A client's bytes go to its :class:`ClientSink` (the socket bridge);
the bridge writes back, pauses and resumes reading, and closes the client.

Flow control both ways:
- client → module: the bridge calls :meth:`ClientConnection.pause_reading` when the
  socket's send queue passes its bound, so a fast client cannot fill memory;
- module → client: the transport tells us (as an ``IPushProducer``'s consumer) when the
  client stops reading; bytes written while it is stalled are counted, and a client that
  stays stalled past the receive bound is disconnected, because the module cannot be
  paused and memory must stay bounded.

Half-close: a client that shuts down its write side (``shutdown(SHUT_WR)``, ``nc -N``)
is reported by ``client_eof`` and keeps receiving. A client we close that does not read
what is still pending is aborted after ``CLOSE_ABORT_AFTER`` seconds, so closed clients
cannot linger.

Delivery: module data goes straight to the client's socket when nothing waits in the
transport's buffer (:func:`~bridged.shell.write_now.write_now`), not on the next loop turn.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from bridged.shell.write_now import write_now

log = Logger(namespace="bridged.listener")

CLOSE_ABORT_AFTER = 30.0  # seconds a closed client may take to read what is pending


class ClientSink(TypingProtocol):
    """What a connection reports to (the socket bridge)."""

    def client_connected(self, client: ClientConnection) -> bool:
        """Return False to refuse the client."""

    def client_data(self, client: ClientConnection, data: bytes) -> None: ...

    def client_eof(self, client: ClientConnection) -> None:
        """The client shut down its write side; it still reads."""

    def client_closed(self, client: ClientConnection, reason: str) -> None: ...


@implementer(IPushProducer, IHalfCloseableProtocol)
class ClientConnection(Protocol):
    """One local application's TCP connection."""

    def __init__(
        self,
        sink: ClientSink,
        stall_limit: int,
        clock: IReactorTime | None = None,
        close_abort_after: float = CLOSE_ABORT_AFTER,
    ) -> None:
        self.sink = sink
        self.stall_limit = stall_limit
        self.clock = clock
        self.close_abort_after = close_abort_after
        self._abort_call: IDelayedCall | None = None
        self.accepted = False
        self.closing = False
        self.reading_paused = False
        self._client_stalled = False  # the client is not reading what we write
        self._written_while_stalled = 0
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def peer(self) -> str:
        if self.transport is None:
            return "?"
        address: IAddress = self.transport.getPeer()
        host = getattr(address, "host", "?")
        port = getattr(address, "port", "?")
        return f"{host}:{port}"

    # -- Protocol

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]
        self.accepted = self.sink.client_connected(self)
        if not self.accepted:
            self.closing = True
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if not self.accepted or self.closing:
            return
        self.bytes_in += len(data)
        self.sink.client_data(self, data)

    def readConnectionLost(self) -> None:
        """The client sent FIN: a half-close (it still reads) or a full close."""
        if not self.accepted or self.closing or self.transport is None:
            return
        if peer_socket_released(self.transport):
            # Its process closed the socket: it reads nothing more. It is gone now, so
            # its SSL connection closes at once instead of waiting out the half-close
            # bound.
            self.accepted = False
            self.closing = True
            self.sink.client_closed(self, "closed by the client")
            self.transport.loseConnection()
            return
        self.sink.client_eof(self)

    def writeConnectionLost(self) -> None:
        """Our write side is shut: happens only as part of closing."""

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None
        if self.accepted:
            self.accepted = False
            why = reason.getErrorMessage() if reason is not None else "closed"
            self.sink.client_closed(self, why)

    # -- called by the bridge

    def write(self, data: bytes) -> None:
        """Deliver module data; disconnect a client that stopped reading for too long."""
        if self.closing or self.transport is None:
            return
        self.bytes_out += len(data)
        write_now(self.transport, data)
        if self._client_stalled:
            self._written_while_stalled += len(data)
            if self._written_while_stalled > self.stall_limit:
                log.warn(
                    "client {peer} stopped reading; {n} bytes pending: disconnecting it",
                    peer=self.peer,
                    n=self._written_while_stalled,
                )
                self.abort()

    def close(self) -> None:
        """Close after everything written so far is flushed: the client sees EOF."""
        if self.closing or self.transport is None:
            return
        self.closing = True
        if self.reading_paused:
            self.transport.resumeProducing()  # type: ignore[attr-defined]
        self.transport.loseConnection()
        if self.clock is not None and self.close_abort_after > 0:
            # A client that never reads would keep the connection (and its unsent bytes)
            # for ever: give it a bounded time.
            self._abort_call = self.clock.callLater(self.close_abort_after, self._close_too_slow)

    def _close_too_slow(self) -> None:
        self._abort_call = None
        log.warn(
            "client {peer} did not read its last bytes within {t:g} s: aborting it",
            peer=self.peer,
            t=self.close_abort_after,
        )
        self.abort()

    def abort(self) -> None:
        if self.transport is None:
            return
        self.closing = True
        self.transport.abortConnection()  # type: ignore[attr-defined]

    def reset_while_paused(self) -> bool:
        """Gone without our noticing: its reading is paused (flow control), so the RST
        it sent has not been read yet."""
        return (
            self.reading_paused
            and not self.closing
            and self.transport is not None
            and peer_reset(self.transport)
        )

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closing:
            self.reading_paused = True
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closing:
            self.reading_paused = False
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    # -- IPushProducer: the transport's word on the client's reading

    def pauseProducing(self) -> None:
        self._client_stalled = True

    def resumeProducing(self) -> None:
        self._client_stalled = False
        self._written_while_stalled = 0

    def stopProducing(self) -> None:
        self._client_stalled = False


_TCP_CLOSE = 7  # Linux tcp_states.h: what a connection is after an RST came in


def peer_reset(transport: object) -> bool:
    """True if the client reset its connection (RST: it aborted, its process died).

    A transport whose reading is paused does not see that until it reads again; the
    kernel knows at once (Linux ``TCP_INFO``: the state is ``TCP_CLOSE``). False whenever
    it cannot be told."""
    get_handle = getattr(transport, "getHandle", None)
    tcp_info = getattr(socket, "TCP_INFO", None)
    if get_handle is None or tcp_info is None:
        return False
    try:
        info = get_handle().getsockopt(socket.IPPROTO_TCP, tcp_info, 1)
    except (OSError, AttributeError, TypeError):
        return False
    return bool(info) and info[0] == _TCP_CLOSE


def peer_socket_released(transport: object) -> bool:
    """True if a loopback client's socket is no longer held by any process (it called
    close(), not shutdown(SHUT_WR)). On the wire both are a FIN; on Linux the kernel's
    socket table tells them apart for a local peer: an orphaned socket has inode 0.
    False whenever it cannot be told (another host, no /proc): a half-close is assumed."""
    get_host, get_peer = getattr(transport, "getHost", None), getattr(transport, "getPeer", None)
    if get_host is None or get_peer is None:
        return False
    ours, theirs = get_host(), get_peer()
    local = (getattr(theirs, "host", None), getattr(theirs, "port", None))
    remote = (getattr(ours, "host", None), getattr(ours, "port", None))
    if not isinstance(local[0], str) or not ipaddress.ip_address(local[0]).is_loopback:
        return False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows, None)
                for row in rows:
                    fields = row.split()
                    if len(fields) < 10:
                        continue
                    if _proc_address(fields[1]) == local and _proc_address(fields[2]) == remote:
                        return fields[9] == "0"
        except (OSError, ValueError):
            return False
    return False


def _proc_address(text: str) -> tuple[str, int]:
    """``0100007F:1F90`` (little-endian words, as /proc/net/tcp writes them) -> address."""
    hex_ip, hex_port = text.split(":")
    raw = bytes.fromhex(hex_ip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped), int(hex_port, 16)
    return str(address), int(hex_port, 16)


class ClientFactory(Factory):
    """Builds a :class:`ClientConnection` per accepted TCP connection."""

    noisy = False  # our own log lines say when a client comes and goes

    def __init__(
        self,
        sink: ClientSink,
        stall_limit: int,
        clock: IReactorTime | None = None,
        close_abort_after: float = CLOSE_ABORT_AFTER,
    ) -> None:
        self.sink = sink
        self.stall_limit = stall_limit
        self.clock = clock
        self.close_abort_after = close_abort_after

    def buildProtocol(self, addr: IAddress | None) -> ClientConnection:
        return ClientConnection(self.sink, self.stall_limit, self.clock, self.close_abort_after)
