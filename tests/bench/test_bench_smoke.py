"""The benchmark suite runs and prints its table (CI). Its numbers are not checked here:
on a shared CI machine they say more about the neighbours than about bridged."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bench.rig import REPO

SCENARIO_ROWS = ("| P1 ", "| P2 ", "| P3 ", "| P4 ", "| P5 ", "| P6 ", "| F  ")
PEER_MEASURES = ("CPU per MB, download", "CPU per MB, bulk upload", "RSS after start")


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
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| id "))
    for column in ("payload B/s", "ceiling B/s", "ratio", "latency", "shares", "CPU s/MB"):
        assert column in header
    for row in SCENARIO_ROWS:
        assert any(line.startswith(row) for line in lines), f"no {row.strip()} row"
    # The peer ran beside bridged, and its bytes were checked: all three rows intact.
    assert any(line.startswith("| F  | peer: ") for line in lines)
    intact = next(line for line in lines if line.startswith("| rows with every byte"))
    assert [cell.strip() for cell in intact.split("|")][3] == "3", intact
    for measure in PEER_MEASURES:
        assert any(line.startswith(f"| {measure}") for line in lines), f"no {measure} row"
    # Gateway mode ran under a CPU quota, or says why it could not.
    gateway = [line for line in lines if line.startswith("| G  ")]
    skipped = [line for line in lines if line.startswith("G (gateway mode") and "skipped:" in line]
    assert len(gateway) == 4 or skipped, "no G rows and no 'skipped: why'"
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
