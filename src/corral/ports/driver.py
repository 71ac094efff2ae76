"""Driver port: what runs instances. Small on purpose (start, list, stop), like Nomad's.

A driver never decides anything: it starts what it is told, reports what it sees and
stops what it is told. Instances it starts must outlive the process that started them.
What a driver can do beyond that is an ability it declares by implementing a small Protocol
(`Execable`, `HasLogPaths`, `PullsFromRegistry`, `Measurable`, `NoticesExits` here; `Inspectable`,
`Killable` in ports.runtime), so a container or Swarm driver implements exactly what it can;
the engine asks `isinstance(driver, …)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from corral.ports.records import Capacity, InstanceSpec, Observed, Usage


class Driver(Protocol):
    name: str

    def start(self, spec: InstanceSpec) -> Observed:
        """Start one instance and return it as observed (pid, address). Raises DriverError."""
        ...

    def list(self) -> list[Observed]:
        """Every instance this driver started that still exists (running or exited, not yet
        removed), including those started by an earlier controller."""
        ...

    def inspect(self, instance_id: str) -> Observed | None:
        """One instance, or None if the driver has no trace of it."""
        ...

    def stop(self, instance_id: str, grace: float) -> None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL; then forget the instance.
        Stopping an unknown or already exited instance is not an error."""
        ...


@runtime_checkable
class Execable(Protocol):
    """Runs a command inside a running instance (for exec health checks)."""

    def exec_in(self, instance_id: str, argv: Sequence[str],
                timeout: float) -> tuple[int, str]:
        """Run `argv` inside the instance, as it runs; (exit code, tail of its output).
        Raises DriverError when it cannot be run at all."""
        ...


@runtime_checkable
class HasLogPaths(Protocol):
    """Writes each instance's stdout and stderr to files on this machine (the log
    collector reads them)."""

    def log_paths(self, instance_id: str) -> tuple[Path, Path]:
        """(stdout, stderr) of the instance; still readable after it was stopped."""
        ...


@runtime_checkable
class PullsFromRegistry(Protocol):
    """Runs images its nodes pull from a registry (Swarm), not from this machine's image
    store: the engine pushes a release's image to `image_reference`, by digest, before the
    release's first instance starts there."""

    insecure_registry: bool  # the registry speaks plain HTTP

    def image_reference(self, service: str, digest: str) -> str:
        """Where the nodes pull image `digest` of `service` from: "HOST:PORT/REPO@DIGEST"."""
        ...


@runtime_checkable
class Measurable(Protocol):
    """Knows what each instance uses against its limits, and what the machine holds (for
    `status`, metrics and capacity admission)."""

    def usage(self, instance_id: str) -> Usage | None:
        """Memory, CPU and processes the instance uses now; None if not measurable."""
        ...

    def capacity(self) -> Capacity:
        """Memory and cores of the machine instances run on, and memory free now."""
        ...

    def enforcement(self) -> tuple[bool, str]:
        """(are limits enforced, one sentence: what enforces them here, or why nothing does
        and so what runs unlimited)."""
        ...


@runtime_checkable
class NoticesExits(Protocol):
    """Learns the moment an instance's process exits (the process driver: a pidfd per
    instance), so the engine acts on a crash at once instead of at its next listing."""

    def on_exit(self, hook: Callable[[], None]) -> None:
        """Call `hook` from the driver's own thread soon after any instance exits; it names
        none (the engine lists to learn which), and must return quickly."""
        ...
