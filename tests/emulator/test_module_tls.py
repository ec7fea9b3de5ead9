"""The module's TLS client profile (bridged.tools.module_tls), without a network."""

from __future__ import annotations

import ssl

import pytest

from bridged.tools import module_tls
from tests.support.pki import Pki


def test_profile_offers_only_the_module_rsa_suites() -> None:
    names = {s.iana_name for s in module_tls.available_suites()}
    assert {
        "TLS_RSA_WITH_AES_256_CBC_SHA256",
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
    } <= names
    assert all(s in module_tls.MODULE_CIPHER_SUITES for s in module_tls.available_suites())
    ctx = module_tls.client_context(4, 0, None, None, None)
    tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"]
    assert not [n for n in tls12 if "ECDHE" in n or "GCM" in n]


@pytest.mark.parametrize(
    ("sslversion", "low", "high"),
    [
        (1, ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1),
        (2, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1),
        (3, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2),
        (4, ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_2),
    ],
)
def test_sslversion_sets_protocol_range(
    sslversion: int, low: ssl.TLSVersion, high: ssl.TLSVersion
) -> None:
    ctx = module_tls.client_context(sslversion, 0, None, None, None)
    assert (ctx.minimum_version, ctx.maximum_version) == (low, high)


def test_ssl3_is_unsupported() -> None:
    with pytest.raises(module_tls.UnsupportedSslVersion):
        module_tls.client_context(0, 0, None, None, None)


def test_seclevels(pki: Pki) -> None:
    none = module_tls.client_context(4, 0, None, None, None)
    assert none.verify_mode is ssl.CERT_NONE
    server_auth = module_tls.client_context(4, 1, str(pki.ca_cert), None, None)
    assert server_auth.verify_mode is ssl.CERT_REQUIRED
    assert not server_auth.check_hostname  # the module checks the chain only
    module_tls.client_context(4, 2, str(pki.ca_cert), str(pki.client_cert), str(pki.client_key))


def test_bad_material_maps_to_distinct_errors(pki: Pki, tmp_path: object) -> None:
    ca, cert, key = str(pki.ca_cert), str(pki.client_cert), str(pki.client_key)
    with pytest.raises(module_tls.CaCertError):
        module_tls.client_context(4, 1, None, None, None)
    with pytest.raises(module_tls.CaCertError):
        module_tls.client_context(4, 1, key, None, None)  # a key is no CA
    with pytest.raises(module_tls.ClientCertError):
        module_tls.client_context(4, 2, ca, None, key)
    with pytest.raises(module_tls.ClientCertError):
        module_tls.client_context(4, 2, ca, key, key)
    with pytest.raises(module_tls.ClientKeyError):
        module_tls.client_context(4, 2, ca, cert, None)
    with pytest.raises(module_tls.ClientKeyError):
        module_tls.client_context(4, 2, ca, cert, cert)
    with pytest.raises(module_tls.ClientKeyError):  # the server's key: not this cert's
        module_tls.client_context(4, 2, ca, cert, str(pki.server_key))
