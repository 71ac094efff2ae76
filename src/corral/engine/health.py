"""The health monitor: checks every live instance on its interval and notices exits.

It only observes and reports to `Fleets`, which decides the new state through
core.health. It never restarts anything: replacing instances is the deployer's and the
reconciler's work.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from corral.engine.fleet import Clock, Fleets
from corral.ports.driver import Driver
from corral.ports.records import Instance, InstanceState
from corral.spec.model import HealthSpec

log = logging.getLogger(__name__)

HealthOf = Callable[[Instance], HealthSpec | None]
STARTING_PROBE = 0.1  # seconds between checks of an instance that is not ready yet
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


class HealthMonitor:
    """A background thread checking instances; `tick` is one sweep, usable from tests."""

    def __init__(self, fleets: Fleets, driver: Driver, health_of: HealthOf, clock: Clock,
                 resolution: float = 0.1) -> None:
        self._fleets = fleets
        self._driver = driver
        self._health_of = health_of
        self._clock = clock
        self._resolution = resolution
        self._due: dict[str, float] = {}
        self._busy: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="health")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.wait(self._resolution):
            try:
                self.tick()
            except Exception:  # the monitor must outlive any one bad sweep
                log.exception("health sweep failed")

    def tick(self) -> None:
        now = self._clock()
        self._notice_exits()
        for instance in self._fleets.all():
            if instance.state not in _CHECKED or instance.id in self._busy:
                continue
            health = self._health_of(instance)
            if health is None or now < self._due.get(instance.id, 0.0):
                continue
            # A starting instance is probed often: the sooner it is seen ready, the sooner
            # it takes traffic and the rollout moves on. Ready ones keep their interval.
            starting = instance.state is InstanceState.STARTING
            self._due[instance.id] = now + (min(health.interval, STARTING_PROBE)
                                            if starting else health.interval)
            self._busy.add(instance.id)
            self._pool.submit(self._check, instance, health)

    def _check(self, instance: Instance, health: HealthSpec) -> None:
        try:
            error = check_http(instance.address, health.path, health.timeout)
            self._fleets.record_check(instance.id, error is None, error, health.healthy_after,
                                      health.unhealthy_after)
        finally:
            self._busy.discard(instance.id)

    def _notice_exits(self) -> None:
        # Snapshot the fleet before listing the driver: an instance added after the listing
        # would otherwise look as if it had vanished.
        instances = self._fleets.all()
        observed = {o.id: o for o in self._driver.list()}
        for instance in instances:
            if instance.state is InstanceState.DRAINING:
                continue
            seen = observed.get(instance.id)
            if seen is None or not seen.running:
                code = seen.exit_code if seen else None
                reason = "exited" if code is None else f"exited with code {code}"
                self._fleets.move(instance.id, InstanceState.FAILED, reason)
                self._due.pop(instance.id, None)
                self._driver.stop(instance.id, grace=0)  # forget it; its logs are kept
