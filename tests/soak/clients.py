"""Soak clients: one per bridged socket, streaming random binary through a TLS echo server
and checking every byte that comes back.

Each :class:`SocketClient` makes one TCP connection after another to its bridged listener.
On each connection it writes random bytes (at most ``window`` of them unechoed at a time)
and checks what comes back against what it wrote: for an echo server the received
stream must be a prefix of the sent stream, so the first byte that differs is a
violation, classified as

- ``duplicated``: the bytes at that point are bytes already echoed earlier;
- ``lost``: they are bytes written later (something in between vanished);
- ``excess``: more came back than was written;
- ``corrupted``: anything else.

A connection ends one of three ways, each counted:

- ``completed``: the client stopped writing, got every byte back, and closed;
- ``abandoned``: the client closed with bytes still unechoed (on-demand sockets only: on
  a persistent socket their echo would go to the next client, as designed);
- ``disconnected``: the bridge closed it (allowed by invariant 1: the bytes still
  unechoed are reported, never silently dropped on an open connection).

A connection that stays open with unechoed bytes and no echo progress for
``stall_limit`` seconds is a ``stall`` violation.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

HISTORY_BYTES = 256 * 1024  # echoed bytes kept to recognise a duplicate
PROBE_BYTES = 8192


@dataclass
class Violation:
    connect_id: int
    connection: int
    kind: str  # duplicated | lost | excess | corrupted | stall
    at: float
    detail: str


@dataclass
class ClientTotals:
    """What one socket's clients did, over all their connections."""

    connections: Counter[str] = field(default_factory=Counter)  # by outcome
    bytes_sent: int = 0
    bytes_echoed: int = 0
    unechoed_at_disconnect: int = 0  # written, not echoed, connection closed by the bridge
    unechoed_abandoned: int = 0  # written, not echoed, the client itself left early
    connect_failures: int = 0
    half_closes: int = 0  # connections drained after shutting down the write side
    longest_wait: float = 0.0  # longest time with unechoed bytes and no echo progress


