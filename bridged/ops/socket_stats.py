"""One socket's counters: plain numbers the socket's glue writes and the snapshot reads."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class SocketStats:
    """Per-socket counters (monotonic) for metrics and tests."""

    tx_bytes: int = 0  # payload bytes confirmed sent by +QSSLSEND: ...,0
    rx_bytes: int = 0  # payload bytes received in recv URCs
    rx_dropped_bytes: int = 0
    tx_lost_bytes: int = 0  # client bytes never confirmed, their client closed
    remote_closes: int = 0
    opens: Counter[str] = field(default_factory=Counter)  # by result name
    client_connections: Counter[str] = field(default_factory=Counter)  # by outcome
    send_failures: int = 0
    # Connections we ended because the stream could not go on whole, by StreamBroken label.
    streams_broken: Counter[str] = field(default_factory=Counter)
    # For `bridged status` (wall-clock seconds from the reactor):
    state_since: float | None = None  # when the SSL connection entered its current state
    client_since: float | None = None  # when the attached client connected
    last_error: str | None = None  # the last open or send failure
    last_error_at: float | None = None

    def error(self, text: str, when: float) -> None:
        self.last_error, self.last_error_at = text, when
