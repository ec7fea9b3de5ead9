"""A self-test's findings as the table it prints and the JSON report it writes."""

from __future__ import annotations

from typing import Any

from bridged.tools.selftest.findings import Selftest, Verdict


def report_table(t: Selftest) -> str:
    rows = [("check", "verdict", "assumption", "observed")]
    rows += [(f.key, f.verdict.value, f.assumption, f.observed) for f in t.findings]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    out = []
    for key, verdict, assumption, observed in rows:
        out.append(f"{key:<{widths[0]}}  {verdict:<{widths[1]}}  {assumption}")
        out.append(f"{'':<{widths[0]}}  {'':<{widths[1]}}  → {observed}")
    return "\n".join(out)


def report_json(t: Selftest, profile_text: str) -> dict[str, Any]:
    return {
        "base": t.base.name,
        "findings": [f.as_json() for f in t.findings],
        "differs": [f.key for f in t.findings if f.verdict is Verdict.DIFFERS],
        "profile": profile_text,
    }
