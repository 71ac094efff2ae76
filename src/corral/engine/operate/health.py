"""The health monitor: runs readiness and liveness checks (http, tcp, exec) and notices exits.

It only observes and reports: readiness results go to `Fleets`, which decides the new state
through core.health; a liveness failure marks the instance unhealthy and calls the
`on_liveness_failure` hooks (the controller wires the reconciler's `condemn`, which starts a
replacement). It never restarts anything in place.
"""

from __future__ import annotations

import http.client
import logging
import socket
import time
from collections.abc import Callable
from functools import partial

from corral.core.probe import is_in_grace, next_check_at
from corral.core.reconcile import exit_reason
from corral.engine.fleet import Clock, Fleets
from corral.engine.loop import WALL, BackgroundLoop, Timer
from corral.engine.operate.probe import Prober
from corral.errors import DriverError
from corral.ports.driver import Driver, Execable
from corral.ports.records import Instance, InstanceState
from corral.spec.model import HealthSpec

log = logging.getLogger(__name__)

HealthOf = Callable[[Instance], HealthSpec | None]
LivenessHook = Callable[[Instance, str], None]
_CHECKED = (InstanceState.STARTING, InstanceState.READY, InstanceState.UNHEALTHY)


def check_http(address: str, path: str, timeout: float) -> str | None:
    """None if GET address+path answers 2xx/3xx within `timeout`, else what went wrong."""
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "corral-health"})
        response = connection.getresponse()
        response.read()
        if 200 <= response.status < 400:
            return None
        return f"GET {path} answered {response.status}"
    except (OSError, http.client.HTTPException) as exc:
        return f"GET {path}: {exc.__class__.__name__}: {exc}".rstrip(": ")
    finally:
        connection.close()


def check_tcp(address: str, timeout: float) -> str | None:
    """None if a TCP connection to `address` opens within `timeout`."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return None
    except OSError as exc:
        return f"connect {address}: {exc.__class__.__name__}: {exc}"


def check_exec(driver: Driver, instance: Instance, command: tuple[str, ...],
               timeout: float) -> str | None:
    """None if `command` exits 0 inside the instance's sandbox."""
    if not isinstance(driver, Execable):
        return f"the {driver.name} driver cannot run exec checks"
    try:
        code, output = driver.exec_in(instance.id, command, timeout)
    except DriverError as exc:
        return exc.message
    if code == 0:
        return None
    said = output.strip()[-200:]
    return f"{' '.join(command)} exited {code}" + (f": {said}" if said else "")


def run_check(driver: Driver, instance: Instance, health: HealthSpec) -> str | None:
    if health.kind == "tcp":
        return check_tcp(instance.address, health.timeout)
    if health.kind == "exec":
        return check_exec(driver, instance, health.command, health.timeout)
    return check_http(instance.address, health.path, health.timeout)


