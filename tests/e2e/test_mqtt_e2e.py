"""The typical legacy app: an MQTT client speaking plain TCP to localhost, through bridged,
to a mosquitto broker that demands a client certificate."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest_twisted
from twisted.internet import threads

from tests.support.mosquitto import start_mosquitto_tls
from tests.support.pki import Pki
from tests.support.rig import BridgeRig, SocketSpec
from tests.support.waiting import wait_until


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


@pytest_twisted.ensureDeferred
async def test_mosquitto_pub_and_sub_through_two_sockets(rig_dir: Path, pki: Pki) -> None:
    broker = start_mosquitto_tls(pki, rig_dir / "mosquitto")
    rig = BridgeRig(rig_dir, pki, baud=115200, prompt_delay=0.02, prompt_max_delay=0.015)
    try:
        await rig.start([SocketSpec(0, broker.port), SocketSpec(1, broker.port)])
        sub_port, pub_port = rig.ports[0], rig.ports[1]
        subscriber = subprocess.Popen(
            [
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                str(sub_port),
                "-t",
                "gw/+/temp",
                "-C",
                "2",
                "-v",
                "-q",
                "1",
                "-i",
                "bridged-test-sub",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # The subscription is in place once the broker has sent SUBACK through the bridge.
        await wait_until(
            lambda: rig.bridge(0).stats.rx_bytes >= 4 + 5, timeout=20, what="CONNACK and SUBACK"
        )
        for value in ("21.5", "binary\x01\x02"):
            result = await threads.deferToThread(
                _run,
                [
                    "mosquitto_pub",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(pub_port),
                    "-t",
                    "gw/7/temp",
                    "-m",
                    value,
                    "-q",
                    "1",
                    "-i",
                    "bridged-test-pub",
                ],
                30,
            )
            assert result.returncode == 0, result.stderr
        out, err = await threads.deferToThread(subscriber.communicate, None, 30)
        assert subscriber.returncode == 0, err
        assert out.splitlines() == ["gw/7/temp 21.5", "gw/7/temp binary\x01\x02"]
    finally:
        await rig.stop()
        broker.stop()
