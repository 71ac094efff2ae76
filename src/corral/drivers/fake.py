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
from corral.ports.runtime import Mount, RuntimeFacts


class FakeDriver:
    """Remembers started instances in a dict; passes the same contract suite as ProcessDriver."""

    name = "fake"

    def __init__(self, now: Callable[[], float] = time.time, *, first_port: int = 20000) -> None:
        self._now = now
        self._next_port = first_port
        self._next_pid = 1000
        self._instances: dict[str, Observed] = {}
        self.started: list[InstanceSpec] = []  # every spec given to start, in order
        self._runtime: dict[str, RuntimeFacts] = {}

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
        self._runtime[spec.id] = _facts(spec, observed)
        self.started.append(spec)
        return observed

    def list(self) -> list[Observed]:
        return [self._instances[i] for i in sorted(self._instances)]

    def inspect(self, instance_id: str) -> Observed | None:
        return self._instances.get(instance_id)

    def stop(self, instance_id: str, grace: float) -> None:
        self._instances.pop(instance_id, None)
        self._runtime.pop(instance_id, None)

    def runtime(self, instance_id: str) -> RuntimeFacts | None:
        """The facts of a running instance, as the process driver reports them."""
        observed = self._instances.get(instance_id)
        if observed is None or not observed.running:
            return None
        return self._runtime.get(instance_id)

    def forget(self, instance_id: str) -> None:
        """Drop an exited instance, as ProcessDriver.forget does."""
        observed = self._instances.get(instance_id)
        if observed is not None and observed.running:
            raise DriverError(f"instance {instance_id} is still running",
                              hint="stop it instead of forgetting it")
        self._instances.pop(instance_id, None)
        self._runtime.pop(instance_id, None)

    def kill(self, instance_id: str) -> bool:
        """SIGKILL the app, as ProcessDriver.kill does: it is listed as exited (137)."""
        observed = self._instances.get(instance_id)
        if observed is None or not observed.running:
            return False
        self.crash(instance_id, exit_code=137)
        return True

    # -- test-only abilities -----------------------------------------------------------

    def crash(self, instance_id: str, exit_code: int = 1) -> None:
        """Make a running instance exit with `exit_code`, as if the app died."""
        observed = self._instances[instance_id]
        self._instances[instance_id] = replace(observed, running=False, exit_code=exit_code)

    def tamper(self, instance_id: str, **changes: object) -> None:
        """Change how a running instance looks at runtime (env, argv, uid, root, mounts)."""
        self._runtime[instance_id] = replace(self._runtime[instance_id], **changes)  # type: ignore[arg-type]


def _facts(spec: InstanceSpec, observed: Observed) -> RuntimeFacts:
    port = observed.address.rpartition(":")[2]
    mounts = (Mount("/", spec.rootfs, "ext4", True), Mount("/proc", "proc", "proc", False),
              Mount("/tmp", "tmpfs", "tmpfs", False),
              *(Mount(inside, host, "ext4", False) for host, inside in spec.volumes.items()))
    return RuntimeFacts(
        instance_id=spec.id, pid=observed.pid or 0, argv=tuple(spec.argv),
        env={**{k: v for k, v in spec.env.items() if k != "PORT"}, "PORT": port,
             "PWD": spec.workdir},
        uid=65534, gid=65534, root=spec.rootfs, mounts=mounts, driver_env=("PORT", "PWD"),
        driver_uid=65534, driver_mounts=("/proc", "/dev", "/tmp"))