class _Connection(protocol.Protocol):
    """One TCP connection of a :class:`SocketClient`; all decisions are the client's."""

    def __init__(self, client: SocketClient) -> None:
        self.client = client

    def connectionMade(self) -> None:
        self.client._connected(self)

    def dataReceived(self, data: bytes) -> None:
        self.client._received(self, data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.client._lost(self, reason)


class SocketClient:
    """Streams random binary to one bridged socket, connection after connection."""

    def __init__(
        self,
        reactor: Any,
        connect_id: int,
        port: int,
        *,
        persistent: bool,
        rng: random.Random,
        stall_limit: float,
        on_progress: Callable[[int, float], None],
        on_violation: Callable[[Violation], None],
    ) -> None:
        self.reactor = reactor
        self.connect_id = connect_id
        self.port = port
        self.persistent = persistent
        self.rng = rng
        self.stall_limit = stall_limit
        self.on_progress = on_progress
        self.on_violation = on_violation
        self.totals = ClientTotals()
        self.running = False
        self.connection_count = 0
        self.last_echo = 0.0  # reactor time of the last echo progress on any connection
        # The current connection.
        self._proto: _Connection | None = None
        self._pending = bytearray()  # written, not yet echoed, in order
        self._history = bytearray()  # the last echoed bytes, to recognise duplicates
        self._last_progress = 0.0
        self._window = 0
        self._ending: str | None = None  # None | "drain" | "abandon" | "violation"
        self._probe = False
        self._probe_done: Callable[[bool], None] | None = None
        self._calls: list[IDelayedCall] = []
        # Persistent sockets only: bytes a connection left unechoed when the client itself
        # cut it (after a violation). The bridge still sends them; their echo goes to the
        # next client, as designed, so the next connection expects them first.
        self._carry = b""

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        self.running = True
        self._later(self.rng.uniform(0, 0.5), self._connect)

    def stop(self) -> None:
        """No new connections; the current one is drained and closed."""
        self.running = False
        if self._proto is not None and self._ending is None:
            self._end("drain")

    @property
    def connected(self) -> bool:
        return self._proto is not None

    def probe(self, done: Callable[[bool], None]) -> None:
        """One connection that writes ``PROBE_BYTES`` and must get all of them back."""
        self._probe = True
        self._probe_done = done
        self._connect()

    def check_stall(self, now: float) -> None:
        if self._proto is None or not self._pending:
            return
        waited = now - self._last_progress
        self.totals.longest_wait = max(self.totals.longest_wait, waited)
        if waited > self.stall_limit:
            self._violate(
                "stall",
                f"{len(self._pending)} byte(s) unechoed for {waited:.1f} s on an open connection",
            )

    # ------------------------------------------------------------------ connections

    def _connect(self) -> None:
        if not (self.running or self._probe) or self._proto is not None:
            return
        creator = protocol.ClientCreator(self.reactor, _Connection, self)
        d = creator.connectTCP("127.0.0.1", self.port, timeout=5)
        d.addErrback(self._connect_failed)

    def _connect_failed(self, failure: Failure) -> None:
        self.totals.connect_failures += 1
        if self._probe:
            self._finish_probe(False)
        else:
            self._later(0.5, self._connect)

    def _finish_probe(self, ok: bool) -> None:
        done, self._probe_done, self._probe = self._probe_done, None, False
        if done is not None:
            done(ok)

    def _connected(self, proto: _Connection) -> None:
        self._proto = proto
        self.connection_count += 1
        self._pending[:] = self._carry
        self._carry = b""
        self._history.clear()
        self._ending = None
        self._last_progress = self.reactor.seconds()
        if self._probe:
            self._write(self.rng.randbytes(PROBE_BYTES))
            self._end("drain")
            return
        if self.rng.random() < 0.1:
            # A connect/close burst (a readiness probe, a reconnect loop): connect and go
            # at once, then the real connection follows immediately.
            self._ending = "blip"
            self._close()
            return
        self._window = self.rng.choice([512, 4096, 16384, 65536])
        lifetime = self.rng.uniform(3.0, 30.0)
        self._later(lifetime, self._lifetime_over, proto)
        self._pump(proto)

    def _lifetime_over(self, proto: _Connection) -> None:
        if proto is not self._proto or self._ending is not None:
            return
        abandon = not self.persistent and self.rng.random() < 0.3
        self._end("abandon" if abandon else "drain")

    def _pump(self, proto: _Connection) -> None:
        """Write the next random chunk if the window allows, then again a bit later."""
        if proto is not self._proto or self._ending is not None:
            return
        room = self._window - len(self._pending)
        if room > 0:
            size = min(room, self._chunk_size())
            self._write(self.rng.randbytes(size))
        self._later(self.rng.choice([0.0, 0.001, 0.01, 0.05]), self._pump, proto)

    def _chunk_size(self) -> int:
        kind = self.rng.random()
        if kind < 0.3:
            return self.rng.randint(1, 16)  # small writes: the bridge must coalesce them
        if kind < 0.8:
            return self.rng.randint(17, 1500)
        return self.rng.randint(1501, 8000)

    def _write(self, data: bytes) -> None:
        assert self._proto is not None and self._proto.transport is not None
        if not self._pending:
            self._last_progress = self.reactor.seconds()  # the wait starts now
        self._pending += data
        self.totals.bytes_sent += len(data)
        self._proto.transport.write(data)

    def _end(self, how: str) -> None:
        self._ending = how
        if how == "abandon" or (how == "drain" and not self._pending):
            self._close()
        elif how == "drain" and not self._probe and self.rng.random() < 0.3:
            # Half-close, like `nc -N`: nothing more to send, the echo must still come.
            assert self._proto is not None and self._proto.transport is not None
            self.totals.half_closes += 1
            self._proto.transport.loseWriteConnection()  # type: ignore[attr-defined]

    def _close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.loseConnection()

    # ------------------------------------------------------------------ checking

    def _received(self, proto: _Connection, data: bytes) -> None:
        if proto is not self._proto or self._ending == "violation":
            return
        pending = self._pending
        n = len(data)
        if n > len(pending) or pending[:n] != data:
            self._violate(*self._classify(data))
            return
        del pending[:n]
        self._history += data
        if len(self._history) > HISTORY_BYTES:
            del self._history[: len(self._history) - HISTORY_BYTES]
        now = self.reactor.seconds()
        self._last_progress = now
        self.last_echo = now
        self.totals.bytes_echoed += n
        self.on_progress(self.connect_id, now)
        if self._ending == "drain" and not pending:
            self._close()

    def _classify(self, data: bytes) -> tuple[str, str]:
        pending = self._pending
        same = 0
        while same < min(len(data), len(pending)) and data[same] == pending[same]:
            same += 1
        where = f"after {self.totals.bytes_echoed + same} echoed byte(s) of this socket"
        if same == len(pending):
            return "excess", f"{len(data) - same} byte(s) more than were written, {where}"
        sample = data[same : same + 32]
        if len(sample) >= 8 and sample in self._history + pending[:same]:
            return "duplicated", f"bytes echoed earlier came again, {where}"
        if len(sample) >= 8 and sample in pending[same + 1 :]:
            skipped = pending.find(sample, same + 1) - same
            return "lost", f"{skipped} byte(s) missing from the echo, {where}"
        return "corrupted", f"{sample[:16].hex()} where {pending[same : same + 16].hex()}, {where}"

    def _violate(self, kind: str, detail: str) -> None:
        self.on_violation(
            Violation(self.connect_id, self.connection_count, kind, self.reactor.seconds(), detail)
        )
        self._ending = "violation"
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.abortConnection()  # type: ignore[attr-defined]

    def _lost(self, proto: _Connection, reason: Failure) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        unechoed = len(self._pending)
        ending = self._ending
        if ending == "violation":
            outcome = "violation"
        elif ending == "drain" and not unechoed:
            outcome = "completed"
        elif ending == "blip":
            outcome = "blip"
        elif ending == "abandon":
            outcome = "abandoned"
            self.totals.unechoed_abandoned += unechoed
        else:
            outcome = "disconnected"  # by the bridge
            self.totals.unechoed_at_disconnect += unechoed
        self.totals.connections[outcome] += 1
        if self.persistent and outcome == "violation":
            self._carry = bytes(self._pending)
        self._pending.clear()
        if self._probe:
            self._finish_probe(outcome == "completed")
            return
        if self.running:
            self._later(0.0 if ending == "blip" else self.rng.uniform(0.05, 1.0), self._connect)

    # ------------------------------------------------------------------ timers

    def _later(self, delay: float, fn: Callable[..., None], *args: object) -> None:
        self._calls = [c for c in self._calls if c.active()]
        self._calls.append(self.reactor.callLater(delay, fn, *args))

    def cancel_timers(self) -> None:
        for call in self._calls:
            if call.active():
                call.cancel()
        self._calls.clear()
