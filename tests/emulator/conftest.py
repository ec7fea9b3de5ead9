"""Fixtures for the emulator's tests: an emulator on a pty, a host end, PKI, servers.

The heavy lifting is in ``tests.support`` so end-to-end tests can do the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bridged.emulator import FAST, Emulator, EmulatorProfile
from tests.support.pki import Pki, make_pki
from tests.support.pty_host import PtyHost
from tests.support.tls_servers import RunningServer, start_socat_echo_server

#: FAST with a short data-mode timeout so "host sent too little" tests stay quick.
TEST_PROFILE: EmulatorProfile = replace(FAST, data_mode_timeout=1.0)

MakeEmulator = Callable[..., Emulator]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def make_emulator(tmp_path: Path) -> Iterator[MakeEmulator]:
    """``make_emulator(baud=..., **profile_fields)`` → a started emulator at
    ``tmp_path/ttyBC26-<n>``; all are stopped after the test."""
    started: list[Emulator] = []

    def make(baud: int = 115200, **profile_fields: Any) -> Emulator:
        profile = replace(TEST_PROFILE, **profile_fields)
        path = tmp_path / f"ttyBC26-{len(started)}"
        emulator = Emulator(path, baud=baud, profile=profile, seed=len(started) + 1)
        emulator.start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(make_emulator: MakeEmulator) -> Emulator:
    return make_emulator()


@pytest.fixture
def host_for() -> Iterator[Callable[[Emulator], PtyHost]]:
    """``host_for(emulator)`` → an opened :class:`PtyHost` on its device; closed after."""
    hosts: list[PtyHost] = []

    def open_host(emulator: Emulator) -> PtyHost:
        host = PtyHost(emulator.device_path)
        host.open()
        hosts.append(host)
        return host

    yield open_host
    for host in hosts:
        host.close()


@pytest.fixture
def tls_echo_server(pki: Pki, tmp_path: Path) -> Iterator[RunningServer]:
    """socat mutual-TLS echo server (client certificate required, verify=1)."""
    with start_socat_echo_server(pki, log_path=tmp_path / "socat.log") as server:
        yield server
