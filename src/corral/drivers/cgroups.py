"""Control groups for instances of the process driver: find a usable layout, make one group
per instance with its limits, read its usage and OOM kills, remove it.

Two layouts (docs/adr/0018-resource-limits-and-syscall-filter.md): cgroup v2 (one unified
hierarchy; a stock Debian 12 host) and cgroup v1 (one hierarchy per controller under
/sys/fs/cgroup/NAME, a v2 hierarchy beside them without controllers; this machine type).
Every path is below a `root` given in, so unit tests run on a fake tree. It never starts
or signals a process: the launcher moves the sandbox into the group before exec.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from corral.errors import DriverError
from corral.ports.records import Limits, Usage

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP = "corral"  # the parent group of every instance's group
CPU_PERIOD_US = 100_000  # the scheduler period the CPU quota is a share of
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
V2_CONTROLLERS = ("memory", "cpu", "pids")


@dataclass(frozen=True)
class Cgroups:
    """The layout found on this host: version 2, 1, or 0 (none usable, with the reason).

    `bases` maps a controller name (v1) or "unified" (v2) to the folder instance groups
    are made in."""

    version: int
    bases: dict[str, Path] = field(default_factory=dict)
    reason: str = ""

    @property
    def is_usable(self) -> bool:
        return self.version in (1, 2)

    def describe(self) -> str:
        """One line for humans: what enforces limits here, or why nothing does."""
        if not self.is_usable:
            return (f"no usable cgroup layout ({self.reason}): instances run without memory, "
                    "CPU or process limits")
        where = ", ".join(f"{name}={path}" for name, path in sorted(self.bases.items()))
        return f"cgroup v{self.version} ({where})"

    def create(self, instance_id: str, limits: Limits) -> dict[str, str]:
        """Make the instance's group(s) and write its limits; {name: folder}. Raises
        DriverError if the kernel refuses (the message names the file)."""
        paths = {name: base / instance_id for name, base in self.bases.items()}
        try:
            for path in paths.values():
                path.mkdir(parents=True, exist_ok=True)
            write_limits(self.version, paths, limits)
        except OSError as exc:
            remove(paths)
            raise DriverError(f"cannot set the limits of instance {instance_id}: {exc}",
                              hint=f"check the cgroup layout: {self.describe()}") from exc
        return {name: str(path) for name, path in paths.items()}


def detect(root: Path = CGROUP_ROOT) -> Cgroups:
    """The layout to use: v2 if its hierarchy offers memory, cpu and pids; else v1 if those
    controllers are mounted; else none. Instance groups live under `corral/` at the top of
    each hierarchy, as Docker's cgroupfs driver keeps `docker/`: they outlive the process
    that started them, so they must not sit inside its own group."""
    unified = root if (root / "cgroup.controllers").is_file() else root / "unified"
    offered = set(_read(unified / "cgroup.controllers").split())
    if set(V2_CONTROLLERS) <= offered:
        return Cgroups(2, {"unified": unified / GROUP})
    mounted = [name for name in V1_CONTROLLERS if (root / name / "cgroup.procs").is_file()]
    if {"memory", "cpu", "pids"} <= set(mounted):
        return Cgroups(1, {name: root / name / GROUP for name in mounted})
    missing = sorted(set(V2_CONTROLLERS) - offered)
    return Cgroups(0, reason=f"{unified} lacks {', '.join(missing)} and no v1 memory, cpu and "
                             f"pids hierarchies are mounted under {root}")


def prepare(found: Cgroups) -> Cgroups:
    """The layout with its parent groups made (and v2's controllers handed down to them);
    version 0 with the kernel's words if that fails (not root, no delegation, a busy
    group)."""
    if not found.is_usable:
        return found
    try:
        for base in found.bases.values():
            base.mkdir(parents=True, exist_ok=True)
            if not os.access(base, os.W_OK):
                return Cgroups(0, reason=f"{base} is not writable by uid {os.geteuid()} "
                                         "(run as root, or delegate that group to this user)")
            if found.version == 2:
                _enable_controllers(base)
    except OSError as exc:
        return Cgroups(0, reason=f"cgroup v{found.version} is mounted but cannot be used: {exc}")
    return found


def _enable_controllers(base: Path) -> None:
    """v2 hands a controller to a group's children only if its parent enabled it."""
    for group in (base.parent, base):
        control = group / "cgroup.subtree_control"
        enabled = set(_read(control).split())
        wanted = [c for c in V2_CONTROLLERS if c not in enabled]
        if wanted:
            control.write_text(" ".join(f"+{c}" for c in wanted))


def write_limits(version: int, paths: dict[str, Path], limits: Limits) -> None:
    """Write `limits` into the instance's groups; a limit left None is not written."""
    for path, value in limit_files(version, limits):
        controller, name = path.split("/")
        folder = paths.get("unified" if version == 2 else controller)
        if folder is not None and _exists_or_fake(folder / name):
            (folder / name).write_text(value)


