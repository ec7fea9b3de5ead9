"""``bridged probe HOST:PORT``: will this TLS server accept the module's handshake?

The module is a :class:`~bridged.core.module_profile.ModuleProfile` (``--model``, or the
configuration's ``modem.model`` / ``modem.profile_file`` with ``-c``): its suites and TLS
versions are what the handshakes offer (a BC660K-GL offers three suites, no SSL 3.0).

From the machine it runs on, the probe makes the handshakes the module would make, with
the module's one client profile (:mod:`bridged.tools.module_tls`): each of its suites alone at
each TLS version, then the whole offer as each ``sslversion`` setting would send it, then
each configured socket's own settings. It reports what the server accepts, its key, its
client-certificate and SNI behaviour, and per socket a verdict: works, or the
``+QSSLOPEN`` error code the module would most likely report and what to change.

Blocking ``ssl`` over a :class:`ssl.MemoryBIO` on a plain socket: the bytes the server
sends are also parsed here, because a TLS <= 1.2 handshake is readable up to the server's
ChangeCipherSpec, and that shows what Python's ``ssl`` hides: a CertificateRequest, the
server's alerts, and its certificate chain even when verification failed.

Which code the module reports for which failure is our reading of the application note
(which gives the codes but not the mapping); see
:func:`bridged.tools.probe.diagnosis.diagnose`.

Modules: :mod:`.tls_wire` (the server's cleartext handshake, parsed), :mod:`.ssl_settings`
(the QSSLCFG settings under test), :mod:`.handshake` (one handshake; the prober),
:mod:`.server_facts` (what the server accepts), :mod:`.diagnosis` (per socket: the
verdict and the ``+QSSLOPEN`` code), :mod:`.report` (one run), :mod:`.render` (text and
JSON), :mod:`.cli` (``probe_main``).
"""

from bridged.tools.probe.cli import probe_main
from bridged.tools.probe.report import run_probe

__all__ = ["probe_main", "run_probe"]
