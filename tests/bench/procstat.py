"""A process's CPU time and memory from /proc (Linux), without psutil."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    user: float  # seconds
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system


def cpu(pid: int) -> CpuSample:
    """User and system CPU seconds used by ``pid`` so far (10 ms resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces: fields are counted after its closing ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    return CpuSample(int(fields[11]) / _TICKS, int(fields[12]) / _TICKS)


def memory(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak resident set) and VmSize of ``pid``, in bytes."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "VmSize"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (``clear_refs`` 5); False where not allowed."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
        return True
    return False


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return one, five, fifteen
