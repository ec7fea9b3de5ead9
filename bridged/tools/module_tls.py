"""The TLS client profile of the Quectel BC26/BC20 module, as one definition.

The emulator opens its real TLS connections with :func:`client_context`, and a
``bridged probe`` command can use the same context to tell whether a server will
accept the module before any hardware is involved.

What the module does (application note V1.0, section 1):

* cipher suites: RSA key exchange with AES-CBC or 3DES, and PSK suites — no ECDHE,
  no GCM. OpenSSL 3 has dropped 3DES from its default provider, and Python's ``ssl``
  cannot supply PSK identities before 3.13, so what is left is the four
  ``TLS_RSA_WITH_AES_*`` suites. They are the ones a server must offer anyway;
* protocol versions SSL 3.0 and TLS 1.0..1.2 (no TLS 1.3). Python's OpenSSL has no
  SSL 3.0 at all: asking for it raises :class:`UnsupportedSslVersion`;
* ``seclevel`` 0 (no verification), 1 (verify the server against the uploaded CA),
  2 (also present a client certificate).

Hostname: the note documents only the CA-chain check, and the module has no setting
for a peer name other than the host it connects to. We verify the chain and do not
check the hostname, so a certificate that verifies on the module verifies here and a
server the module would reject for its chain is rejected here. The hostname still goes
out as SNI, as mbedTLS does when given a host name.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from bridged.core.tls_suites import MODULE_CIPHER_SUITES, SSLVERSION_PROTOCOLS, CipherSuite

# The tables live in the pure core; this module turns them into ssl contexts. Re-exported
# for the tools that take them from here.
__all__ = [
    "MODULE_CIPHER_SUITES",
    "SSLVERSION_RANGES",
    "CaCertError",
    "CipherSuite",
    "ClientCertError",
    "ClientKeyError",
    "ModuleTlsError",
    "UnsupportedSslVersion",
    "available_suites",
    "client_context",
    "openssl_cipher_string",
]

#: ``sslversion`` setting → (minimum, maximum) protocol; 0 (SSL 3.0) has no entry.
SSLVERSION_RANGES: dict[int, tuple[ssl.TLSVersion, ssl.TLSVersion]] = {
    version: (ssl.TLSVersion[low], ssl.TLSVersion[high])
    for version, (low, high) in SSLVERSION_PROTOCOLS.items()
}


class ModuleTlsError(Exception):
    """The profile cannot be built from these settings (before any network I/O)."""


class UnsupportedSslVersion(ModuleTlsError):
    """``sslversion`` asks for a protocol this OpenSSL cannot speak (SSL 3.0)."""


class CaCertError(ModuleTlsError):
    """CA certificate missing or unusable while ``seclevel`` needs it."""


class ClientCertError(ModuleTlsError):
    """Client certificate missing or unusable while ``seclevel`` is 2."""


class ClientKeyError(ModuleTlsError):
    """Client key missing, unusable, or not the client certificate's key."""


def openssl_cipher_string(suites: Sequence[CipherSuite] = MODULE_CIPHER_SUITES) -> str:
    """The module's suites (or some of them) as an OpenSSL cipher string, SHA1 and old
    TLS allowed."""
    names = [s.openssl_name for s in suites if s.openssl_name]
    # SECLEVEL=0: TLS 1.0/1.1 and SHA1 signatures are refused at OpenSSL 3's default 1.
    return ":".join(names) + ":@SECLEVEL=0"


def available_suites() -> tuple[CipherSuite, ...]:
    """The module's suites that this OpenSSL will actually offer."""
    ctx = client_context(4, 0, None, None, None)
    offered = {c["id"] & 0xFFFF for c in ctx.get_ciphers()}
    return tuple(s for s in MODULE_CIPHER_SUITES if s.code in offered)


def client_context(
    sslversion: int,
    seclevel: int,
    cafile: str | None,
    certfile: str | None,
    keyfile: str | None,
    *,
    suites: Sequence[CipherSuite] = MODULE_CIPHER_SUITES,
) -> ssl.SSLContext:
    """A client context that behaves like the module with these QSSLCFG settings.

    Raises a :class:`ModuleTlsError` subclass for settings the module would reject
    before connecting; wrap with ``server_hostname=<host>`` to send SNI. ``suites``
    narrows the offer to some of the module's suites (``bridged probe`` tries each
    alone); it must name at least one this OpenSSL has (see :func:`available_suites`).
    """
    if sslversion not in SSLVERSION_RANGES:
        raise UnsupportedSslVersion(f"sslversion {sslversion} is not available")
    if seclevel not in (0, 1, 2):
        raise ModuleTlsError(f"seclevel {seclevel} out of range")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers(openssl_cipher_string(suites))
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1; the module speaks them, so we must too.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version, ctx.maximum_version = SSLVERSION_RANGES[sslversion]
    ctx.check_hostname = False
    if seclevel == 0:
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.verify_mode = ssl.CERT_REQUIRED
    if not cafile:
        raise CaCertError("seclevel needs a CA certificate")
    try:
        ctx.load_verify_locations(cafile=cafile)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise CaCertError(f"CA certificate unusable: {type(exc).__name__}") from None
    if seclevel == 2:
        _load_client_identity(ctx, certfile, keyfile)
    return ctx


def _load_client_identity(ctx: ssl.SSLContext, certfile: str | None, keyfile: str | None) -> None:
    # ssl.load_cert_chain says "PEM lib" for any of the three failures; parse each
    # part first so a bad certificate and a bad key give the module's distinct codes.
    if not certfile:
        raise ClientCertError("seclevel 2 needs a client certificate")
    try:
        x509.load_pem_x509_certificate(Path(certfile).read_bytes())
    except (ValueError, OSError):
        raise ClientCertError("client certificate unusable") from None
    if not keyfile:
        raise ClientKeyError("seclevel 2 needs a client key")
    try:
        serialization.load_pem_private_key(Path(keyfile).read_bytes(), password=None)
    except (ValueError, TypeError, OSError, UnsupportedAlgorithm):
        raise ClientKeyError("client key unusable") from None
    try:
        ctx.load_cert_chain(certfile=certfile, keyfile=keyfile)
    except (ssl.SSLError, OSError):
        raise ClientKeyError("client key does not match the certificate") from None
