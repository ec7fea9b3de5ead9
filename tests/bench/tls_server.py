"""The benchmark's TLS servers: one process, one port per socket, stdlib only.

    python -m tests.bench.tls_server --cert C --key K [--cafile CA] \\
        --listen PORT:sink --listen PORT:messages --listen PORT:source:N ...

Modes, per port (each accepted connection is served by its own thread):

``sink``
    Reads everything; records each read's (time, bytes) and checks the bytes follow
    :func:`pattern` for the connection's stream.
``messages``
    Reads :data:`MESSAGE_SIZE`-byte messages made by :func:`message` and records, per
    message, the latency from the client's write (a ``time.monotonic_ns`` stamp in the
    message: the clock is system-wide) to the read here.
``source:N``
    Sends N bytes of :func:`pattern` as fast as TCP lets it, in pieces that are whole
    multiples of the largest recv URC (so the module sends full URCs), then reads until
    the peer closes.
``source-on-go:N``
    The same, once the client has sent the byte :data:`GO` (so that every socket can be
    open before any of them floods the line).

Control on stdin, one word a line: ``report`` prints one JSON line with every
connection's record (open or closed); ``quit`` exits. ``{"ready": true}`` is printed
once every port listens. The cipher suites are the module's (RSA key exchange only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import ssl
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

from tests.support.tls_servers import MODULE_COMPATIBLE_CIPHERS

MESSAGE_SIZE = 100
_PERIOD = 251  # prime, so the pattern does not line up with chunk or URC sizes
_PATTERN = bytes((i * 131 + 17) % 256 for i in range(_PERIOD)) * 64
GO = b"g"  # what a source-on-go:N port waits for before it sends
SOURCE_PIECE = 13000  # 20 hex URCs of 650 bytes, 10 text URCs of 1300


def pattern(offset: int, size: int) -> bytes:
    """Bytes ``offset .. offset+size`` of the endless test stream."""
    out = bytearray()
    while len(out) < size:
        start = (offset + len(out)) % _PERIOD
        take = min(size - len(out), len(_PATTERN) - start)
        out += _PATTERN[start : start + take]
    return bytes(out)


def message(connect_id: int, seq: int) -> bytes:
    """A 100-byte message stamped with the time of its making (monotonic ns)."""
    head = b"M%d %010d %020d " % (connect_id, seq, time.monotonic_ns())
    return head + b"." * (MESSAGE_SIZE - len(head) - 1) + b"\n"


def parse_message(data: bytes) -> tuple[int, int, int]:
    """(connect_id, seq, stamp_ns) of a message made by :func:`message`."""
    connect_id = int(data[1:2])
    seq = int(data[3:13])
    stamp = int(data[14:34])
    return connect_id, seq, stamp


@dataclass
class Record:
    port: int
    mode: str
    accepted: float
    bytes: int = 0
    closed: float | None = None
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, n)
    latencies_ns: list[int] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    sent: int = 0
    sent_done: float | None = None
    errors: list[str] = field(default_factory=list)


class Server:
    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.records: list[Record] = []
        self.lock = threading.Lock()

    def listen(self, port: int, mode: str) -> int:
        """Listen on ``port``, 0 for one the kernel chooses (a port chosen earlier and bound
        now may have been taken meanwhile); the port bound."""
        listener = socket.create_server(("127.0.0.1", port), backlog=16)
        bound: int = listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(listener, bound, mode), daemon=True).start()
        return bound

    def _accept(self, listener: socket.socket, port: int, mode: str) -> None:
        while True:
            raw, _ = listener.accept()
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                conn = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as e:
                print(f"handshake failed on {port}: {e}", file=sys.stderr)
                raw.close()
                continue
            record = Record(port, mode, time.monotonic())
            with self.lock:
                self.records.append(record)
            threading.Thread(target=self._serve, args=(conn, record), daemon=True).start()

    def _serve(self, conn: ssl.SSLSocket, record: Record) -> None:
        try:
            if record.mode.startswith(("source:", "source-on-go:")):
                if record.mode.startswith("source-on-go:") and conn.recv(1) != GO:
                    raise ValueError("the client did not say go")
                self._source(conn, record, int(record.mode.split(":", 1)[1]))
            else:
                self._read(conn, record)
        except (OSError, ValueError) as e:
            record.errors.append(f"{type(e).__name__}: {e}")
        finally:
            record.closed = time.monotonic()
            with contextlib.suppress(OSError):
                conn.close()

    def _read(self, conn: ssl.SSLSocket, record: Record) -> None:
        pending = b""
        while True:
            data = conn.recv(65536)
            now = time.monotonic()
            now_ns = time.monotonic_ns()
            if not data:
                break
            if record.mode == "sink":
                if data != pattern(record.bytes, len(data)) and len(record.errors) < 5:
                    record.errors.append(f"bytes {record.bytes}..: not the expected stream")
                record.arrivals.append((now, len(data)))
                record.bytes += len(data)
                continue
            record.arrivals.append((now, len(data)))
            record.bytes += len(data)
            pending += data
            while len(pending) >= MESSAGE_SIZE:
                one, pending = pending[:MESSAGE_SIZE], pending[MESSAGE_SIZE:]
                try:
                    _, seq, stamp = parse_message(one)
                except ValueError:
                    record.errors.append(f"bad message {one[:40]!r}")
                    continue
                record.seqs.append(seq)
                record.latencies_ns.append(now_ns - stamp)

    def _source(self, conn: ssl.SSLSocket, record: Record, total: int) -> None:
        while record.sent < total:
            piece = pattern(record.sent, min(SOURCE_PIECE, total - record.sent))
            conn.sendall(piece)
            record.sent += len(piece)
        record.sent_done = time.monotonic()
        while conn.recv(65536):
            pass

    def report(self) -> str:
        with self.lock:
            return json.dumps({"records": [asdict(r) for r in self.records]})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--cafile")
    parser.add_argument("--listen", action="append", default=[], help="PORT:MODE")
    args = parser.parse_args()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers(MODULE_COMPATIBLE_CIPHERS)
    context.load_cert_chain(args.cert, args.key)
    if args.cafile:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(args.cafile)
    server = Server(context)
    ports = []
    for spec in args.listen:
        port, mode = spec.split(":", 1)
        ports.append(server.listen(int(port), mode))
    print(json.dumps({"ready": True, "ports": ports}), flush=True)
    for line in sys.stdin:
        word = line.strip()
        if word == "report":
            print(server.report(), flush=True)
        elif word == "quit":
            break


if __name__ == "__main__":
    main()
