"""The checks before a connection: echo, firmware, the QSSLCFG read and ranges,
malformed commands, certificate uploads and the provoked open failures."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bridged.core.module_profile import BUILTIN_PROFILES, detect_model
from bridged.tools.selftest.findings import Selftest
from bridged.tools.selftest.script import (
    READ_ALL_SETTINGS,
    UNRESOLVABLE_HOST,
    malformed_commands,
    range_checks,
)
from bridged.tools.selftest.socket_commands import (
    close_socket,
    configure,
    open_socket,
    reset_socket_settings,
    throwaway_ca_pem,
    upload,
)


def check_echo(t: Selftest) -> None:
    first = t.line.command("AT")
    off = t.line.command("ATE0")
    after = t.line.command("AT")
    ok = off.ok and not after.echoed
    t.add(
        "echo",
        "commands are echoed until ATE0, which turns echo off",
        f"echo at start: {'on' if first.echoed else 'off'}; ATE0: {off.outcome}; "
        f"echo after: {'on' if after.echoed else 'off'}",
        ok,
        {"at_start": first.echoed, "ate0": off.outcome, "after_ate0": after.echoed},
    )


def check_firmware(t: Selftest) -> None:
    ati = t.line.command("ATI")
    cgmr = t.line.command("AT+CGMR")
    text = " ".join(ati.lines)
    found = detect_model(text)  # module_profile's one reading of ATI
    detected = found.name if found is not None else None
    wanted = t.options.model
    if wanted != "auto":
        t.base = BUILTIN_PROFILES[wanted]
    elif found is not None:
        t.base = found
    # From here on every command names the base's context and sockets.
    t.line.set_module(t.base)
    known = ", ".join(p.label for p in BUILTIN_PROFILES.values())
    t.add(
        "firmware",
        f"ATI names a Quectel module bridged has a profile for ({known})",
        f"ATI: {' / '.join(ati.lines) or ati.outcome}; AT+CGMR: "
        f"{' / '.join(cgmr.lines) or cgmr.outcome}; profile base {t.base.name}",
        detected is not None,
        {"ati": ati.lines, "cgmr": cgmr.lines if cgmr.ok else None, "model": detected},
    )


def check_settings_read(t: Selftest) -> None:
    r = t.line.command(f"AT+QSSLCFG={t.line.socket_ids(t.sockets.scratch)}")
    names = []
    values: dict[str, str] = {}
    for text in r.lines:
        m = re.match(r'\+QSSLCFG: ?\d+,\d+,"([^"]+)",(.*)$', text)
        if m:
            names.append(m.group(1))
            values[m.group(1)] = m.group(2)
    ok = r.ok and tuple(names) == READ_ALL_SETTINGS
    t.add(
        "qsslcfg.read",
        f"AT+QSSLCFG={t.base.context_id},<id> lists {', '.join(READ_ALL_SETTINGS)}",
        f"{r.outcome}: {', '.join(f'{n}={v}' for n, v in values.items()) or 'no lines'}",
        ok,
        values,
    )


def check_ranges(t: Selftest) -> None:
    results = {}
    wrong = []
    checks = range_checks(t.base)
    scratch = t.line.socket_ids(t.sockets.scratch)
    for name, value, expected in checks:
        accepted = t.line.command(f'AT+QSSLCFG={scratch},"{name}",{value}').ok
        results[f"{name}={value}"] = accepted
        if accepted != expected:
            wrong.append(f"{name}={value} {'accepted' if accepted else 'refused'}")
    versions = [
        int(k.split("=")[1]) for k, ok in results.items() if k.startswith("sslversion") and ok
    ]
    t.learned["ssl_versions"] = tuple(versions)
    t.add(
        "qsslcfg.ranges",
        f"QSSLCFG takes seclevel 0-2, sslversion {_span(t.base.ssl_versions)}, "
        "dataformat 0/1,0/1, timeout 10-300",
        "; ".join(wrong) or f"all {len(checks)} as the note says",
        not wrong,
        {**results, "ssl_versions": versions},
    )
    reset_socket_settings(t.line, t.sockets.scratch)


def check_malformed(t: Selftest) -> None:
    answers = {}
    for command in malformed_commands(t.base):
        r = t.line.command(command, timeout=3.0)
        answers[command] = r.outcome
    bad = [c for c, a in answers.items() if a == "OK" or a == "no answer"]
    t.add(
        "malformed",
        "malformed commands are refused at once (ERROR or +CME ERROR)",
        "; ".join(f"{c} → {a}" for c, a in answers.items()),
        not bad,
        answers,
    )


def check_uploads(t: Selftest) -> None:
    echo = t.options.echo
    files = (
        {"cacert": echo.cacert, "clientcert": echo.clientcert, "clientkey": echo.clientkey}
        if echo
        else {}
    )
    contents = {kind: path.read_bytes() for kind, path in files.items()}
    if not contents:
        contents = {"cacert": throwaway_ca_pem()}
    t.upload_files = contents
    counts = {}
    mismatched = []
    for kind, pem in contents.items():
        counted = upload(t.line, t.sockets.data, kind, pem)
        counts[kind] = {"sent": len(pem), "counted": counted}
        if counted != len(pem):
            mismatched.append(f"{kind}: sent {len(pem)}, module counted {counted}")
    t.add(
        "upload",
        "an upload answers the number of bytes received, the file's size",
        "; ".join(mismatched) or ", ".join(f"{k} {v['sent']} bytes" for k, v in counts.items()),
        not mismatched,
        counts,
    )


def check_opens(t: Selftest) -> None:
    """Provoke each open failure; the profile's code for it is what the module said."""
    echo = t.options.echo
    line, sockets = t.line, t.sockets
    configure(line, sockets.dns_failure, seclevel=0)
    _open_case(t, "dns_failure", sockets.dns_failure, UNRESOLVABLE_HOST, 443)
    if echo is None:
        for situation in ("port_closed", "wrong_ca", "client_cert_missing"):
            t.skip(f"open.{situation}", _open_assumption(t, situation), "needs --echo")
        return
    _open_case(t, "port_closed", sockets.port_closed, echo.host, echo.closed_port)
    configure(line, sockets.wrong_ca, seclevel=1)
    upload(line, sockets.wrong_ca, "cacert", throwaway_ca_pem())
    _open_case(t, "wrong_ca", sockets.wrong_ca, echo.host, echo.port)
    configure(line, sockets.client_cert_missing, seclevel=1)
    upload(line, sockets.client_cert_missing, "cacert", t.upload_files["cacert"])
    _open_case(t, "client_cert_missing", sockets.client_cert_missing, echo.host, echo.port)


def _open_assumption(t: Selftest, situation: str) -> str:
    return f"+QSSLOPEN code {t.base.open_result(situation)} ({t.base.name} profile)"


def _open_case(t: Selftest, situation: str, connect_id: int, host: str, port: int) -> None:
    code = open_socket(t.line, connect_id, host, port)
    assumed = t.base.open_result(situation)
    if code == 0:
        close_socket(t.line, connect_id)
        t.add(
            f"open.{situation}",
            _open_assumption(t, situation),
            "the open succeeded: this failure was not provoked",
            None,
            code,
        )
        return
    if code is not None:
        t.open_results[situation] = code
    t.add(
        f"open.{situation}",
        _open_assumption(t, situation),
        f"+QSSLOPEN code {code}" if code is not None else "no +QSSLOPEN result",
        None if code is None else code == assumed,
        code,
    )


def _span(values: Sequence[int]) -> str:
    """ "0-4" for a run of values, else "1, 3"."""
    if len(values) > 1 and list(values) == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return ", ".join(map(str, values))
