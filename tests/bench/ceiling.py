"""What an ideal host achieves on the serial line (design notes, "The serial line's
ceiling"), computed for the exact bytes bridged and the module exchange.

One fixed-length send of ``n`` payload bytes on socket ``<id>`` costs::

    host -> module:  "AT+QSSLSEND=1,<id>,<n>\\r" + n*k        (k = 2 hex, 1 text)
    module -> host:  "\\r\\n> " + "\\r\\nOK\\r\\n" + "\\r\\n+QSSLSEND: 1,<id>,0\\r\\n"
    wait:            the prompt wait after '>'
    t(n) = (all those bytes) / r + prompt_wait + latency      r = baud / 10 (8N1)

``latency`` is whatever the module adds on the critical path; the benchmark's emulator
adds none (it answers at once and enters data mode before the host's prompt wait ends).
Counting both directions' bytes in series is the notes' formula; since the line is full
duplex, the +QSSLSEND line overlaps the next command, so an ideal host could be faster
by about 24 bytes of line time a send (0.3 % at 115200 baud, 0.05 % at 921600).
"""

from __future__ import annotations

from dataclasses import dataclass

PROMPT = b"\r\n> "
OK = b"\r\nOK\r\n"
CTRL_Z = 1

MAX_SEND = {"hex": 730, "text": 1460}
MAX_RECV = {"hex": 650, "text": 1300}
DIGITS = {"hex": 2, "text": 1}


def line_rate(baud: int) -> float:
    """Bytes a second on an 8N1 line (a start bit, 8 data bits, a stop bit)."""
    return baud / 10.0


@dataclass(frozen=True)
class Line:
    baud: int
    dataformat: str  # "hex" | "text"
    prompt_wait: float  # seconds the host waits after '>' (modem.prompt_delay)
    latency: float = 0.0  # module latency on the critical path of one send

    @property
    def rate(self) -> float:
        return line_rate(self.baud)

    def send_bytes(self, n: int, connect_id: int = 0) -> int:
        """Line bytes (both directions) of one fixed-length send of ``n`` bytes."""
        command = len(f"AT+QSSLSEND=1,{connect_id},{n}\r")
        result = len(f"\r\n+QSSLSEND: 1,{connect_id},0\r\n")
        return command + n * DIGITS[self.dataformat] + len(PROMPT) + len(OK) + result

    def send_time(self, n: int | None = None, connect_id: int = 0) -> float:
        """t(n): seconds one send of ``n`` payload bytes (default: a full chunk) takes."""
        n = MAX_SEND[self.dataformat] if n is None else n
        return self.send_bytes(n, connect_id) / self.rate + self.prompt_wait + self.latency

    def send_line_time(self, n: int | None = None, connect_id: int = 0) -> float:
        """The bytes of one send, without the prompt wait."""
        n = MAX_SEND[self.dataformat] if n is None else n
        return self.send_bytes(n, connect_id) / self.rate

    def upload_ceiling(self, n: int | None = None) -> float:
        """Payload bytes a second with sends of ``n`` bytes (default: the largest)."""
        n = MAX_SEND[self.dataformat] if n is None else n
        return n / self.send_time(n)

    def recv_urc_bytes(self, n: int, connect_id: int = 0) -> int:
        """Line bytes of one recv URC carrying ``n`` payload bytes (as framed on the line)."""
        head = len(f'\r\n+QSSLURC: "recv",1,{connect_id},{n},"')
        return head + n * DIGITS[self.dataformat] + len('"\r\n')

    def download_ceiling(self) -> float:
        """Payload bytes a second when the module sends nothing but full recv URCs."""
        n = MAX_RECV[self.dataformat]
        return n * self.rate / self.recv_urc_bytes(n)

    def messages_per_second(self, size: int) -> float:
        """One socket, one ``size``-byte message per send (no coalescing possible)."""
        return 1.0 / self.send_time(size)

    def latency_bound(self, sockets_with_data: int) -> float:
        """Worst wait for a byte: the send in flight, every other socket's turn, its own
        — each at most a prompt wait plus one full chunk's line time."""
        return (sockets_with_data + 1) * (self.prompt_wait + self.send_line_time())

    def upload_time(self, sizes: list[tuple[int, str, int]]) -> float:
        """Certificate uploads: (connect_id, kind, PEM size) each; prompt waits included."""
        total = 0.0
        for connect_id, kind, size in sizes:
            command = len(f'AT+QSSLCFG=1,{connect_id},"{kind}"\r')
            reply = len(f'\r\n+QSSLCFG: 1,{connect_id},"{kind}",{size}\r\n') + len(OK)
            line_bytes = command + size + CTRL_Z + len(PROMPT) + reply
            total += line_bytes / self.rate + self.prompt_wait
        return total
