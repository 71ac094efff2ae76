"""Driver port: what runs instances. Small on purpose (start, list, stop), like Nomad's.

A driver never decides anything: it starts what it is told, reports what it sees and
stops what it is told. Instances it starts must outlive the process that started them.
"""

from __future__ import annotations

from typing import Protocol

from corral.ports.records import InstanceSpec, Observed


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
