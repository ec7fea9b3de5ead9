"""deploy/: promtool accepts the scrape config, the alert rules and their unit tests, and
bridged's own /metrics output; the rules, the dashboard and docs/metrics.md use only
metric names bridged exports (and the dashboard's queries are valid PromQL)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor

from bridged.config import parse_config
from bridged.core.link_readings import LinkReadings, parse_cereg, parse_csq, parse_qeng
from bridged.emulator.basic_commands import ENGINEERING_LINE, SIGNAL_QUALITY_LINE
from bridged.ops.metrics import ATStats, make_registry
from bridged.shell.daemon import Daemon, Readout
from bridged.shell.link_health import LinkHealth

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "bridged-dashboard.json"
DOC = ROOT / "docs" / "metrics.md"
PROMTOOL = shutil.which("promtool")

# CI sets BRIDGED_REQUIRE_PROMTOOL=1 so a missing promtool fails instead of skipping.
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("BRIDGED_REQUIRE_PROMTOOL"),
    reason="promtool not installed (Debian/Ubuntu: apt install prometheus)",
)

CONFIG = """
serial: {device: /dev/null-bridged-test}
ssl: {seclevel: 0}
sockets:
  - {connect_id: 0, listen: "127.0.0.1:17100", remote: "example.com:443"}
  - {connect_id: 5, listen: "127.0.0.1:17105", remote: "example.com:8883", mode: persistent}
"""


def promtool(*args: str, stdin: str | None = None, cwd: Path = PROMETHEUS) -> tuple[int, str]:
    assert PROMTOOL is not None, "promtool not found (Debian/Ubuntu: apt install prometheus)"
    result = subprocess.run(
        [PROMTOOL, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    return result.returncode, (result.stdout + result.stderr).strip()


def full_exposition() -> str:
    """Everything bridged can export, each family with at least one sample."""
    daemon = Daemon(reactor, parse_config(CONFIG, check_files=False))
    stats = ATStats()
    stats.observe_command("AT+QSSLSEND", "ok", 0.61)
    stats.observe_command("AT+CSQ", "timeout", 5.0)
    health = LinkHealth(reactor, daemon.modem, interval=60)
    health.readings = LinkReadings(
        signal=parse_csq([SIGNAL_QUALITY_LINE]),
        registration=parse_cereg(["+CEREG: 0,1"]),
        cell=parse_qeng([ENGINEERING_LINE]),
    )
    readout = Readout(daemon)
    readout.at_stats, readout.link_health = stats, health
    return generate_latest(make_registry(readout)).decode()


def exported_families() -> dict[str, str]:
    """Family name → type, as a scraper sees them (counters without ``_total``)."""
    return {f.name: f.type for f in text_string_to_metric_families(full_exposition())}


def exported_series_names() -> set[str]:
    names = set()
    for family in text_string_to_metric_families(full_exposition()):
        names |= {sample.name for sample in family.samples}
    return names


METRIC_NAME = re.compile(r"\bbridged_[a-z0-9_]+")


def names_in(text: str) -> set[str]:
    return set(METRIC_NAME.findall(text))


def dashboard_targets() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    targets = []
    for panel in dashboard["panels"]:
        targets += panel.get("targets", [])
    return targets


def grafana_to_promql(expr: str) -> str:
    """Replace the dashboard's template variables with what Grafana would put there."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace('"$instance"', '".*"')
        .replace('"$connect_id"', '".*"')
    )


# --------------------------------------------------------------------------- promtool


@needs_promtool
def test_alert_rules_pass_promtool_check() -> None:
    code, output = promtool("check", "rules", "bridged.rules.yml")
    assert code == 0, output
    assert "SUCCESS" in output


@needs_promtool
def test_alert_rules_unit_tests_pass() -> None:
    code, output = promtool("test", "rules", "bridged.rules.test.yml")
    assert code == 0, output


@needs_promtool
def test_scrape_config_example_passes_promtool_check() -> None:
    code, output = promtool("check", "config", "prometheus.yml")
    assert code == 0, output