class HealthMonitor:
    """A background thread checking instances; `tick` is one sweep, usable from tests."""

    def __init__(self, fleets: Fleets, driver: Driver, health_of: HealthOf, clock: Clock,
                 resolution: float = 0.1, liveness_of: HealthOf | None = None,
                 timer: Timer = WALL, exits_every: float = 1.0,
                 rest_resolution: float = 0.25) -> None:
        self._fleets = fleets
        self._driver = driver
        self._health_of = health_of
        self._liveness_of = liveness_of or (lambda instance: None)
        self._clock = clock
        self._due: dict[str, float] = {}
        self._live_due: dict[str, float] = {}
        self._live_failures: dict[str, int] = {}
        self._busy: set[str] = set()
        # Listing the driver reads every instance's record and /proc: once a second, not at
        # every tick (a crash is also seen by the next failed check).
        self._exits_every = exits_every
        self._timer = timer
        self._next_exits = float("-inf")
        self._condemned: set[str] = set()  # failed liveness: being replaced, not re-checked
        self.on_liveness_failure: list[LivenessHook] = []
        self._prober = Prober(driver, check_exec)  # one thread for every http/tcp probe
        # Ticks every `resolution` while an instance is starting or unhealthy, every
        # `rest_resolution` when all are ready; a new instance wakes the loop at once.
        self._resolution = resolution
        self._rest_resolution = max(resolution, rest_resolution)
        self._loop = BackgroundLoop("health-monitor", self._step, resolution, timer=timer,
                                    what="health sweep")
        fleets.on_add.append(lambda instance: self._loop.wake())

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop(timeout=5)
        self._prober.stop()

    def quiesce(self, timeout: float = 10.0) -> bool:
        """Wait (real time) until no check is in flight; whether none is (for tests)."""
        deadline = time.monotonic() + timeout
        while self._busy and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._busy

    def _step(self) -> float:
        self.tick()
        settling = any(i.state in (InstanceState.STARTING, InstanceState.UNHEALTHY)
                       for i in self._fleets.all())
        return self._resolution if settling else self._rest_resolution

    def tick(self) -> None:
        now = self._clock()
        if self._timer() >= self._next_exits:  # the loop's time: a test's clock may stand
            self._next_exits = self._timer() + self._exits_every
            self._notice_exits()
        for instance in self._fleets.all():
            if (instance.state not in _CHECKED or instance.id in self._busy
                    or instance.id in self._condemned):
                continue
            health = self._health_of(instance)
            if health is not None and now >= self._due.get(instance.id, 0.0) and not \
                    is_in_grace(now, instance.created_at, health.start_grace):
                self._due[instance.id] = next_check_at(
                    now, instance.created_at, health.start_grace, health.interval,
                    instance.state is InstanceState.STARTING)
                self._busy.add(instance.id)
                self._prober.submit(instance, health, partial(self._checked, instance, health))
                continue
            liveness = self._liveness_of(instance)
            if (liveness is not None and instance.state is InstanceState.READY
                    and now >= self._live_due.get(instance.id, 0.0)
                    and not is_in_grace(now, instance.created_at, liveness.start_grace)):
                self._live_due[instance.id] = now + liveness.interval
                self._busy.add(instance.id)
                self._prober.submit(instance, liveness,
                                    partial(self._liveness_checked, instance, liveness))

    def _checked(self, instance: Instance, health: HealthSpec, error: str | None) -> None:
        try:
            self._fleets.record_check(instance.id, error is None, error, health.healthy_after,
                                      health.unhealthy_after)
        finally:
            self._busy.discard(instance.id)

    def _liveness_checked(self, instance: Instance, liveness: HealthSpec,
                          error: str | None) -> None:
        try:
            if error is None:
                self._live_failures.pop(instance.id, None)
                return
            failures = self._live_failures.get(instance.id, 0) + 1
            self._live_failures[instance.id] = failures
            if failures >= liveness.unhealthy_after:
                self._live_failures.pop(instance.id, None)
                self._condemned.add(instance.id)
                reason = f"liveness check failed {failures} times: {error}"
                log.warning("instance %s: %s; it will be replaced", instance.id, reason)
                self._fleets.move(instance.id, InstanceState.UNHEALTHY, reason)
                for hook in self.on_liveness_failure:
                    hook(instance, reason)
        finally:
            self._busy.discard(instance.id)

    def _notice_exits(self) -> None:
        # Snapshot the fleet before listing the driver: an instance added after the listing
        # would otherwise look as if it had vanished.
        instances = self._fleets.all()
        observed = {o.id: o for o in self._driver.list()}
        self._prober.keep_only(i.address for i in instances)
        for instance in instances:
            if instance.state is InstanceState.DRAINING:
                continue
            seen = observed.get(instance.id)
            if seen is None or not seen.running:
                reason = exit_reason(seen)
                if seen is not None and seen.oom_killed:
                    log.warning("instance %s was %s; it will be replaced", instance.id, reason)
                self._fleets.move(instance.id, InstanceState.FAILED, reason)
                self._due.pop(instance.id, None)
                self._driver.stop(instance.id, grace=0)  # forget it; its logs are kept
