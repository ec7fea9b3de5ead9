"""``bridged selftest`` against the emulator set to each behaviour it can show.

The emulator runs in the reactor on a real pty; the self-test runs in a thread with its
own synchronous driver, against real TLS echo servers. Each row of :data:`SETTINGS`
sets the emulator's module profile one way, and the self-test must report exactly that
(settings x findings), and write a profile file that says it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from bridged.config.module_profile_file import load_profile_file
from bridged.core.at_codec import OpenResult
from bridged.core.module_profile import BC26, BC660K, BC950K, ModuleProfile
from bridged.emulator import FAST, Emulator
from bridged.tools.replay import replay_files
from bridged.tools.selftest.findings import EchoServer, Selftest, SelftestOptions
from bridged.tools.selftest.line import port_holders
from bridged.tools.selftest.run import run_on_device
from tests.support.pki import Pki, make_pki
from tests.support.tls_servers import RunningServer, free_port, start_socat_echo_server
from tests.support.waiting import wait_until

_SELFTEST = [sys.executable, "-m", "bridged", "selftest"]
#: Short steps keep each run to a few seconds; 0.3 and 0.05 are both on it.
STEPS = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.0)

#: A module unlike today's BC26 in every knob the self-test can see.
OTHER = dataclasses.replace(
    BC26,
    open_results={"wrong_ca": -4, "client_cert_missing": -3, "port_closed": -9, "dns_failure": -7},
    max_unconfirmed_sends=2,
    recv_quoted=False,
    prompt_delay=0.3,
    ssl_versions=(1, 2, 3, 4),
)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One emulator configuration and what the self-test must find."""

    module: ModuleProfile
    #: The emulator's data-mode entry (its timing override; None: the module's).
    entry_delay: float | None
    findings: dict[str, Any]


SETTINGS = {
    "bc26-as-today": Setting(
        BC26,
        0.05,
        {
            "open.dns_failure": -2,
            "open.port_closed": -2,
            "open.wrong_ca": -3,
            "open.client_cert_missing": -5,
            "open.success": 0,
            "pipelining": "refused",
            "recv.hex.quoted": True,
            "recv.text.quoted": True,
            "recv.hex.largest": 650,
            "recv.text.largest": 1300,
            "prompt_wait.shortest_ms": 50,
            "ssl_versions": [0, 1, 2, 3, 4],
        },
    ),
    "other-module": Setting(
        OTHER,
        None,
        {
            "open.dns_failure": -7,
            "open.port_closed": -9,
            "open.wrong_ca": -4,
            "open.client_cert_missing": -3,
            "open.success": 0,
            "pipelining": "accepted",
            "recv.hex.quoted": False,
            "recv.text.quoted": False,
            "recv.hex.largest": 650,
            "recv.text.largest": 1300,
            "prompt_wait.shortest_ms": 300,
            "ssl_versions": [1, 2, 3, 4],
        },
    ),
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def echo_server(pki: Pki, tmp_path: Path) -> Iterator[RunningServer]:
    with start_socat_echo_server(pki, log_path=tmp_path / "socat.log") as server:
        yield server


def _observed(t: Selftest) -> dict[str, Any]:
    by_key = {f.key: f.value for f in t.findings}
    return {
        **{k: v for k, v in by_key.items() if k.startswith("open.")},
        "pipelining": by_key["pipelining"],
        "recv.hex.quoted": by_key["recv.hex"]["quoted"],
        "recv.text.quoted": by_key["recv.text"]["quoted"],
        "recv.hex.largest": by_key["recv.hex"]["largest"],
        "recv.text.largest": by_key["recv.text"]["largest"],
        "prompt_wait.shortest_ms": by_key["prompt_wait"]["shortest_ms"],
        "ssl_versions": by_key["qsslcfg.ranges"]["ssl_versions"],
    }


@pytest.mark.parametrize("name", list(SETTINGS))
@pytest_twisted.ensureDeferred
async def test_selftest_reports_what_the_emulator_was_set_to_do(
    name: str, pki: Pki, echo_server: RunningServer, tmp_path: Path
) -> None:
    setting = SETTINGS[name]
    # rtt 0.1 s: the first send's result is still out when the second send goes.
    timing = dataclasses.replace(FAST, prompt_max_delay=setting.entry_delay, rtt=0.1)
    emulator = Emulator(tmp_path / "tty", profile=timing, module_profile=setting.module, seed=3)
    emulator.start()
    emulator.use_max_prompt_delay()  # data mode begins exactly at the longest delay
    try:
        await emulator.when_ready()
        echo = EchoServer(
            "127.0.0.1", echo_server.port, pki.ca_cert, pki.client_cert, pki.client_key, free_port()
        )
        options = SelftestOptions(echo=echo, sends_per_step=3, prompt_steps=STEPS)
        out = tmp_path / "out"
        out.mkdir()
        t, _ = await deferToThread(run_on_device, str(emulator.device_path), 115200, options, out)
    finally:
        emulator.stop()

    assert _observed(t) == setting.findings
    # The profile file says the same, and loads.
    written = load_profile_file(out / "module-profile.yaml")
    expected = setting.module
    assert dict(written.open_results) == dict(expected.open_results)
    assert written.max_unconfirmed_sends == expected.max_unconfirmed_sends
    assert written.recv_quoted == expected.recv_quoted
    assert written.ssl_versions == expected.ssl_versions
    # One step of margin above the shortest lossless wait.
    assert (
        written.prompt_delay
        == STEPS[STEPS.index(setting.findings["prompt_wait.shortest_ms"] / 1000) - 1]
    )
    # A transcript of the whole run, uploads redacted.
    transcript = (out / "transcript.trace").read_text()
    assert "[redacted " in transcript and "BEGIN CERTIFICATE" not in transcript
    assert "PRIVATE KEY" not in transcript


@pytest_twisted.ensureDeferred
async def test_selftest_refuses_a_port_in_use_naming_the_holder(tmp_path: Path) -> None:
    emulator = Emulator(tmp_path / "tty", profile=FAST)
    emulator.start()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time; f = open({str(emulator.device_path)!r}, 'rb'); time.sleep(60)",
        ]
    )
    try:
        await wait_until(lambda: port_holders(str(emulator.device_path)), timeout=10)
        result = await deferToThread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "bridged",
                "selftest",
                "--device",
                str(emulator.device_path),
                "--out",
                str(tmp_path / "o"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.kill()
        holder.wait()
        emulator.stop()
    assert result.returncode == 3
    assert f"pid {holder.pid}" in result.stderr and "time.sleep(60)" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("module", "model_args"),
    [(BC26, []), (BC950K, ["--model", "bc950k"])],
    ids=["bc26-auto", "bc950k-model"],
)
@pytest_twisted.ensureDeferred
async def test_selftest_command_without_echo_reports_json(
    module: ModuleProfile, model_args: list[str], tmp_path: Path
) -> None:
    """The command line end to end, no echo server: what it can test, and says what not;
    on a BC950K-GL (``--model``) with its contextID 0 and one socket."""
    emulator = Emulator(tmp_path / "tty", profile=FAST, module_profile=module)
    emulator.start()
    try:
        await emulator.when_ready()
        result = await deferToThread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "bridged",
                "selftest",
                "--device",
                str(emulator.device_path),
                "--out",
                str(tmp_path / "o"),
                "--json",
                *model_args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        emulator.stop()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    verdicts = {f["check"]: f["verdict"] for f in report["findings"]}
    assert verdicts["echo"] == verdicts["firmware"] == verdicts["upload"] == "as assumed"
    assert verdicts["qsslcfg.read"] == verdicts["qsslcfg.ranges"] == "as assumed"
    assert verdicts["malformed"] == verdicts["open.dns_failure"] == "as assumed"
    assert verdicts["open.wrong_ca"] == verdicts["pipelining"] == "not tested"
    assert report["differs"] == [] and report["base"] == module.name
    written = load_profile_file(tmp_path / "o" / "module-profile.yaml")
    assert (written.context_id, written.open_results) == (module.context_id, module.open_results)


