"""Runtime inspection: an optional driver ability, reporting how an instance really runs.

The reconciler compares these facts with the instance's release (core.drift) to find
runtime drift: changed env, args, user, mounts or image. A driver without the ability
simply does not implement `Inspectable`; runtime drift is then not checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Mount:
    """One mount seen inside the instance: where, from which host path, how."""

    target: str  # path inside the instance, e.g. "/" or "/var/lib/app"
    source: str  # host path (for a bind mount) or the file system's name ("tmpfs", "proc")
    fstype: str
    read_only: bool


@dataclass(frozen=True)
class RuntimeFacts:
    """What the instance's app process looks like right now, read from the host."""

    instance_id: str
    pid: int  # host pid of the app process
    argv: tuple[str, ...]
    env: dict[str, str]
    uid: int  # effective uid, as the host sees it
    gid: int
    root: str  # host path mounted as the instance's "/"
    mounts: tuple[Mount, ...] = ()
    driver_env: tuple[str, ...] = ()  # variables the driver itself sets (PORT, PWD, …)
    driver_uid: int | None = None  # the uid the driver runs every instance as, if fixed
    driver_mounts: tuple[str, ...] = field(default=())  # targets the driver always mounts


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
