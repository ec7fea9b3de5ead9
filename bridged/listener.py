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
"""

from __future__ import annotations

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
        """The client half-closed: it sends no more, but still reads."""
        if self.accepted and not self.closing:
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
        self.transport.write(data)
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
