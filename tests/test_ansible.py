"""The Ansible role and example playbook in deploy/ansible.

* ``ansible-playbook --syntax-check`` on the example playbook and inventory;
* ``ansible-lint --offline`` (production profile) on the playbook and role;
* the role's configuration tasks run for real on this machine, into a temporary
  directory: certificates and keys placed with their modes, the configuration rendered
  from a mapping and accepted by the real ``bridged check-config`` (the role's ``validate``
  step), a broken configuration refused, a second run changing nothing;
* the udev template and the derived service names rendered by Ansible itself.

ansible-core and ansible-lint are pip packages (``pip install ansible-core ansible-lint``);
without them these tests are skipped on a developer's machine and fail under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.pki import Pki, make_pki

ROOT = Path(__file__).resolve().parent.parent
ANSIBLE_DIR = ROOT / "deploy" / "ansible"
ROLE_DIR = ANSIBLE_DIR / "roles" / "bridged"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (pip install ansible-core ansible-lint)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def ansible_env(tmp_path: Path) -> dict[str, str]:
    """Keep Ansible's state out of $HOME; no colours, no cows, no retry files."""
    home = tmp_path / "ansible-home"
    home.mkdir()
    env = dict(os.environ)
    env.update(
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_REMOTE_TEMP=str(home / "remote-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOWS="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_ROLES_PATH=str(ANSIBLE_DIR / "roles"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        NO_COLOR="1",
        ANSIBLE_PIPELINING="1",
    )
    return env


def run(
    cmd: list[str], env: dict[str, str], cwd: Path = ANSIBLE_DIR
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


# ---------------------------------------------------------------------- static checks


def test_playbook_syntax_check(ansible_env: dict[str, str]) -> None:
    playbook = require("ansible-playbook")
    result = run(
        [playbook, "-i", "inventory.example", "playbook.yml", "--syntax-check"], ansible_env
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "playbook: playbook.yml" in result.stdout
    # The example inventory must parse and define the group the playbook targets.
    for problem in ("Unable to parse", "Could not match supplied host pattern", "ERROR"):
        assert problem not in output, output


def test_example_inventory_defines_the_gateways(ansible_env: dict[str, str]) -> None:
    inventory = require("ansible-inventory")
    result = run([inventory, "-i", "inventory.example", "--list"], ansible_env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["bridged_gateways"]["hosts"] == ["gw-0001.example.net", "gw-0002.example.net"]
    host = data["_meta"]["hostvars"]["gw-0002.example.net"]
    assert host["bridged_udev_rules"] == [{"symlink": "bc26", "kernel": "ttyS1"}]
    assert host["bridged_config"]["serial"]["device"] == "/dev/bc26"


def test_ansible_lint_production_profile(ansible_env: dict[str, str]) -> None:
    lint = require("ansible-lint")
    # --offline: no Galaxy installs and no version check, so it runs without a network.
    result = run(
        [lint, "--offline", "--profile", "production", "playbook.yml", "roles/bridged"],
        ansible_env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failure(s), 0 warning(s)" in result.stdout + result.stderr


# ---------------------------------------------------------------------- the role, run


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def fake_venv(directory: Path) -> Path:
    """A venv stand-in whose bin/bridged is this checkout's real CLI."""
    bindir = directory / "venv" / "bin"
    bindir.mkdir(parents=True)
    script = bindir / "bridged"
    script.write_text(f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m bridged "$@"\n')
    script.chmod(0o755)
    return directory / "venv"


PLAYBOOK = """\
- name: Exercise the bridged role's configuration tasks
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Configuration and certificates, as the role does them
      ansible.builtin.include_role:
        name: bridged
        tasks_from: configure
        public: true

    - name: Record the role's derived values
      ansible.builtin.copy:
        content: "{{ {'services': bridged_services, 'dropin': bridged_unit_dropin_dir} | to_json }}"
        dest: "{{ out_dir }}/derived.json"
        mode: "0644"

    - name: Render the udev rule
      ansible.builtin.template:
        src: "{{ role_dir }}/templates/70-bridged.rules.j2"
        dest: "{{ out_dir }}/70-bridged.rules"
        mode: "0644"

    - name: Render the drop-in
      ansible.builtin.template:
        src: "{{ role_dir }}/templates/site.conf.j2"
        dest: "{{ out_dir }}/site.conf"
        mode: "0644"
"""


def base_vars(tmp_path: Path, pki: Pki) -> dict[str, Any]:
    etc = tmp_path / "etc"
    out = tmp_path / "out"
    out.mkdir()
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    return {
        "out_dir": str(out),
        "role_dir": str(ROLE_DIR),
        "bridged_config_dir": str(etc),
        "bridged_venv": str(fake_venv(tmp_path)),
        "bridged_user": user,
        "bridged_group": "root",
        "bridged_state": "stopped",  # no restart handler: nothing runs systemd here
        "bridged_certificates": [
            {"dest": "ca.pem", "src": str(pki.ca_cert)},
            {"dest": "client.pem", "src": str(pki.client_cert)},
            {"dest": "keys/client.key", "content": pki.client_key.read_text(), "private": True},
        ],
        "bridged_config": {
            "serial": {"device": "/dev/bc26", "baudrate": 115200},
            "ssl": {
                "seclevel": 2,
                "cacert": str(etc / "ca.pem"),
                "clientcert": str(etc / "client.pem"),
                "clientkey": str(etc / "keys" / "client.key"),
            },
            "sockets": [
                {
                    "connect_id": 0,
                    "listen": "127.0.0.1:1883",
                    "remote": "mqtt.example.com:8883",
                    "mode": "persistent",
                },
                {
                    "connect_id": 1,
                    "listen": "127.0.0.1:8443",
                    "remote": "api.example.com:443",
                    "mode": "on-demand",
                    "ssl": {"seclevel": 1},
                },
            ],
            "metrics": {"enabled": True, "listen": "127.0.0.1:9464"},
            "control": {"socket": "/run/bridged/control.sock", "mode": "0660"},
        },
        "bridged_udev_rules": [
            {"symlink": "bc26", "vendor": "10c4", "product": "ea60", "serial": "0001"},
            {"symlink": "bc20", "vendor": "2c7c", "product": "0296", "interface": "02"},
            {"symlink": "bc26-uart", "kernel": "ttyS1"},
        ],
        "bridged_service_overrides": ["IPAddressAllow=192.168.10.0/24"],
    }


def run_role(
    tmp_path: Path, env: dict[str, str], variables: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "exercise.yml"
    playbook.write_text(PLAYBOOK)
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    return run(
        [require("ansible-playbook"), "-i", "localhost,", str(playbook), "-e", f"@{extra}"],
        env,
        cwd=tmp_path,
    )


def recap(output: str) -> dict[str, int]:
    match = re.search(r"localhost\s*:\s*(.*)", output.split("PLAY RECAP", 1)[-1])
    assert match, output
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the role sets owner root on what it writes; run as root"
)


@needs_root
def test_role_places_certificates_and_a_checked_config_once(
    tmp_path: Path, pki: Pki, ansible_env: dict[str, str]
) -> None:
    variables = base_vars(tmp_path, pki)
    result = run_role(tmp_path, ansible_env, variables)
    assert result.returncode == 0, result.stdout + result.stderr
    etc = Path(variables["bridged_config_dir"])

    key = etc / "keys" / "client.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text() == pki.client_key.read_text()
    assert stat.S_IMODE((etc / "ca.pem").stat().st_mode) == 0o644
    assert (etc / "client.pem").read_bytes() == pki.client_cert.read_bytes()

    config = etc / "bridged.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert yaml.safe_load(config.read_text()) == variables["bridged_config"]
    assert "'0660'" in config.read_text()  # the octal mode stays a string
    check = subprocess.run(
        [str(Path(variables["bridged_venv"]) / "bin" / "bridged"), "check-config", "-c", config],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr

    out = Path(variables["out_dir"])
    derived = json.loads((out / "derived.json").read_text())
    assert derived == {
        "services": ["bridged.service"],
        "dropin": "/etc/systemd/system/bridged.service.d",
    }
    rules = (out / "70-bridged.rules").read_text().splitlines()
    rules = [line for line in rules if line and not line.startswith("#")]
    assert rules == [
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="10c4", ATTRS{idProduct}=="ea60", '
        'ATTRS{serial}=="0001", SYMLINK+="bc26", GROUP="dialout", MODE="0660", '
        'ENV{ID_MM_DEVICE_IGNORE}="1", TAG+="systemd"',
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="2c7c", ATTRS{idProduct}=="0296", '
        'ATTRS{bInterfaceNumber}=="02", SYMLINK+="bc20", GROUP="dialout", MODE="0660", '
        'ENV{ID_MM_DEVICE_IGNORE}="1", TAG+="systemd"',
        'SUBSYSTEM=="tty", KERNEL=="ttyS1", SYMLINK+="bc26-uart", GROUP="dialout", '
        'MODE="0660", ENV{ID_MM_DEVICE_IGNORE}="1", TAG+="systemd"',
    ]
    dropin = (out / "site.conf").read_text()
    assert "[Service]\nIPAddressAllow=192.168.10.0/24\n" in dropin

    # Idempotent: the same variables again change nothing, so no handler fires.
    again = run_role(tmp_path, ansible_env, variables)
    assert again.returncode == 0, again.stdout + again.stderr
    counts = recap(again.stdout)
    assert counts["changed"] == 0, again.stdout
    assert counts["failed"] == 0

    # A configuration that `bridged check-config` rejects never replaces the working one.
    working = config.read_text()
    variables["bridged_config"]["ssl"]["clientkey"] = str(etc / "missing.key")
    refused = run_role(tmp_path, ansible_env, variables)
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "failed to validate" in output, output
    assert "missing.key" in output, output
    assert config.read_text() == working


@needs_root
def test_role_writes_one_config_per_instance(
    tmp_path: Path, pki: Pki, ansible_env: dict[str, str]
) -> None:
    variables = base_vars(tmp_path, pki)
    single = variables.pop("bridged_config")
    instances = []
    for n, name in enumerate(["modem1", "modem2"]):
        config = json.loads(json.dumps(single))
        config["serial"]["device"] = f"/dev/bc26-{n}"
        config["sockets"] = [
            {"connect_id": 0, "listen": f"127.0.0.1:{1883 + n}", "remote": "mqtt.example.com:8883"}
        ]
        config["metrics"]["listen"] = f"127.0.0.1:{9464 + n}"
        config["control"]["socket"] = f"/run/bridged/{name}/control.sock"
        instances.append({"name": name, "config": config})
    variables["bridged_instances"] = instances
    result = run_role(tmp_path, ansible_env, variables)
    assert result.returncode == 0, result.stdout + result.stderr
    etc = Path(variables["bridged_config_dir"])
    assert not (etc / "bridged.yaml").exists()
    for instance in instances:
        written = yaml.safe_load((etc / f"{instance['name']}.yaml").read_text())
        assert written == instance["config"]
    derived = json.loads((Path(variables["out_dir"]) / "derived.json").read_text())
    assert derived == {
        "services": ["bridged@modem1.service", "bridged@modem2.service"],
        "dropin": "/etc/systemd/system/bridged@.service.d",
    }


def test_role_uses_the_repository_unit_files() -> None:
    """The role installs systemd/*.service as they are: no second copy to drift."""
    defaults = yaml.safe_load((ROLE_DIR / "defaults" / "main.yml").read_text())
    src = defaults["bridged_unit_src_dir"].replace("{{ role_path }}", str(ROLE_DIR))
    for unit in ("bridged.service", "bridged@.service"):
        assert (Path(src) / unit).resolve() == ROOT / "systemd" / unit
    service_tasks = (ROLE_DIR / "tasks" / "service.yml").read_text()
    assert "bridged_unit_src_dir" in service_tasks
    assert not list(ROLE_DIR.rglob("*.service"))


def test_udev_examples_cover_the_usual_adapters() -> None:
    text = (ROOT / "deploy" / "udev" / "70-bridged.rules").read_text()
    for vendor, product in [("10c4", "ea60"), ("1a86", "7523"), ("0403", "6001"), ("2c7c", None)]:
        assert f'ATTRS{{idVendor}}=="{vendor}"' in text
        if product:
            assert f'ATTRS{{idProduct}}=="{product}"' in text
    assert 'KERNEL=="ttyS1"' in text and 'KERNEL=="ttyAMA0"' in text
    active = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert active == [], "the examples are commented out: a gateway enables the one it needs"
    examples = [line for line in text.splitlines() if line.startswith("#SUBSYSTEM==")]
    assert len(examples) == 6
    for rule in examples:  # ModemManager keeps off every one of them
        assert 'ENV{ID_MM_DEVICE_IGNORE}="1"' in rule, rule
