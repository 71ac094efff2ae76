"""The health monitor: runs readiness and liveness checks (http, tcp, exec) and notices exits.

It only observes and reports: readiness results go to `Fleets`, which decides the new state
through core.health; a liveness failure marks the instance unhealthy and calls the
`on_liveness_failure` hooks (the controller wires the reconciler's `condemn`, which starts a
replacement). It never restarts anything in place.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import logging
import socket
import time
from collections.abc import Callable
from functools import partial

from corral.core.probe import plan_check
from corral.core.reconcile import exit_reason
from corral.engine.fleet import Clock, Fleets
from corral.engine.loop import WALL, BackgroundLoop, Timer
from corral.engine.operate.probe import Prober
from corral.errors import DriverError
from corral.ports.driver import Driver, Execable, NoticesExits
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
    """A background thread checking instances; `tick` is one sweep, usable from tests.

    Each instance's next readiness and liveness checks wait in a heap of due times, so a
    sweep looks only at the checks due, not at every instance, and the thread sleeps until
    the next is due; the fleet is gone through only when it changed (`Fleets.version`).
    Checks of instances past starting are due on a grid of `batch` seconds (a 1 s interval
    becomes 1 to 1.25 s), so at rest they run in a few batches a second, not one wake per
    instance; a starting instance is probed at its own pace (core.probe).
    """

    def __init__(self, fleets: Fleets, driver: Driver, health_of: HealthOf, clock: Clock,
                 resolution: float = 0.1, liveness_of: HealthOf | None = None,
                 timer: Timer = WALL, exits_every: float = 1.0, batch: float = 0.25) -> None:
        self._fleets = fleets
        self._driver = driver
        self._health_of = health_of
        self._liveness_of = liveness_of or (lambda instance: None)
        self._clock = clock
        self._queue: list[tuple[float, int, str, bool]] = []  # (due, order, id, liveness?)
        self._order = itertools.count()  # ties keep their order: no Instance compared
        self._queued: set[str] = set()  # instances whose checks are in the queue
        self._seen_version = -1  # the fleet's version the queue was last completed at
        self._kept_version = -1  # the fleet's version the prober last kept connections for
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
        self._resolution = resolution  # a busy instance's due check is looked at again then
        self._batch = batch
        self._loop = BackgroundLoop("health-monitor", self._step, resolution, timer=timer,
                                    what="health sweep")
        fleets.on_add.append(lambda instance: self._loop.wake())

    def start(self) -> None:
        if isinstance(self._driver, NoticesExits):
            self._driver.on_exit(self._exit_noticed)
        self._loop.start()

    def _exit_noticed(self) -> None:
        """The driver saw an instance exit: list at once rather than within a second."""
        self._next_exits = float("-inf")
        self._loop.wake()

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
        """One sweep; then wait until the next check or exit listing is due."""
        until_check = self._sweep()
        until_exits = self._next_exits - self._timer()
        return max(0.0, min(until_check, until_exits))

    def tick(self) -> None:
        """One sweep (tests call it on their own clock)."""
        self._sweep()

    def _sweep(self) -> float:
        """Start the checks due; the seconds until the next one is due (inf: none queued)."""
        now = self._clock()
        if self._timer() >= self._next_exits:  # the loop's time: a test's clock may stand
            self._next_exits = self._timer() + self._exits_every
            self._notice_exits()
        if self._fleets.version != self._seen_version:
            self._queue_new()
        while self._queue and self._queue[0][0] <= now:
            _, _, instance_id, liveness = heapq.heappop(self._queue)
            instance = self._fleets.get(instance_id)
            if instance is None or instance.state not in _CHECKED:
                self._queued.discard(instance_id)  # it never comes back to a checked state
            elif instance_id not in self._condemned:
                self._due(instance, liveness, now)
        return self._queue[0][0] - now if self._queue else float("inf")

    def _queue_new(self) -> None:
        """Queue the first checks of instances not seen yet (at once: `_due` waits out a
        start grace); forget those gone."""
        self._seen_version = self._fleets.version
        instances = self._fleets.all()
        self._queued &= {i.id for i in instances}
        self._condemned &= {i.id for i in instances}
        for instance in instances:
            if instance.id not in self._queued and instance.state in _CHECKED:
                self._queued.add(instance.id)
                self._push(0.0, instance.id, liveness=False)
                self._push(0.0, instance.id, liveness=True)

    def _push(self, due: float, instance_id: str, liveness: bool) -> None:
        heapq.heappush(self._queue, (due, next(self._order), instance_id, liveness))

    def _due(self, instance: Instance, liveness: bool, now: float) -> None:
        """Run one due check of `instance` (or queue it again for when it can run)."""
        spec = (self._liveness_of if liveness else self._health_of)(instance)
        if spec is None:
            return  # no such check for this release: nothing queued again
        due, run = plan_check(
            now, instance.created_at, spec.start_grace, spec.interval,
            starting=not liveness and instance.state is InstanceState.STARTING,
            waits_ready=liveness and instance.state is not InstanceState.READY,
            busy=instance.id in self._busy, resolution=self._resolution, batch=self._batch)
        self._push(due, instance.id, liveness)
        if run:
            self._busy.add(instance.id)
            self._prober.submit(instance, spec, partial(
                self._liveness_checked if liveness else self._checked, instance, spec))

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
        version, instances = self._fleets.version, self._fleets.all()
        observed = {o.id: o for o in self._driver.list()}
        if version != self._kept_version:
            self._kept_version = version
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
                self._driver.stop(instance.id, grace=0)  # forget it; its logs are kept
