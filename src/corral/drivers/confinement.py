"""What confines a process-driver instance beyond its namespaces: its cgroup (limits, usage,
OOM kills) and its seccomp filter. Held by ProcessDriver, one per state folder.

It decides the launcher's extra settings for a start and reads the kernel's counters
afterwards; it never starts, waits for or signals a process. The cgroup layout is detected
once, at the first start, and said once in the log (what runs unlimited, and why).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from corral.drivers import cgroups, seccomp
from corral.drivers.cgroups import Cgroups
from corral.ports.records import InstanceSpec, Usage

log = logging.getLogger(__name__)
SECCOMP_FD = 4  # the launcher puts the compiled filter on this descriptor for bwrap


@dataclass(frozen=True)
class Confined:
    """How one instance is confined: its groups (empty: no usable layout) and filter."""

    cgroup_version: int = 0
    cgroups: dict[str, str] = field(default_factory=dict)
    seccomp: str | None = None  # path of the compiled filter

    def launcher_config(self) -> dict[str, object]:
        """The launcher's keys: the cgroup.procs files to join, the filter to pass bwrap."""
        return {"cgroups": cgroups.procs_files(self.cgroups), "seccomp": self.seccomp,
                "seccomp_fd": SECCOMP_FD}


class Confinement:
    """Cgroups and seccomp for one driver; `layout` is detected on first use unless given
    (tests give a fake tree's)."""

    def __init__(self, state_dir: Path, *, layout: Cgroups | None = None,
                 use_seccomp: bool = True) -> None:
        self._filters = state_dir / "run" / "seccomp"
        # cgroups are machine-wide: two projects (or environments) may both run "web-1"
        self._owner = hashlib.sha256(os.fsencode(state_dir.resolve())).hexdigest()[:8]
        self._layout = layout
        self._use_seccomp = use_seccomp
        self._lock = threading.Lock()

    @property
    def layout(self) -> Cgroups:
        with self._lock:
            if self._layout is None:
                self._layout = cgroups.prepare(cgroups.detect())
                log.info("process driver: %s", self._layout.describe())
            return self._layout

    def confine(self, spec: InstanceSpec) -> Confined:
        """Make the instance's groups with its limits and find its filter. A limit that
        cannot be enforced (no usable layout) is said in the log, never silently dropped."""
        layout = self.layout
        paths: dict[str, str] = {}
        if layout.is_usable:
            paths = layout.create(self.group_name(spec.id), spec.limits)
        elif not spec.limits.is_empty:
            log.warning("instance %s runs without its limits: %s", spec.id, layout.describe())
        bpf = str(seccomp.filter_path(self._filters, spec.allow_syscalls)) \
            if self._use_seccomp else None
        return Confined(layout.version if paths else 0, paths, bpf)

    def group_name(self, instance_id: str) -> str:
        """The instance's group under `corral/`: its id and its state folder's, so the same
        id in two projects on one machine never shares (or removes) a group."""
        return f"{instance_id}.{self._owner}"

    @staticmethod
    def is_oom_killed(version: int, paths: dict[str, str]) -> bool:
        """Did the OOM killer end a process of the instance's group?"""
        return bool(paths) and cgroups.oom_kills(version, paths) > 0

    @staticmethod
    def usage(version: int, paths: dict[str, str]) -> Usage | None:
        return cgroups.read_usage(version, paths) if paths else None

    @staticmethod
    def release(paths: dict[str, str]) -> None:
        """Remove the instance's groups once its sandbox has ended."""
        cgroups.remove(paths)
