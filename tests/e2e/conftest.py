from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pki import Pki, make_pki
from tests.support.tls_servers import RunningServer, start_socat_echo_server


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def echo_server(pki: Pki) -> Iterator[RunningServer]:
    """socat: a binary TLS echo that demands and checks a client certificate."""
    server = start_socat_echo_server(pki, require_client_cert=True)
    yield server
    server.stop()


@pytest.fixture
def rig_dir(tmp_path: Path) -> Path:
    return tmp_path
