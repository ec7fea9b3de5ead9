"""One self-test run: its options (the echo server, the model), what each check found (a
:class:`Finding` with its verdict), and what the module profile learns from it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from bridged.core.module_profile import BC26, ModuleProfile
from bridged.tools.selftest.line import Line
from bridged.tools.selftest.script import PROMPT_STEPS, SocketRoles, socket_roles


class Verdict(Enum):
    AS_ASSUMED = "as assumed"
    DIFFERS = "differs"
    NOT_TESTED = "not tested"
    INCONCLUSIVE = "inconclusive"


@dataclass
class Finding:
    key: str
    assumption: str
    observed: str
    verdict: Verdict
    #: Machine-readable outcome (JSON), what tests and the profile use.
    value: Any = None

    def as_json(self) -> dict[str, Any]:
        return {
            "check": self.key,
            "assumption": self.assumption,
            "observed": self.observed,
            "verdict": self.verdict.value,
            "value": self.value,
        }


@dataclass
class EchoServer:
    host: str
    port: int
    cacert: Path
    clientcert: Path
    clientkey: Path
    closed_port: int


@dataclass
class SelftestOptions:
    model: str = "auto"
    echo: EchoServer | None = None
    sends_per_step: int = 6
    prompt_steps: tuple[float, ...] = PROMPT_STEPS


@dataclass
class Selftest:
    """One run's state: the line, the findings so far, what the profile learns."""

    line: Line
    options: SelftestOptions
    findings: list[Finding] = field(default_factory=list)
    base: ModuleProfile = BC26
    learned: dict[str, Any] = field(default_factory=dict)
    open_results: dict[str, int] = field(default_factory=dict)
    recv_lengths: dict[str, int] = field(default_factory=dict)
    upload_files: dict[str, bytes] = field(default_factory=dict)

    def add(self, key: str, assumption: str, observed: str, ok: bool | None, value: Any) -> None:
        verdict = (
            Verdict.INCONCLUSIVE if ok is None else Verdict.AS_ASSUMED if ok else Verdict.DIFFERS
        )
        self.findings.append(Finding(key, assumption, observed, verdict, value))

    def skip(self, key: str, assumption: str, why: str) -> None:
        self.findings.append(Finding(key, assumption, why, Verdict.NOT_TESTED, None))

    @property
    def sockets(self) -> SocketRoles:
        return socket_roles(self.base)

    def profile(self) -> ModuleProfile:
        values = dict(self.learned)
        if self.open_results:
            values["open_results"] = {**self.base.open_results, **self.open_results}
        name = f"{self.base.name}-selftest"
        return dataclasses.replace(self.base, name=name, **values)
