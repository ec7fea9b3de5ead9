"""Throw-away PKI for TLS tests (RSA everywhere: the module only does RSA key exchange).

pki = make_pki(tmp_path / "pki")
pki.ca_cert, pki.server_cert, pki.server_key, pki.client_cert, pki.client_key
pki.other_ca_cert   # a CA that signed nothing here: for "verify failed" tests
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

from bridged.tools.demo import make_demo_pki


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca_cert: Path
    other_ca_cert: Path
    #: Server certificate for ``localhost`` and ``127.0.0.1``, and its key.
    server_cert: Path
    server_key: Path
    #: Client certificate (CN "bridged-client") signed by ``ca_cert``, and its key.
    client_cert: Path
    client_key: Path

    @staticmethod
    def read(path: Path) -> bytes:
        return path.read_bytes()


def make_pki(directory: Path, server_names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Pki:
    """Write a CA, an unrelated CA, a server and a client identity under ``directory``."""
    identities = make_demo_pki(directory, server_names, client_name="bridged-client")
    other_ca = trustme.CA(key_type=trustme.KeyType.RSA, organization_name="unrelated test CA")
    other_ca_cert = directory / "other-ca.pem"
    other_ca.cert_pem.write_to_path(str(other_ca_cert))
    return Pki(
        directory=directory,
        ca_cert=identities.ca_cert,
        other_ca_cert=other_ca_cert,
        server_cert=identities.server_cert,
        server_key=identities.server_key,
        client_cert=identities.client_cert,
        client_key=identities.client_key,
    )
