"""The soak in CI: ``python -m pytest -m soak`` (2.5 minutes of faults; SOAK_MINUTES and
SOAK_SEED override). The full run is ``python -m tests.soak --minutes 10``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import pytest_twisted

from tests.soak.soak import SoakOptions, run_soak


@pytest.mark.soak
@pytest_twisted.ensureDeferred
async def test_soak_under_faults(tmp_path: Path) -> None:
    options = SoakOptions(minutes=float(os.environ.get("SOAK_MINUTES", "2.5")), workdir=tmp_path)
    if "SOAK_SEED" in os.environ:
        options.seed = int(os.environ["SOAK_SEED"])
    report = await run_soak(options, out=sys.__stdout__)
    summary = report.format()
    print(summary, file=sys.__stdout__, flush=True)
    assert not report.failures, summary
