"""A CPU quota for one process, as a small gateway would give it: a cgroup of its own.

cgroup v2 (``cpu.max``) where the cpu controller is enabled in a writable unified
hierarchy, else cgroup v1 (``cpu.cfs_quota_us``). :func:`unavailable` says why neither
works here (not root, no cpu controller, read-only), so a run can print "skipped: why".
"""

from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path

PERIOD_US = 100_000
_V2_ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
_V1_ROOTS = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpu,cpuacct"))


def _v2_root() -> Path | None:
    for root in _V2_ROOTS:
        controllers = root / "cgroup.controllers"
        with contextlib.suppress(OSError):
            if "cpu" in controllers.read_text().split():
                return root
    return None


def _v1_root() -> Path | None:
    for root in _V1_ROOTS:
        if (root / "cpu.cfs_quota_us").exists():
            return root
    return None


class CpuQuota:
    def __init__(self, name: str) -> None:
        self.name = name
        self.path: Path | None = None
        self.version = 0

    def create(self, share: float) -> None:
        """A new cgroup limited to ``share`` of one core; OSError where not allowed."""
        quota = max(1000, round(share * PERIOD_US))
        root = _v2_root()
        if root is not None:
            with contextlib.suppress(OSError):
                (root / "cgroup.subtree_control").write_text("+cpu")
            path = root / self.name
            path.mkdir()
            try:
                (path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            except OSError:
                path.rmdir()
            else:
                self.path, self.version = path, 2
                return
        root = _v1_root()
        if root is None:
            raise OSError("no cgroup with a cpu controller (neither v2 cpu.max nor v1)")
        path = root / self.name
        path.mkdir()
        try:
            (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (path / "cpu.cfs_quota_us").write_text(str(quota))
        except OSError:
            path.rmdir()
            raise
        self.path, self.version = path, 1

    @property
    def knob(self) -> str:
        return "cpu.max" if self.version == 2 else "cpu.cfs_quota_us"

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` run by a shell that first moves itself into the cgroup, then execs:
        the bridge is the cgroup's only process from its first instruction."""
        assert self.path is not None
        procs = shlex.quote(str(self.path / "cgroup.procs"))
        return ["/bin/sh", "-c", f"echo $$ > {procs} && exec {shlex.join(command)}"]

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.rmdir()
            self.path = None


def unavailable() -> str | None:
    """Why no CPU quota can be set here, or None if one can."""
    if os.geteuid() != 0:
        return "cgroups need root"
    probe = CpuQuota(f"bench-probe-{os.getpid()}")
    try:
        probe.create(0.05)
    except OSError as e:
        return f"neither cgroup v2 cpu.max nor v1 cpu.cfs_quota_us is writable: {e}"
    probe.remove()
    return None
