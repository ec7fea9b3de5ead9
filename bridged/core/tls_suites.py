"""The TLS offer of the Quectel BC26/BC20 module, as tables: its cipher suites and what
each ``sslversion`` setting allows.

Pure data. :mod:`bridged.tools.module_tls` builds a real ``ssl`` client context from them
(the emulator, ``bridged probe`` and the demo use it); module profiles
(:mod:`bridged.core.module_profile`) name the subset a model offers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CipherSuite:
    """One suite of the module's list: IANA name, IANA code, OpenSSL's name."""

    iana_name: str
    code: int
    # None: not a real suite (the renegotiation SCSV); OpenSSL sends it by itself.
    openssl_name: str | None


#: The module's suites in the note's order (table 2).
MODULE_CIPHER_SUITES: tuple[CipherSuite, ...] = (
    CipherSuite("TLS_RSA_WITH_AES_256_CBC_SHA256", 0x003D, "AES256-SHA256"),
    CipherSuite("TLS_RSA_WITH_AES_256_CBC_SHA", 0x0035, "AES256-SHA"),
    CipherSuite("TLS_RSA_WITH_AES_128_CBC_SHA256", 0x003C, "AES128-SHA256"),
    CipherSuite("TLS_RSA_WITH_AES_128_CBC_SHA", 0x002F, "AES128-SHA"),
    CipherSuite("TLS_RSA_WITH_3DES_EDE_CBC_SHA", 0x000A, "DES-CBC3-SHA"),
    CipherSuite("TLS_PSK_WITH_AES_256_CBC_SHA384", 0x00AF, "PSK-AES256-CBC-SHA384"),
    CipherSuite("TLS_PSK_WITH_AES_256_CBC_SHA", 0x008D, "PSK-AES256-CBC-SHA"),
    CipherSuite("TLS_PSK_WITH_AES_128_CBC_SHA256", 0x00AE, "PSK-AES128-CBC-SHA256"),
    CipherSuite("TLS_PSK_WITH_AES_128_CBC_SHA", 0x008C, "PSK-AES128-CBC-SHA"),
    CipherSuite("TLS_PSK_WITH_3DES_EDE_CBC_SHA", 0x008B, "PSK-3DES-EDE-CBC-SHA"),
    CipherSuite("TLS_EMPTY_RENEGOTIATION_INFO_SCSV", 0x00FF, None),
)

#: ``sslversion`` setting → (minimum, maximum) protocol, by the name of its
#: ``ssl.TLSVersion`` member; 0 (SSL 3.0) has no entry (no OpenSSL here speaks it).
SSLVERSION_PROTOCOLS: dict[int, tuple[str, str]] = {
    1: ("TLSv1", "TLSv1"),
    2: ("TLSv1_1", "TLSv1_1"),
    3: ("TLSv1_2", "TLSv1_2"),
    4: ("TLSv1", "TLSv1_2"),
}
