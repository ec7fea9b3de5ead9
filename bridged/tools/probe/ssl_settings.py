"""The ``AT+QSSLCFG`` settings a probe is about (``seclevel``, ``sslversion``, the
certificate files) and how the probe names them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: ``sslversion`` settings that pin one TLS version, and how the report names them.
TLS_VERSIONS: dict[int, str] = {1: "TLS1.0", 2: "TLS1.1", 3: "TLS1.2"}
SSLVERSION_LABELS: dict[int, str] = {
    0: "SSL3.0",
    1: "TLS1.0",
    2: "TLS1.1",
    3: "TLS1.2",
    4: "any",
}
#: The TLS versions each ``sslversion`` setting lets the module negotiate.
SSLVERSION_ALLOWS: dict[int, tuple[int, ...]] = {0: (), 1: (1,), 2: (2,), 3: (3,), 4: (1, 2, 3)}
SECLEVEL_LABELS: dict[int, str] = {0: "no auth", 1: "server auth", 2: "mutual"}


@dataclass(frozen=True)
class SslUnderTest:
    """The QSSLCFG settings a verdict is about; certificate paths as given."""

    seclevel: int
    sslversion: int
    cacert: str | None = None
    clientcert: str | None = None
    clientkey: str | None = None

    def describe(self) -> str:
        return (
            f"seclevel {self.seclevel} ({SECLEVEL_LABELS[self.seclevel]}), "
            f"sslversion {self.sslversion} ({SSLVERSION_LABELS[self.sslversion]})"
        )


NO_AUTH = SslUnderTest(seclevel=0, sslversion=4)


def tls_words(version: int) -> str:
    """ "TLS 1.2" for a pinned ``sslversion`` (1..3)."""
    return TLS_VERSIONS[version].replace("TLS", "TLS ")


def versions_words(versions: Sequence[int]) -> str:
    """ "TLS 1.2" or "TLS 1.0-1.2" for the versions an ``sslversion`` allows."""
    if len(versions) == 1:
        return tls_words(versions[0])
    return f"{tls_words(min(versions))}-{TLS_VERSIONS[max(versions)][3:]}"
