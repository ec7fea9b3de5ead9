"""A probe report as the text table or the JSON document ``bridged probe`` prints."""

from __future__ import annotations

from typing import Any

from bridged.core.qssl_commands import ERROR_DESCRIPTIONS, ERROR_NAMES
from bridged.tools.probe.diagnosis import OK, Verdict
from bridged.tools.probe.handshake import Handshake
from bridged.tools.probe.report import Report
from bridged.tools.probe.server_facts import (
    Cell,
    ClientAuth,
    Facts,
    ServerKey,
    SuiteRow,
    VersionRow,
)
from bridged.tools.probe.ssl_settings import SSLVERSION_LABELS, TLS_VERSIONS
from bridged.tools.probe.tls_wire import alert_name


def qsslopen_label(code: int) -> str:
    if code == OK:
        return "works"
    name = ERROR_NAMES.get(code, "unknown")
    return f"fails: +QSSLOPEN {code} {name} ({ERROR_DESCRIPTIONS.get(code, 'unknown error')})"


_CELL_TEXT = {
    Cell.ACCEPTED: "accepted",
    Cell.REFUSED: "refused",
    Cell.NOT_IN_VERSION: "-",
    Cell.NOT_TESTABLE: "not testable here",
    Cell.NO_ANSWER: "no answer",
}


_CLIENT_AUTH_TEXT = {
    ClientAuth.NOT_REQUESTED: "not requested",
    ClientAuth.OPTIONAL: "requested, optional",
    ClientAuth.REQUIRED: "required (the server refuses a handshake without one)",
    ClientAuth.UNKNOWN: "unknown (no module handshake got that far)",
}


def render_text(report: Report) -> str:
    facts = report.facts
    lines = [
        f"bridged probe {facts.target}: the {facts.module}'s TLS handshakes, "
        "made from this machine",
        "",
        *_server_lines(facts),
    ]
    if facts.suites:
        lines += ["", *_suite_lines(facts.suites), "", *_version_lines(facts.versions)]
    lines += ["", "verdict:"]
    for verdict in report.verdicts:
        lines += _verdict_lines(verdict)
    return "\n".join(lines) + "\n"


def _server_lines(facts: Facts) -> list[str]:
    key = facts.server_key
    modern = facts.modern
    rows = [
        ("server key", f"{key.label()}, {key.subject}, issued by {key.issuer}" if key else "?"),
        (
            "modern client",
            f"{modern.version} {modern.cipher}" if modern.ok else f"fails: {modern.failure()}",
        ),
        ("client cert", _CLIENT_AUTH_TEXT[facts.client_auth]),
        ("SNI", facts.sni.summary),
    ]
    return [f"{name:<14}{value}" for name, value in rows]


def _suite_lines(rows: list[SuiteRow]) -> list[str]:
    width = max(len(r.suite.iana_name) for r in rows) + 2
    header = "module cipher suite".ljust(width) + "".join(
        f"{label:<10}" for label in TLS_VERSIONS.values()
    )
    lines = [header.rstrip()]
    for row in rows:
        cells = list(row.cells.values())
        if all(c is Cell.NOT_TESTABLE for c in cells):
            text = _CELL_TEXT[Cell.NOT_TESTABLE]
        else:
            text = "".join(f"{_CELL_TEXT[c]:<10}" for c in cells)
        lines.append((row.suite.iana_name.ljust(width) + text).rstrip())
    lines.append("(-: the suite does not exist in that TLS version; not testable here: Python's")
    lines.append(" ssl cannot offer 3DES or PSK suites with this OpenSSL)")
    return lines


def _version_lines(rows: list[VersionRow]) -> list[str]:
    lines = ["sslversion   the module would get"]
    for row in rows:
        label = f"{row.sslversion} {SSLVERSION_LABELS[row.sslversion]}"
        lines.append(f"{label:<13}{_version_result(row)}")
    return lines


