"""Throw-away PKI for TLS tests (RSA everywhere: the module only does RSA key exchange).

pki = make_pki(tmp_path / "pki")
pki.ca_cert, pki.server_cert, pki.server_key, pki.client_cert, pki.client_key
pki.other_ca_cert   # a CA that signed nothing here: for "verify failed" tests
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


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
    directory.mkdir(parents=True, exist_ok=True)
    rsa = trustme.KeyType.RSA
    ca = trustme.CA(key_type=rsa, organization_name="bridged test CA")
    other_ca = trustme.CA(key_type=rsa, organization_name="unrelated test CA")
    server = ca.issue_cert(*server_names, key_type=rsa)
    client = ca.issue_cert("bridged-client", common_name="bridged-client", key_type=rsa)
    pki = Pki(
        directory=directory,
        ca_cert=directory / "ca.pem",
        other_ca_cert=directory / "other-ca.pem",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )
    ca.cert_pem.write_to_path(str(pki.ca_cert))
    other_ca.cert_pem.write_to_path(str(pki.other_ca_cert))
    server.cert_chain_pems[0].write_to_path(str(pki.server_cert))
    server.private_key_pem.write_to_path(str(pki.server_key))
    client.cert_chain_pems[0].write_to_path(str(pki.client_cert))
    client.private_key_pem.write_to_path(str(pki.client_key))
    for path in (pki.server_key, pki.client_key):
        path.chmod(0o600)
    return pki
