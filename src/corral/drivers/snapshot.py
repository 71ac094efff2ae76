"""What a sandbox was launched as, and which processes are in it now, read from host /proc.

The launch snapshot (its own namespaces, its mount table, the app's ids and capabilities) is
taken once the app runs and kept in the instance record; `members` lists every process that
shares one of those namespaces, with whether its ancestry leads to the sandbox's init. It
only reads /proc: judging what differs is core.drift's job, acting on it the engine's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from corral.drivers import inspect, procfs
from corral.ports.runtime import Credentials, LaunchSnapshot, Mount, SandboxProcess

# Joining one of these is entering the instance: its files, its processes, its user's
# capabilities. (The uts and ipc namespaces give nothing of the instance but its hostname.)
KINDS = ("user", "mnt", "pid")
_MAX_DEPTH = 256  # ancestry longer than this is a loop in a racing read: not ours


def take(init_pid: int, app_pid: int, image_digest: str, taken: str) -> LaunchSnapshot | None:
    """The snapshot of a running sandbox; None if it ended while being read."""
    namespaces = {}
    for kind in KINDS:
        mine = inspect.namespace_id(app_pid, kind)
        if mine is not None and mine != inspect.namespace_id("self", kind):
            namespaces[kind] = mine  # only the sandbox's own: the host's would match anyone
    try:
        status = inspect.read_status(app_pid)
        level = pid_level(init_pid)
        mounts = tuple(inspect.read_mounts(init_pid))
    except (OSError, KeyError, ValueError):
        return None
    return LaunchSnapshot(
        namespaces=namespaces, mounts=mounts, credentials=inspect.credentials_of(status),
        image_digest=image_digest, sessions_inside=inspect.session_level(status, level) != 0,
        taken=taken)


def namespace_index() -> dict[int, dict[str, int | None]]:
    """{pid: {kind: namespace id}} of every process on the host, for `members`."""
    return {int(entry.name): {kind: inspect.namespace_id(entry.name, kind) for kind in KINDS}
            for entry in os.scandir("/proc") if entry.name.isdigit()}


def by_namespace(index: Mapping[int, Mapping[str, int | None]]
                 ) -> dict[tuple[str, int | None], set[int]]:
    """{(kind, namespace id): pids in it} of a `namespace_index()`, so that `members` of
    each instance looks up its namespaces instead of going through every host process."""
    found: dict[tuple[str, int | None], set[int]] = {}
    for pid, ids in index.items():
        for kind in KINDS:
            found.setdefault((kind, ids.get(kind)), set()).add(pid)
    return found


def pid_level(pid: int) -> int:
    """How deep `pid`'s pid namespace is below the host's (0: the host's own), from the
    NSpid line of its status; it never changes while the process runs."""
    return len(inspect.read_status(pid).get("NSpid", "").split()) - 1


def sharing(launched: LaunchSnapshot, init: procfs.ProcStat,
            index: Mapping[int, Mapping[str, int | None]],
            inverted: Mapping[tuple[str, int | None], set[int]] | None = None) -> set[int]:
    """The pids, the init's aside, that share one of the sandbox's namespaces in `index`
    (a recent `namespace_index()`; `inverted` its `by_namespace` if the caller keeps one)."""
    own = launched.namespaces
    if inverted is not None and all(kind in KINDS for kind in own):
        found = set().union(*(inverted.get((kind, own[kind]), ()) for kind in own))
    else:
        found = {pid for pid, ids in index.items()
                 if any(ids.get(kind) == own[kind] for kind in own)}
    return found - {init.pid}


def members(launched: LaunchSnapshot, init: procfs.ProcStat, exec_checks: Mapping[int, int],
            index: Mapping[int, Mapping[str, int | None]],
            inverted: Mapping[tuple[str, int | None], set[int]] | None = None,
            level: int | None = None, pids: set[int] | None = None) -> list[SandboxProcess]:
    """Every live process but the init that shares one of the sandbox's namespaces.

    `index` is a recent `namespace_index()` (one serves every instance), `inverted` its
    `by_namespace` if the caller keeps one, `pids` its `sharing` if the caller has it.
    `exec_checks` maps the pids of the driver's exec checks in flight to their start ticks:
    a process descending from one, or in its session, is marked `exec_check`. `level` is the
    init's `pid_level`, if the caller keeps it.
    """
    if level is None:
        level = pid_level(init.pid)
    if pids is None:
        pids = sharing(launched, init, index, inverted)
    found = []
    for pid in sorted(pids):  # the few sharing, not every host process
        process = _member(pid, index[pid], launched, init, exec_checks, level)
        if process is not None:
            found.append(process)
    return found


def _member(pid: int, ids: Mapping[str, int | None], launched: LaunchSnapshot,
            init: procfs.ProcStat, exec_checks: Mapping[int, int],
            level: int) -> SandboxProcess | None:
    try:
        status = inspect.read_status(pid)
        argv = tuple(inspect.read_nul_list(f"/proc/{pid}/cmdline"))
        credentials = inspect.credentials_of(status)
    except (OSError, KeyError, ValueError):
        return None  # gone while being read
    if status.get("State", "").startswith(("Z", "X")):
        return None  # exited, only not reaped yet
    from_init, from_check = _lineage(pid, init, exec_checks)
    host_session = inspect.session_level(status, 0)
    return SandboxProcess(
        pid=pid, argv=argv or (status.get("Name", "?"),), credentials=credentials,
        in_user_namespace=ids.get("user") == launched.namespaces.get("user", ids.get("user")),
        from_init=from_init, session_inside=inspect.session_level(status, level) != 0,
        exec_check=from_check or host_session in exec_checks)


def _lineage(pid: int, init: procfs.ProcStat, exec_checks: Mapping[int, int]
             ) -> tuple[bool, bool]:
    """(its ancestry leads to the init, it leads to one of the exec checks)."""
    for _ in range(_MAX_DEPTH):
        stat = procfs.read_stat(pid)
        if stat is None:
            return False, False
        if pid == init.pid and stat.start_ticks == init.start_ticks:
            return True, False
        if exec_checks.get(pid) == stat.start_ticks:
            return False, True
        if stat.ppid <= 0:
            return False, False
        pid = stat.ppid
    return False, False


def to_json(snapshot: LaunchSnapshot) -> dict[str, Any]:
    return asdict(snapshot)


def from_json(raw: Mapping[str, Any]) -> LaunchSnapshot:
    """The snapshot as `to_json` wrote it into the instance record."""
    creds = raw["credentials"]
    return LaunchSnapshot(
        namespaces={str(k): int(v) for k, v in raw["namespaces"].items()},
        mounts=tuple(Mount(m["target"], m["source"], m["fstype"], bool(m["read_only"]),
                           tuple(m.get("options", ()))) for m in raw["mounts"]),
        credentials=Credentials(uids=tuple(creds["uids"]), gids=tuple(creds["gids"]),
                                capabilities=int(creds["capabilities"])),
        image_digest=str(raw.get("image_digest", "")),
        sessions_inside=bool(raw.get("sessions_inside", True)),
        taken=str(raw.get("taken", "start")))