@pytest_twisted.ensureDeferred
async def test_selftest_of_a_bc660k_uses_its_context_and_its_one_socket(
    pki: Pki, echo_server: RunningServer, tmp_path: Path
) -> None:
    """``--model auto``: ATI names a BC660K-GL, and every check then speaks contextID 0 on
    connectID 0 with the BC660K's limits; what it finds is what its profile says, and the
    transcript replays with those ids."""
    timing = dataclasses.replace(FAST, prompt_max_delay=0.05, rtt=0.1)
    emulator = Emulator(tmp_path / "tty", profile=timing, module_profile=BC660K, seed=3)
    emulator.start()
    emulator.use_max_prompt_delay()
    try:
        await emulator.when_ready()
        echo = EchoServer(
            "127.0.0.1", echo_server.port, pki.ca_cert, pki.client_cert, pki.client_key, free_port()
        )
        options = SelftestOptions(echo=echo, sends_per_step=3, prompt_steps=STEPS)
        out = tmp_path / "out"
        out.mkdir()
        t, _ = await deferToThread(run_on_device, str(emulator.device_path), 115200, options, out)
    finally:
        emulator.stop()

    verdicts = {f.key: f.verdict.value for f in t.findings}
    assert t.base is BC660K
    assert [k for k, v in verdicts.items() if v != "as assumed"] == []
    observed = _observed(t)
    assert observed["open.success"] == 0 and observed["pipelining"] == "refused"
    assert observed["ssl_versions"] == [1, 2, 3, 4]  # no SSL 3.0 on a BC660K
    # Its largest send (1024 bytes) came back in URCs a BC26 could not have sent.
    assert observed["recv.hex.largest"] == observed["recv.text.largest"] == 1024
    assert load_profile_file(out / "module-profile.yaml").context_id == 0
    replay = replay_files([out / "transcript.trace"])
    assert replay.protocol_errors == 0
    assert any(isinstance(e, OpenResult) and e.connect_id == 0 for e in replay.events)
