"""Counters the benchmarks and soak tests read from a running emulator."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class EmulatorStats:
    """Monotonic counters since the emulator object was made (reboots don't reset)."""

    #: Bytes read from the host / written to the host (after pacing).
    bytes_in: int = 0
    bytes_out: int = 0
    #: Bytes after a ``>`` prompt that came before data mode began: lost, as on hardware.
    early_dropped_bytes: int = 0
    #: Bytes the host sent while the module was booting.
    boot_dropped_bytes: int = 0
    #: Bytes the host sent while the firmware was hung (``Emulator.hang``).
    hung_dropped_bytes: int = 0
    #: Output lost because the line was hung up or the host never read.
    output_dropped_bytes: int = 0
    #: Command lines by name: ``"AT+QSSLSEND"``, ``"ATE"``, ``"AT"``; ``"?"`` unparseable.
    commands: Counter[str] = field(default_factory=Counter)
    #: Final results that were ERROR / +CME ERROR.
    errors: int = 0
    #: QSSLOPENs answered OK, and those whose +QSSLOPEN was not 0.
    opens: int = 0
    open_failures: int = 0
    #: QSSLSENDs whose data was taken (OK), and those answered ERROR.
    sends: int = 0
    send_failures: int = 0
    #: QSSLSENDs taken while an earlier send on the same socket had no ``+QSSLSEND``
    #: result yet (pipelined), the most unconfirmed sends one socket ever had at once,
    #: and pipelined QSSLSENDs refused (ERROR at the command, before ``>``) because the
    #: profile's ``max_unconfirmed_sends`` was reached.
    pipelined_sends: int = 0
    most_unconfirmed_sends: int = 0
    pipelined_sends_refused: int = 0
    #: Payload bytes the module accepted for sending / delivered in recv URCs.
    sent_payload_bytes: int = 0
    received_payload_bytes: int = 0
    recv_urcs: int = 0
    closed_urcs: int = 0
    data_mode_timeouts: int = 0
    cert_uploads: int = 0
    reboots: int = 0
    hangups: int = 0
