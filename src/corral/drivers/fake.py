"""An in-memory driver for tests of the engine: the Driver contract with no processes.

It starts nothing and listens on nothing: addresses are unique but nothing answers there.
Tests make instances fail with `crash`. The clock is passed in, never read here directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from corral.errors import DriverError
from corral.ports.records import InstanceSpec, Observed


class FakeDriver:
    """Remembers started instances in a dict; passes the same contract suite as ProcessDriver."""

    name = "fake"

    def __init__(self, now: Callable[[], float] = time.time, *, first_port: int = 20000) -> None:
        self._now = now
        self._next_port = first_port
        self._next_pid = 1000
        self._instances: dict[str, Observed] = {}
        self.started: list[InstanceSpec] = []  # every spec given to start, in order

    def start(self, spec: InstanceSpec) -> Observed:
        if spec.id in self._instances:
            raise DriverError(f"instance {spec.id} already exists",
                              hint="instance ids must be unique; stop the old one first")
        observed = Observed(id=spec.id, pid=self._next_pid,
                            address=f"127.0.0.1:{self._next_port}", running=True,
                            labels=dict(spec.labels), started_at=self._now())
        self._next_pid += 1
        self._next_port += 1
        self._instances[spec.id] = observed
        self.started.append(spec)
        return observed

    def list(self) -> list[Observed]:
        return [self._instances[i] for i in sorted(self._instances)]

    def inspect(self, instance_id: str) -> Observed | None:
        return self._instances.get(instance_id)

    def stop(self, instance_id: str, grace: float) -> None:
        self._instances.pop(instance_id, None)

    def forget(self, instance_id: str) -> None:
        """Drop an exited instance, as ProcessDriver.forget does."""
        observed = self._instances.get(instance_id)
        if observed is not None and observed.running:
            raise DriverError(f"instance {instance_id} is still running",
                              hint="stop it instead of forgetting it")
        self._instances.pop(instance_id, None)

    # -- test-only abilities -----------------------------------------------------------

    def crash(self, instance_id: str, exit_code: int = 1) -> None:
        """Make a running instance exit with `exit_code`, as if the app died."""
        observed = self._instances[instance_id]
        self._instances[instance_id] = replace(observed, running=False, exit_code=exit_code)
