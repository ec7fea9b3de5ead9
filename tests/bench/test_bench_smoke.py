"""The benchmark suite runs and prints its table (CI). Its numbers are not checked here:
on a shared CI machine they say more about the neighbours than about bridged."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bench.rig import REPO

SCENARIO_ROWS = ("| P1 ", "| P2 ", "| P3 ", "| P4 ", "| P5 ", "| P6 ", "| F  ")
PEER_MEASURES = ("CPU per MB, download", "CPU per MB, bulk upload", "RSS after start")
#: Emulator counters that mean bytes were lost on the line (tests/bench/emulator_proc.py).
LINE_LOSSES = ("early_dropped_bytes", "output_dropped_bytes", "data_mode_timeouts")
LOG_TAIL = 12  # lines of each log of a suspect rig
ERROR_LINE = re.compile(r"Traceback|^\S+ (error|critical) +\[|#(error|critical)\]", re.MULTILINE)


def diagnosis(workdir: Path, stdout: str, stderr: str) -> str:
    """What a failed smoke run needs to be understood without rerunning it: the whole
    table with every row's notes (stdout), the end of the progress log, and for each rig
    that lost bytes on the line or logged an error, plus the last rigs that ran, the
    emulator's loss counters and the tail of its logs."""
    rigs = sorted((d for d in workdir.iterdir() if d.is_dir() and d.name != "pki"), key=_mtime)
    suspects = [d for d in rigs if _losses(d) or _errors(d)] + rigs[-3:]
    parts = [stdout, "--- progress (stderr, end) ---", stderr[-3000:]]
    for rig in dict.fromkeys(suspects):  # once each, in order
        parts.append(f"--- {rig} --- emulator losses: {_losses(rig) or 'none'}")
        for log in sorted(rig.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL:]
            parts += [f"{log.name}:", *(f"  {line}" for line in lines)]
    return "\n".join(parts)


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def _losses(rig: Path) -> dict[str, int]:
    try:
        stats = json.loads((rig / "emulator-stats.json").read_text())
    except (OSError, ValueError):
        return {"emulator-stats.json": 0}  # the emulator did not get to write it
    return {key: stats[key] for key in LINE_LOSSES if stats.get(key)}


def _errors(rig: Path) -> bool:
    """A traceback, or a line logged at error level (bridged's format or Twisted's)."""
    return any(ERROR_LINE.search(log.read_text(errors="replace")) for log in rig.glob("*.log"))


@pytest.mark.bench  # 1.5 min: its own CI step, so the default suite stays short
def test_smoke_run_prints_the_table(tmp_path: Path) -> None:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--smoke", "--workdir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - start
    print(done.stdout)
    print(done.stderr[-3000:], file=sys.stderr)
    why = diagnosis(tmp_path, done.stdout, done.stderr)
    assert done.returncode == 0, why
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| id "))
    for column in ("payload B/s", "ceiling B/s", "ratio", "latency", "shares", "CPU s/MB"):
        assert column in header, why
    for row in SCENARIO_ROWS:
        assert any(line.startswith(row) for line in lines), f"no {row.strip()} row\n{why}"
    # The peer ran beside bridged, and its bytes were checked: all three rows intact.
    assert any(line.startswith("| F  | peer: ") for line in lines), why
    intact = next((line for line in lines if line.startswith("| rows with every byte")), "")
    assert [cell.strip() for cell in intact.split("|")][3:4] == ["3"], f"{intact}\n{why}"
    for measure in PEER_MEASURES:
        assert any(line.startswith(f"| {measure}") for line in lines), f"no {measure}\n{why}"
    # Gateway mode ran under a CPU quota, or says why it could not.
    gateway = [line for line in lines if line.startswith("| G  ")]
    skipped = [line for line in lines if line.startswith("G (gateway mode") and "skipped:" in line]
    assert len(gateway) == 4 or skipped, f"no G rows and no 'skipped: why'\n{why}"
    print(f"smoke run took {elapsed:.0f} s")


def test_codec_benchmark_prints_rates() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.codec", "--seconds", "0.05"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| hex", "| text"))]
    assert len(rows) == 6