@needs_promtool
def test_metrics_output_passes_promtool_check_metrics() -> None:
    code, output = promtool("check", "metrics", stdin=full_exposition())
    assert (code, output) == (0, "")


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool has no expression checker; recording rules made of the queries do it."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(t["expr"])}
        for i, t in enumerate(dashboard_targets())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    code, output = promtool("check", "rules", str(path))
    assert code == 0, output


@needs_promtool
def test_queries_in_the_docs_are_valid_promql(tmp_path: Path) -> None:
    queries = []
    for block in re.findall(r"```promql\n(.*?)```", DOC.read_text(), re.S):
        current: list[str] = []
        for line in [*block.splitlines(), ""]:
            if line.strip() and not line.startswith("#"):
                current.append(line.strip())
            elif current:
                queries.append(" ".join(current))
                current = []
    assert queries
    rules = [{"record": f"doc:query_{i}", "expr": q} for i, q in enumerate(queries)]
    path = tmp_path / "doc.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "doc", "rules": rules}]}))
    code, output = promtool("check", "rules", str(path))
    assert code == 0, output
    assert names_in(" ".join(queries)) - exported_series_names() == set()


# --------------------------------------------------------------------------- names


def test_every_issue_metric_family_is_exported() -> None:
    families = exported_families()
    contract = {
        "bridged_build_info": "gauge",
        "bridged_serial_up": "gauge",
        "bridged_serial_reopens": "counter",
        "bridged_module_ready": "gauge",
        "bridged_module_restarts": "counter",
        "bridged_at_commands": "counter",
        "bridged_at_command_duration_seconds": "histogram",
        "bridged_at_timeouts": "counter",
        "bridged_socket_state": "gauge",
        "bridged_socket_up": "gauge",
        "bridged_socket_opens": "counter",
        "bridged_socket_remote_closes": "counter",
        "bridged_socket_tx_bytes": "counter",
        "bridged_socket_rx_bytes": "counter",
        "bridged_serial_bytes": "counter",
        "bridged_socket_queue_bytes": "gauge",
        "bridged_socket_clients": "gauge",
        "bridged_client_connections": "counter",
        "bridged_urcs": "counter",
        "bridged_protocol_errors": "counter",
        "bridged_socket_rx_dropped_bytes": "counter",
        "bridged_signal_rssi_dbm": "gauge",
        "bridged_signal_rsrp_dbm": "gauge",
        "bridged_signal_rsrq_db": "gauge",
        "bridged_signal_sinr_db": "gauge",
        "bridged_signal_ecl": "gauge",
        "bridged_network_registered": "gauge",
        "bridged_network_registration_status": "gauge",
    }
    assert {name: families.get(name) for name in contract} == contract


def test_alert_rules_use_only_exported_metrics() -> None:
    series = exported_series_names()
    rules = yaml.safe_load((PROMETHEUS / "bridged.rules.yml").read_text())
    used: set[str] = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            used |= names_in(rule["expr"])
            used |= names_in(json.dumps(rule.get("annotations", {})))
    assert used, "no bridged metric in the rules?"
    assert used - series == set()


def test_dashboard_uses_only_exported_metrics() -> None:
    series = exported_series_names()
    dashboard = DASHBOARD.read_text()
    used = names_in(dashboard)
    assert used - series == set()
    # ... and shows every socket and link family somewhere.
    for wanted in (
        "bridged_socket_state",
        "bridged_socket_tx_bytes_total",
        "bridged_socket_rx_bytes_total",
        "bridged_signal_rsrp_dbm",
        "bridged_at_command_duration_seconds_bucket",
        "bridged_socket_opens_total",
    ):
        assert wanted in used


def test_dashboard_structure() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "instance", "connect_id"}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel.get("description"), f"{panel['title']} has no description"
    for target in dashboard_targets():
        assert 'instance=~"$instance"' in target["expr"], target["expr"]


def test_docs_describe_every_exported_family_and_panel() -> None:
    doc = DOC.read_text()
    for family, kind in exported_families().items():
        name = f"{family}_total" if kind == "counter" else family
        assert f"`{name}" in doc, f"docs/metrics.md does not describe {name}"
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        assert panel["title"] in doc, f"docs/metrics.md does not describe panel {panel['title']!r}"