def _version_result(row: VersionRow) -> str:
    if row.result is None:
        return "not testable here (this OpenSSL has no SSL 3.0)"
    if row.result.ok:
        return f"{row.result.version} {row.result.suite_label()}"
    if row.result.flight.certificate_request and row.result.suite:
        return f"{row.result.suite_label()}, then a client certificate is required"
    return f"refused ({row.result.failure()})"


def _verdict_lines(verdict: Verdict) -> list[str]:
    sut, diagnosis = verdict.socket, verdict.diagnosis
    lines = [f"  {sut.label} ({sut.ssl.describe()}): {qsslopen_label(diagnosis.code)}"]
    lines.append(f"    {'with' if verdict.works else 'why'}: {diagnosis.reason}")
    lines.append(f"    chain: {verdict.chain}")
    lines.append(f"    client cert: {verdict.client_certificate}")
    lines += [f"    fix: {fix}" for fix in diagnosis.fixes]
    lines += [f"    note: {note}" for note in verdict.notes]
    return lines


def to_json(report: Report) -> dict[str, Any]:
    facts = report.facts
    return {
        "target": {"host": facts.target.host, "port": facts.target.port},
        "all_work": report.all_work,
        "server": {
            "key": _key_json(facts.server_key),
            "modern_client": _handshake_json(facts.modern),
            "client_certificate": facts.client_auth.value,
            "sni": {"applicable": facts.sni.applicable, "summary": facts.sni.summary},
        },
        "suites": [_suite_json(row) for row in facts.suites],
        "sslversions": [_version_json(row) for row in facts.versions],
        "verdicts": [_verdict_json(v) for v in report.verdicts],
    }


def _key_json(key: ServerKey | None) -> dict[str, Any] | None:
    if key is None:
        return None
    return {
        "type": key.algorithm,
        "bits": key.bits,
        "curve": key.curve,
        "subject": key.subject,
        "issuer": key.issuer,
        "not_after": key.not_after,
    }


def _handshake_json(result: Handshake | None) -> dict[str, Any] | None:
    if result is None:
        return None
    suite = result.negotiated_suite
    return {
        "outcome": result.outcome.value,
        "version": result.version,
        "cipher": result.cipher,
        "suite": suite.iana_name if suite else None,
        "alert": alert_name(result.flight.alert) if result.flight.alert is not None else None,
        "detail": result.detail or None,
    }


def _suite_json(row: SuiteRow) -> dict[str, Any]:
    return {
        "suite": row.suite.iana_name,
        "openssl": row.suite.openssl_name,
        "code": f"0x{row.suite.code:04X}",
        "testable": any(c is not Cell.NOT_TESTABLE for c in row.cells.values()),
        "results": {TLS_VERSIONS[v]: c.value for v, c in row.cells.items()},
        "details": {TLS_VERSIONS[v]: d for v, d in row.details.items()},
    }


def _version_json(row: VersionRow) -> dict[str, Any]:
    return {
        "sslversion": row.sslversion,
        "label": SSLVERSION_LABELS[row.sslversion],
        "testable": row.result is not None,
        "works": row.result.ok if row.result is not None else None,
        "handshake": _handshake_json(row.result),
    }


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    sut, diagnosis = verdict.socket, verdict.diagnosis
    s = sut.ssl
    return {
        "socket": sut.label,
        "connect_id": sut.connect_id,
        "settings": {
            "seclevel": s.seclevel,
            "sslversion": s.sslversion,
            "cacert": s.cacert,
            "clientcert": s.clientcert,
            "clientkey": s.clientkey,  # the path only, never the key
        },
        "verdict": "works" if verdict.works else "fails",
        "code": diagnosis.code,
        "error_name": ERROR_NAMES.get(diagnosis.code, "unknown"),
        "error_description": ERROR_DESCRIPTIONS.get(diagnosis.code),
        "reason": diagnosis.reason,
        "fixes": list(diagnosis.fixes),
        "chain": verdict.chain,
        "client_certificate": verdict.client_certificate,
        "handshake": _handshake_json(verdict.result),
        "notes": list(verdict.notes),
    }
