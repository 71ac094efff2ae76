"""Runtime inspection: an optional driver ability, reporting how an instance really runs.

The reconciler compares these facts with what the driver launched (core.drift) to find
runtime drift: a process that entered the instance from outside, a mount added, removed or
changed, a uid or capabilities the instance was not launched with. What the app does to
itself (exec, fork, setenv, argv rewrite, chdir) is reported but never drift. A driver
without the ability simply does not implement `Inspectable`; runtime drift is then not
checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Mount:
    """One mount seen inside the instance: where, from which host path, how."""

    target: str  # path inside the instance, e.g. "/" or "/var/lib/app"
    source: str  # host path (for a bind mount) or the file system's name ("tmpfs", "proc")
    fstype: str
    read_only: bool
    options: tuple[str, ...] = ()  # the mount's own flags besides ro/rw (nosuid, nodev, …)


@dataclass(frozen=True)
class Credentials:
    """Who a process is, as the host sees it: ids and the capabilities it holds."""

    uids: tuple[int, ...]  # real, effective, saved, file system
    gids: tuple[int, ...]
    capabilities: int  # bits of its inheritable, permitted, effective and ambient sets

    @property
    def uid(self) -> int:
        """The effective uid."""
        return self.uids[1] if len(self.uids) > 1 else self.uids[0]


@dataclass(frozen=True)
class LaunchSnapshot:
    """What the driver launched, taken once the app ran (or, for an instance started by an
    older driver, when it was first observed): the reference runtime drift is measured by."""

    namespaces: Mapping[str, int]  # kind ("mnt", "pid", "user") -> id, those of its own
    mounts: tuple[Mount, ...]  # the instance's mount table
    credentials: Credentials  # the app's
    image_digest: str = ""  # the image it was started from
    sessions_inside: bool = True  # the app's session began inside its pid namespace
    taken: str = "start"  # "start", or "adopted" when first observed after it started


@dataclass(frozen=True)
class SandboxProcess:
    """A process that shares one of the instance's namespaces, as the host sees it."""

    pid: int  # host pid
    argv: tuple[str, ...]  # its command line (or its name, when it has none)
    credentials: Credentials
    in_user_namespace: bool  # it is in the instance's own user namespace (not a nested one)
    from_init: bool  # its ancestry leads to the instance's init
    session_inside: bool  # its session began inside the instance's pid namespace
    exec_check: bool = False  # the driver's own exec health check, or one of its children


@dataclass(frozen=True)
class RuntimeFacts:
    """What the instance looks like right now, read from the host."""

    instance_id: str
    pid: int  # host pid of the app process
    argv: tuple[str, ...]
    env: dict[str, str]
    uid: int  # effective uid, as the host sees it
    gid: int
    root: str  # host path of the image root the instance was started on
    mounts: tuple[Mount, ...] = ()  # the instance's mount table now
    launched: LaunchSnapshot | None = None  # None: the driver has no record of its launch
    processes: tuple[SandboxProcess, ...] = field(default=())  # all but the sandbox's init


@runtime_checkable
class Inspectable(Protocol):
    def runtime(self, instance_id: str) -> RuntimeFacts | None:
        """The facts of a running instance; None if it is not running or unknown."""
        ...


@runtime_checkable
class Killable(Protocol):
    def kill(self, instance_id: str) -> bool:
        """SIGKILL the instance's app, as a crash would (chaos): the instance stays listed,
        as exited. False if it was not running."""
        ...
