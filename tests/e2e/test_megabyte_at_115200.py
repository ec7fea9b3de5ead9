"""1 MB round trip over one socket at 115200 baud with the note's 0.5 s prompt wait, beside
the time the serial line alone needs for it. Slow (about 15 minutes):

    python -m pytest -m slow -s tests/e2e/test_megabyte_at_115200.py
"""

from __future__ import annotations

import os
import time

import pytest
import pytest_twisted

from tests.support.pki import Pki
from tests.support.rig import BridgeRig, SocketSpec
from tests.support.tls_servers import RunningServer

MEGABYTE = 1_000_000
BAUD = 115200
PROMPT_WAIT = 0.5


def recv_line_seconds(payload: int, baud: int, urc: int = 650) -> float:
    """Line time of ``payload`` bytes coming back as hex recv URCs of ``urc`` bytes each."""
    full, rest = divmod(payload, urc)
    sizes = [urc] * full + ([rest] if rest else [])
    line = sum(len(f'\r\n+QSSLURC: "recv",1,0,{n},"') + 2 * n + len('"\r\n') for n in sizes)
    return line / (baud / 10)


def serial_line_seconds(payload: int, baud: int, prompt_wait: float, chunk: int = 730) -> float:
    """What an ideal host needs to upload ``payload`` bytes in hex (design notes' formula)."""
    rate = baud / 10
    total = 0.0
    remaining = payload
    while remaining:
        n = min(chunk, remaining)
        command = len(f"AT+QSSLSEND=1,0,{n}\r")
        responses = len("\r\n> ") + len("\r\nOK\r\n") + len("\r\n+QSSLSEND: 1,0,0\r\n")
        total += (command + 2 * n + responses) / rate + prompt_wait
        remaining -= n
    return total


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_one_megabyte_round_trip_at_115200(rig_dir, pki: Pki, echo_server: RunningServer):
    rig = BridgeRig(rig_dir, pki, baud=BAUD, prompt_delay=PROMPT_WAIT, prompt_max_delay=0.5)
    await rig.start([SocketSpec(0, echo_server.port)])
    try:
        data = os.urandom(MEGABYTE)
        started = time.monotonic()
        received = await rig.roundtrip(0, data, timeout=3600)
        elapsed = time.monotonic() - started
        assert received == data
        upload = serial_line_seconds(MEGABYTE, BAUD, PROMPT_WAIT)
        # The module holds URCs while it waits for data, so the echo's recv URCs cannot
        # overlap the upload's data phases: their line time adds up.
        ideal = upload + recv_line_seconds(MEGABYTE, BAUD)
        print(
            f"\n1 MB round trip at {BAUD} baud, hex, prompt wait {PROMPT_WAIT} s: "
            f"{elapsed:.1f} s; the serial line alone needs {ideal:.1f} s "
            f"({upload:.1f} s upload + {ideal - upload:.1f} s of recv URCs); "
            f"bridged reaches {100 * ideal / elapsed:.1f} % of it"
        )
    finally:
        await rig.stop()
