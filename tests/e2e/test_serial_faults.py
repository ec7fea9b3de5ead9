"""Issue 11's serial faults end to end: the emulator answers a send slowly, says an OK
nobody asked for, or sends '>' after bridged stopped waiting for it; on text and hex
sockets, through the real daemon, pty and TLS echo server."""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.support.pki import Pki
from tests.support.rig import BridgeRig, SocketSpec
from tests.support.tls_servers import RunningServer
from tests.support.waiting import wait_until

FORMATS = ["text", "hex"]


async def _start(rig_dir, pki: Pki, echo_server: RunningServer, fmt: str) -> BridgeRig:
    # ssl.timeout 10 s: bounds the module's data mode, so how long bridged stays silent.
    rig = BridgeRig(rig_dir, pki, ssl_timeout=10)
    await rig.start([SocketSpec(0, echo_server.port, mode="persistent", dataformat=fmt)])
    assert await rig.roundtrip(0, b"warm-up") == b"warm-up"
    return rig


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest_twisted.ensureDeferred
async def test_a_send_answered_after_five_seconds_is_confirmed(
    rig_dir, pki: Pki, echo_server: RunningServer, fmt: str
) -> None:
    """The OK after the data may take the socket's timeout plus network delay: a 7 s
    answer confirms the send; the client is not disconnected."""
    rig = await _start(rig_dir, pki, echo_server, fmt)
    try:
        rig.emulator.answer_next_data_slowly(7.0)
        data = bytes(range(256)) * 4 if fmt == "text" else b"slow but sure" * 50
        assert await rig.roundtrip(0, data, timeout=40) == data
        assert rig.emulator.faults.slow_answer is None  # the fault was used
    finally:
        await rig.stop()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest_twisted.ensureDeferred
async def test_stray_oks_corrupt_nothing(
    rig_dir, pki: Pki, echo_server: RunningServer, fmt: str
) -> None:
    rig = await _start(rig_dir, pki, echo_server, fmt)
    try:
        for i in range(5):
            rig.emulator.stray_ok()
            data = b"after a stray OK %d " % i * 40
            echoed = await rig.roundtrip(0, data, timeout=60)
            # Delivered, or the client cut off: never bytes nobody wrote.
            assert echoed == data[: len(echoed)]
        assert await rig.roundtrip(0, b"still fine") == b"still fine"
    finally:
        await rig.stop()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest_twisted.ensureDeferred
async def test_a_late_prompt_turns_no_probe_into_payload(
    rig_dir, pki: Pki, echo_server: RunningServer, fmt: str
) -> None:
    """'>' after bridged gave up waiting: the module counts what comes as payload until
    its data mode times out. bridged stays silent; the server receives nothing foreign."""
    rig = await _start(rig_dir, pki, echo_server, fmt)
    try:
        rig.emulator.prompt_late(6.0)
        data = b"late prompt " * 10
        echoed = await rig.roundtrip(0, data, timeout=60)
        assert echoed == data[: len(echoed)]  # the send failed: cut off, nothing foreign
        stats = rig.emulator.stats
        await wait_until(lambda: stats.data_mode_timeouts >= 1, timeout=30, what="data mode ends")
        await rig.wait_ready(timeout=60)
        assert await rig.roundtrip(0, b"after it") == b"after it"
        # Nothing bridged wrote in the meantime reached the module as payload.
        assert stats.received_payload_bytes == stats.sent_payload_bytes
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
async def test_a_normal_start_leaves_no_answer_unowned(
    rig_dir, pki: Pki, echo_server: RunningServer
) -> None:
    """Issue 17 saw "unsolicited line from module: OK" on every start: an answer the engine
    could not match to its command. Starting is the session's business: nothing unowned."""
    from twisted.logger import LogLevel, formatEvent, globalLogPublisher

    lines: list[str] = []

    def observe(event: dict[str, object]) -> None:
        # The debug trace may show the discarded answer; nothing above it may.
        level = event.get("log_level")
        if str(event.get("log_namespace", "")).startswith("bridged.at") and level in (
            LogLevel.info,
            LogLevel.warn,
            LogLevel.error,
            LogLevel.critical,
        ):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        rig = await _start(rig_dir, pki, echo_server, "hex")
        await rig.stop()
    finally:
        globalLogPublisher.removeObserver(observe)
    unowned = [line for line in lines if "unsolicited line" in line or "nobody can own" in line]
    assert unowned == [], lines
