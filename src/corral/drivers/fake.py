"""An in-memory driver for tests of the engine: the Driver contract with no processes.

It starts nothing and listens on nothing: addresses are unique but nothing answers there.
Tests make instances fail with `crash`. The clock is passed in, never read here directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from corral.errors import DriverError
from corral.ports.records import Capacity, InstanceSpec, Observed, Usage
from corral.ports.runtime import (
    Credentials,
    LaunchSnapshot,
    Mount,
    RuntimeFacts,
    SandboxProcess,
)

FAKE_MACHINE = Capacity(memory=16 << 30, memory_available=12 << 30, cpus=8.0)


class FakeDriver:
    """Remembers started instances in a dict; passes the same contract suite as ProcessDriver."""

    name = "fake"

    def __init__(self, now: Callable[[], float] = time.time, *, first_port: int = 20000,
                 machine: Capacity = FAKE_MACHINE) -> None:
        self._now = now
        self.machine = machine  # what capacity() reports; tests may replace it
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

    def usage(self, instance_id: str) -> Usage | None:
        """The instance's declared limits with nothing used (it runs nothing)."""
        spec = next((s for s in reversed(self.started) if s.id == instance_id), None)
        if spec is None or instance_id not in self._instances:
            return None
        limits = spec.limits
        return Usage(memory=0, memory_limit=limits.memory_limit, cpu_seconds=0.0,
                     cpus=limits.cpus, pids=1, pids_limit=limits.pids,
                     oom_kills=int(self._instances[instance_id].oom_killed))

    def capacity(self) -> Capacity:
        return self.machine

    def enforcement(self) -> tuple[bool, str]:
        return False, "the fake driver records limits; nothing enforces them"

    def kill(self, instance_id: str) -> bool:
        """SIGKILL the app, as ProcessDriver.kill does: it is listed as exited (137)."""
        observed = self._instances.get(instance_id)
        if observed is None or not observed.running:
            return False
        self.crash(instance_id, exit_code=137)
        return True

    # -- test-only abilities -----------------------------------------------------------

    def crash(self, instance_id: str, exit_code: int = 1, *, oom: bool = False) -> None:
        """Make a running instance exit with `exit_code`, as if the app died (`oom`: ended
        by the OOM killer at its memory limit)."""
        observed = self._instances[instance_id]
        self._instances[instance_id] = replace(observed, running=False, exit_code=exit_code,
                                               oom_killed=oom)

    def tamper(self, instance_id: str, **changes: object) -> None:
        """Change how a running instance looks at runtime (env, argv, mounts, processes)."""
        self._runtime[instance_id] = replace(self._runtime[instance_id], **changes)  # type: ignore[arg-type]

    def enter(self, instance_id: str, argv: tuple[str, ...] = ("sh",), uid: int = 0) -> int:
        """A process from outside joins the instance's namespaces, as `nsenter` run from a
        shell on the host would; its pid."""
        facts = self._runtime[instance_id]
        pid = self._next_pid
        self._next_pid += 1
        ids = (uid,) * 4
        intruder = SandboxProcess(pid=pid, argv=argv, credentials=Credentials(ids, ids, 0),
                                  in_user_namespace=True, from_init=False,
                                  session_inside=False)
        self.tamper(instance_id, processes=(*facts.processes, intruder))
        return pid


def _facts(spec: InstanceSpec, observed: Observed) -> RuntimeFacts:
    port = observed.address.rpartition(":")[2]
    mounts = (Mount("/", spec.rootfs, "ext4", True), Mount("/proc", "proc", "proc", False),
              Mount("/tmp", "tmpfs", "tmpfs", False),
              *(Mount(inside, host, "ext4", False) for host, inside in spec.volumes.items()))
    pid = observed.pid or 0
    nobody = Credentials(uids=(65534,) * 4, gids=(65534,) * 4, capabilities=0)
    launched = LaunchSnapshot(
        namespaces={"user": 4026532000 + 3 * pid, "mnt": 4026532001 + 3 * pid,
                    "pid": 4026532002 + 3 * pid},
        mounts=mounts, credentials=nobody, image_digest=spec.image_digest)
    app = SandboxProcess(pid=pid, argv=tuple(spec.argv), credentials=nobody,
                         in_user_namespace=True, from_init=True, session_inside=True)
    return RuntimeFacts(
        instance_id=spec.id, pid=pid, argv=tuple(spec.argv),
        env={**{k: v for k, v in spec.env.items() if k != "PORT"}, "PORT": port,
             "PWD": spec.workdir},
        uid=65534, gid=65534, root=spec.rootfs, mounts=mounts, launched=launched,
        processes=(app,))
