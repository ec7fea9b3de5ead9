"""Read pacing end to end (issue 14): the emulator paces its output at 921600 baud as a
UART delivers it, a few hundred bytes at a time; bridged reads a recv URC's rest in one
go once its header is in, so a download costs about one serial read per URC instead of
three or four, with every byte delivered."""

from __future__ import annotations

import os
from pathlib import Path

import pytest_twisted
from twisted.internet import threads

from tests.support.pki import Pki
from tests.support.rig import BridgeRig, SocketSpec, read_until_eof
from tests.support.tls_servers import start_socat_tls_server


@pytest_twisted.ensureDeferred
async def test_a_download_takes_far_fewer_serial_reads_per_recv_urc(
    rig_dir: Path, pki: Pki
) -> None:
    payload = os.urandom(80_000)
    (rig_dir / "download.bin").write_bytes(payload)
    # Each connection gets the file, then the server closes it.
    server = start_socat_tls_server(
        pki.server_cert,
        pki.server_key,
        cafile=pki.ca_cert,
        peer=f"OPEN:{rig_dir / 'download.bin'},rdonly",
    )
    rig = BridgeRig(rig_dir, pki, baud=921600)
    daemon = await rig.start([SocketSpec(0, server.port)])
    engine = daemon.modem.engine
    assert engine is not None
    reads_per_urc = {}
    try:
        for pacing in (False, True):  # the same download without pacing, then with it
            engine.read_pacing = pacing
            reads, urcs = engine.reads, rig.emulator.stats.recv_urcs
            with rig.connect(0) as sock:
                received = await threads.deferToThread(read_until_eof, sock)
            assert received == payload
            urcs = rig.emulator.stats.recv_urcs - urcs
            reads_per_urc[pacing] = (engine.reads - reads) / urcs
    finally:
        await rig.stop()
        server.stop()
    print(f"serial reads per recv URC: {reads_per_urc}")
    assert reads_per_urc[True] <= 0.6 * reads_per_urc[False]
