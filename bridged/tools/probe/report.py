"""One probe run: the server's facts, then a verdict per socket."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bridged.config import Endpoint
from bridged.core.module_profile import BC26, ModuleProfile
from bridged.tools.probe.diagnosis import SocketUnderTest, Verdict, judge
from bridged.tools.probe.handshake import Attempt, Outcome, Prober
from bridged.tools.probe.server_facts import (
    ClientAuth,
    Facts,
    SniReport,
    client_auth_of,
    describe_certificate,
    probe_sni,
    probe_sslversions,
    probe_suites,
)
from bridged.tools.probe.ssl_settings import NO_AUTH


@dataclass(frozen=True)
class Report:
    facts: Facts
    verdicts: list[Verdict]

    @property
    def all_work(self) -> bool:
        return all(v.works for v in self.verdicts)


def run_probe(
    target: Endpoint,
    sockets: Sequence[SocketUnderTest],
    timeout: float,
    profile: ModuleProfile = BC26,
) -> Report:
    prober = Prober(target, timeout, profile)
    modern = prober.modern()
    # A modern handshake that times out may be a middlebox choking on its big hello, so
    # the module's own hello gets its chance before we give up.
    base = None if modern.outcome is Outcome.UNREACHABLE else prober.module(Attempt(NO_AUTH))
    if base is None or base.outcome in (Outcome.UNREACHABLE, Outcome.TIMEOUT):
        # Nothing answers: every further handshake would fail (or wait) the same way.
        no_answer = base or modern
        sni = SniReport(False, "not checked")
        facts = Facts(
            target, modern, None, ClientAuth.UNKNOWN, sni, [], [], no_answer, profile.label
        )
        return Report(facts, [judge(s, facts, prober) for s in sockets])
    leaf = base.leaf or modern.leaf
    facts = Facts(
        target=target,
        modern=modern,
        server_key=describe_certificate(leaf) if leaf else None,
        client_auth=client_auth_of(base),
        sni=probe_sni(prober),
        suites=probe_suites(prober),
        versions=probe_sslversions(prober),
        module=profile.label,
    )
    return Report(facts, [judge(s, facts, prober) for s in sockets])
