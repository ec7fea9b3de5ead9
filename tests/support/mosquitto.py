"""A real mosquitto broker with TLS that demands a client certificate."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.pki import Pki
from tests.support.tls_servers import MODULE_COMPATIBLE_CIPHERS, RunningServer, start_server


def start_mosquitto_tls(pki: Pki, directory: Path) -> RunningServer:
    """mosquitto on a free loopback port: TLS 1.2, the module's suites, client certs required."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "mosquitto.conf"

    def command(port: int) -> list[str]:
        lines = [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "require_certificate true",
            f"cafile {pki.ca_cert}",
            f"certfile {pki.server_cert}",
            f"keyfile {pki.server_key}",
            "tls_version tlsv1.2",
            f"ciphers {MODULE_COMPATIBLE_CIPHERS.replace(':@SECLEVEL=0', '')}",
            "persistence false",
            "log_dest stderr",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto', who can't read the key
        config.write_text("\n".join(lines) + "\n")
        return ["mosquitto", "-c", str(config)]

    return start_server(command, log_path=directory / "mosquitto.log")