def limit_files(version: int, limits: Limits) -> list[tuple[str, str]]:
    """("controller/file", value) to write, in order (v1 needs the memory limit before
    the memory+swap one).

    >>> limit_files(2, Limits(memory=256 << 20, memory_max=384 << 20, cpus=0.5, pids=64))
    ... # doctest: +NORMALIZE_WHITESPACE
    [('memory/memory.low', '268435456'), ('memory/memory.max', '402653184'),
     ('memory/memory.swap.max', '0'), ('memory/memory.oom.group', '1'),
     ('cpu/cpu.max', '50000 100000'), ('cpu/cpu.weight', '50'), ('pids/pids.max', '64')]
    >>> limit_files(1, Limits(memory=64 << 20, pids=32))  # doctest: +NORMALIZE_WHITESPACE
    [('memory/memory.soft_limit_in_bytes', '67108864'),
     ('memory/memory.limit_in_bytes', '67108864'),
     ('memory/memory.memsw.limit_in_bytes', '67108864'), ('pids/pids.max', '32')]
    """
    files: list[tuple[str, str]] = []
    hard = limits.memory_limit
    if version == 2:
        if limits.memory is not None:
            files.append(("memory/memory.low", str(limits.memory)))
        if hard is not None:
            files += [("memory/memory.max", str(hard)), ("memory/memory.swap.max", "0"),
                      ("memory/memory.oom.group", "1")]
        if limits.cpus is not None:
            files += [("cpu/cpu.max", f"{_quota(limits.cpus)} {CPU_PERIOD_US}"),
                      ("cpu/cpu.weight", str(max(1, min(10_000, round(100 * limits.cpus)))))]
    else:
        if limits.memory is not None:
            files.append(("memory/memory.soft_limit_in_bytes", str(limits.memory)))
        if hard is not None:
            files += [("memory/memory.limit_in_bytes", str(hard)),
                      ("memory/memory.memsw.limit_in_bytes", str(hard))]
        if limits.cpus is not None:
            files += [("cpu/cpu.cfs_period_us", str(CPU_PERIOD_US)),
                      ("cpu/cpu.cfs_quota_us", str(_quota(limits.cpus))),
                      ("cpu/cpu.shares", str(max(2, round(1024 * limits.cpus))))]
    if limits.pids is not None:
        files.append(("pids/pids.max", str(limits.pids)))
    return files


def procs_files(paths: dict[str, str]) -> list[str]:
    """The cgroup.procs files the sandbox writes itself into (one per hierarchy)."""
    return [os.path.join(path, "cgroup.procs") for _, path in sorted(paths.items())]


def read_usage(version: int, paths: dict[str, str]) -> Usage:
    """What the instance's group uses now; fields the kernel does not show stay None.
    Memory excludes the reclaimable page cache (inactive files), as `docker stats` does."""
    where = {name: Path(path) for name, path in paths.items()}
    if version == 2:
        group = where["unified"]
        stat = _keyed(group / "memory.stat")
        current = _number(group / "memory.current")
        cpu = _keyed(group / "cpu.stat").get("usage_usec")
        quota = _read(group / "cpu.max").split()
        return Usage(
            memory=None if current is None else current - stat.get("inactive_file", 0),
            memory_limit=_number(group / "memory.max"),
            cpu_seconds=None if cpu is None else cpu / 1e6,
            cpus=int(quota[0]) / int(quota[1]) if len(quota) == 2 and quota[0] != "max"
            else None,
            pids=_number(group / "pids.current"), pids_limit=_number(group / "pids.max"),
            oom_kills=oom_kills(version, paths))
    return _read_usage_v1(where, oom_kills(version, paths))


def _read_usage_v1(where: dict[str, Path], oom: int) -> Usage:
    """v1 keeps each counter in its own hierarchy; a missing one reads as None."""
    nowhere = Path("/nonexistent")
    memory, cpu = where.get("memory", nowhere), where.get("cpu", nowhere)
    used = _number(memory / "memory.usage_in_bytes")
    limit = _number(memory / "memory.limit_in_bytes")
    quota = _number(cpu / "cpu.cfs_quota_us")  # -1 (no quota) does not parse: None
    period = _number(cpu / "cpu.cfs_period_us")
    nanos = _number(where.get("cpuacct", nowhere) / "cpuacct.usage")
    pids = where.get("pids", nowhere)
    return Usage(
        memory=None if used is None
        else used - _keyed(memory / "memory.stat").get("total_inactive_file", 0),
        memory_limit=limit if limit is not None and limit < 1 << 62 else None,
        cpu_seconds=None if nanos is None else nanos / 1e9,
        cpus=quota / period if quota and period else None,
        pids=_number(pids / "pids.current"), pids_limit=_number(pids / "pids.max"),
        oom_kills=oom)


def oom_kills(version: int, paths: dict[str, str]) -> int:
    """Processes of the group the OOM killer ended (v2 memory.events, v1
    memory.oom_control: both say `oom_kill N`)."""
    if version == 2:
        return _keyed(Path(paths["unified"]) / "memory.events").get("oom_kill", 0)
    if "memory" not in paths:
        return 0
    return _keyed(Path(paths["memory"]) / "memory.oom_control").get("oom_kill", 0)


def remove(paths: dict[str, Path] | dict[str, str], wait: float = 2.0) -> None:
    """Remove the instance's groups once its sandbox ended. The kernel refuses (EBUSY) while
    the last processes are still being reaped, so each is retried for up to `wait` seconds;
    a group still held then is left behind, never an error: stopping must not fail on it."""
    deadline = time.monotonic() + wait
    for path in paths.values():
        while True:
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    break
                time.sleep(0.01)


def _quota(cpus: float) -> int:
    return max(1000, round(cpus * CPU_PERIOD_US))  # the kernel's smallest quota is 1 ms


def _exists_or_fake(path: Path) -> bool:
    """Files a kernel lacks (swap limits without swap accounting) are skipped; a fake tree
    (whose groups have no cgroup.procs, unlike every real one) gets every file written."""
    return path.exists() or not (path.parent / "cgroup.procs").exists()


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _number(path: Path) -> int | None:
    text = _read(path).strip()
    return int(text) if text.isdigit() else None


def _keyed(path: Path) -> dict[str, int]:
    """A flat-keyed cgroup file ("key value" lines) as a dict of ints."""
    pairs = (line.split() for line in _read(path).splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}
