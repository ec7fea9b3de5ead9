"""What the benchmark's local applications do: blocking sockets in threads."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from dataclasses import dataclass, field

from tests.bench.tls_server import message, pattern


@dataclass
class Pusher:
    """Writes ``total`` bytes of the test stream as fast as the bridge takes them."""

    sock: socket.socket
    total: int
    close_when_done: bool = True
    sent: int = 0
    done: float | None = None
    error: str | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Pusher:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            while self.sent < self.total:
                piece = pattern(self.sent, min(16384, self.total - self.sent))
                self.sock.sendall(piece)
                self.sent += len(piece)
            self.done = time.monotonic()
            if self.close_when_done:
                self.sock.close()
        except OSError as e:
            self.error = str(e)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


@dataclass
class Reader:
    """Reads ``total`` bytes, timing each read and checking they are the test stream."""

    sock: socket.socket
    total: int
    received: int = 0
    corrupt: int = 0  # bytes that were not what the server sent
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    error: str | None = None
    eof: bool = False
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Reader:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            while self.received < self.total:
                data = self.sock.recv(65536)
                now = time.monotonic()
                if not data:
                    self.eof = True
                    break
                if data != pattern(self.received, len(data)):
                    expected = pattern(self.received, len(data))
                    self.corrupt += sum(a != b for a, b in zip(data, expected, strict=True))
                self.arrivals.append((now, len(data)))
                self.received += len(data)
        except OSError as e:
            self.error = str(e)
        finally:
            with contextlib.suppress(OSError):
                self.sock.close()


@dataclass
class MessageSender:
    """100-byte messages at Poisson times, ``rate`` a second, for ``duration`` seconds."""

    sock: socket.socket
    connect_id: int
    rate: float
    duration: float
    seed: int
    sent: int = 0
    error: str | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> MessageSender:
        self.thread.start()
        return self

    def _run(self) -> None:
        rng = random.Random(self.seed)
        start = time.monotonic()
        due = start + rng.expovariate(self.rate)
        try:
            while due < start + self.duration:
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                self.sock.sendall(message(self.connect_id, self.sent))
                self.sent += 1
                due += rng.expovariate(self.rate)
        except OSError as e:
            self.error = str(e)
