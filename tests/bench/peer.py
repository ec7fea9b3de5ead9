"""The benchmark's peer: the minimal bridge a new user would write (issue 14).

    python tests/bench/peer.py --device PATH --baud N --format hex|text \\
        --prompt-delay S --socket ID:LISTEN_PORT:HOST:PORT [--socket ...]

Threads, one lock, a regex parser, no metrics, no recovery: what bridged is compared
with for CPU per MB, memory and time to ready. It still bridges every byte correctly
(the benchmark checks the bytes it carries as it checks bridged's): one chunk in flight
per socket, fixed-length sends after the prompt wait, recv URCs read by their length.
Run as a script (not ``-m``) so that it imports nothing of the repository.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import socket
import threading
import time

import serial

MAX_SEND = {"hex": 730, "text": 1460}
RECV = re.compile(rb'\+QSSLURC: "recv",1,(\d),(\d+),("?)')
RESULT = re.compile(rb"\+QSSL(OPEN|SEND|CLOSE): 1,(\d),(-?\d+)")
CLOSED = re.compile(rb'\+QSSLURC: "closed",1,(\d)')


class Peer:
    def __init__(self, device: str, baud: int, fmt: str, prompt_delay: float) -> None:
        self.port = serial.Serial(device, baud, timeout=None)
        self.fmt, self.prompt_delay = fmt, prompt_delay
        self.lock = threading.Lock()  # one command on the line at a time
        self.replies: queue.Queue[bytes] = queue.Queue()  # '>', OK, ERROR
        self.results: dict[tuple[bytes, int], queue.Queue[int]] = {}
        self.clients: dict[int, socket.socket] = {}
        threading.Thread(target=self.read_loop, daemon=True).start()

    def result_queue(self, kind: bytes, cid: int) -> queue.Queue[int]:
        return self.results.setdefault((kind, cid), queue.Queue())

    # ---------------------------------------------------------------- the serial line

    def read_loop(self) -> None:
        buf = b""
        while True:
            buf += self.port.read(self.port.in_waiting or 1)
            while True:
                buf = buf.lstrip(b"\r\n")
                if buf.startswith(b">"):
                    self.replies.put(b">")
                    buf = buf[1:].lstrip(b" ")
                    continue
                m = RECV.match(buf)
                if m:
                    cid, n, quoted = int(m[1]), int(m[2]), bool(m[3])
                    size = 2 * n if self.fmt == "hex" else n
                    end = m.end() + size
                    if len(buf) < end + quoted:
                        break  # the rest of this URC is still on the line
                    data = buf[m.end() : end]
                    buf = buf[end + quoted :]
                    self.deliver(cid, bytes.fromhex(data.decode()) if self.fmt == "hex" else data)
                    continue
                line, sep, rest = buf.partition(b"\r\n")
                if not sep:
                    break
                buf = rest
                self.on_line(line)

    def on_line(self, line: bytes) -> None:
        if line in (b"OK", b"ERROR") or line.startswith(b"+CME ERROR"):
            self.replies.put(line)
        elif m := RESULT.match(line):
            self.result_queue(m[1], int(m[2])).put(int(m[3]))
        elif m := CLOSED.match(line):
            client = self.clients.pop(int(m[1]), None)
            if client is not None:
                client.close()

    def deliver(self, cid: int, data: bytes) -> None:
        client = self.clients.get(cid)
        if client is not None:
            try:
                client.sendall(data)
            except OSError:
                self.clients.pop(cid, None)

    def command(self, line: str, payload: bytes | None = None, timeout: float = 10) -> bytes:
        """One command and its final result; with ``payload``, sent after the prompt."""
        with self.lock:
            self.port.write(line.encode() + b"\r")
            reply = self.replies.get(timeout=timeout)
            if payload is not None and reply == b">":
                time.sleep(self.prompt_delay)  # the module's data mode begins within it
                self.port.write(payload)
                reply = self.replies.get(timeout=timeout)
            return reply

    def init(self, cids: list[int]) -> None:
        for _ in range(20):
            try:
                if self.command("AT", timeout=1) == b"OK":
                    break
            except queue.Empty:
                pass
        for line in ("ATE0", "AT+CMEE=1", "AT+QSCLK=0"):
            self.command(line)
        fmt = 1 if self.fmt == "hex" else 0
        for cid in cids:
            for write in ('"seclevel",0', '"sslversion",4', f'"dataformat",{fmt},{fmt}'):
                self.command(f"AT+QSSLCFG=1,{cid},{write}")

    # ---------------------------------------------------------------- the clients

    def serve(self, cid: int, listen_port: int, host: str, port: int) -> None:
        server = socket.create_server(("127.0.0.1", listen_port))
        threading.Thread(target=self.accept_loop, args=(server, cid, host, port)).start()

    def accept_loop(self, server: socket.socket, cid: int, host: str, port: int) -> None:
        while True:
            client, _ = server.accept()
            if cid in self.clients:
                client.close()  # one client a socket
                continue
            self.clients[cid] = client
            threading.Thread(target=self.client_loop, args=(client, cid, host, port)).start()

    def client_loop(self, client: socket.socket, cid: int, host: str, port: int) -> None:
        opened = self.result_queue(b"OPEN", cid)
        sent = self.result_queue(b"SEND", cid)
        try:
            if self.command(f'AT+QSSLOPEN=1,{cid},"{host}",{port},0') != b"OK":
                return
            if opened.get(timeout=100) != 0:
                return
            chunk = MAX_SEND[self.fmt]
            while True:
                data = client.recv(chunk)
                if not data:
                    break
                wire = data.hex().encode() if self.fmt == "hex" else data
                if self.command(f"AT+QSSLSEND=1,{cid},{len(data)}", wire) != b"OK":
                    break
                if sent.get(timeout=100) != 0:
                    break
        except (OSError, queue.Empty):
            pass
        finally:
            if self.clients.pop(cid, None) is not None:
                self.command(f"AT+QSSLCLOSE=1,{cid}")
            client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", required=True)
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--format", choices=["hex", "text"], default="hex")
    parser.add_argument("--prompt-delay", type=float, default=0.5)
    parser.add_argument("--socket", action="append", default=[], help="ID:LISTEN:HOST:PORT")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # nothing to flush
    sockets = [s.split(":") for s in args.socket]
    peer = Peer(args.device, args.baud, args.format, args.prompt_delay)
    peer.init([int(s[0]) for s in sockets])
    for cid, listen, host, port in sockets:
        peer.serve(int(cid), int(listen), host, int(port))
    print("ready", flush=True)


if __name__ == "__main__":
    main()
