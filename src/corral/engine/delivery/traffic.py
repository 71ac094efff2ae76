"""Each service's traffic policy across deployments: fleet weights and the warm old fleet.

Blue-green leaves the previous fleet running at weight 0 for its rollback window; this
module records that (store.set_traffic), restores it when a controller starts, and retires
the warm fleet when the window ends or a new deployment begins. Decisions about weights
are core's; this only keeps the router, the store and the fleets in step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from corral.core.strategies import Strategy
from corral.engine.delivery.instances import Instances
from corral.engine.delivery.locks import WARM_KEEPER
from corral.engine.loop import BackgroundLoop
from corral.ports.records import Deployment, Event, InstanceState
from corral.ports.store import Store
from corral.spec.model import ServiceSpec

log = logging.getLogger(__name__)


def weights_of(traffic: dict[str, Any] | None) -> dict[int, int] | None:
    if not traffic or traffic.get("weights") is None:
        return None
    return {int(k): int(v) for k, v in traffic["weights"].items()}


class Traffic:
    def __init__(self, store: Store, instances: Instances) -> None:
        self._store = store
        self._instances = instances
        self.on_set: list[Callable[[], None]] = []  # after every change (the warm keeper)

    def restore(self) -> None:
        """Give the fleets every service's saved weights (before the first router sync)."""
        for service in self._store.services():
            traffic = self._store.get_traffic(service)
            weights = weights_of(traffic)
            if traffic and weights is not None:
                self._instances.fleets.set_fleet_weights(service, weights,
                                                     int(traffic.get("replicas", 0)))

    def prepare(self, service: str, strategy: Strategy, replicas: int,
                live: int | None) -> None:
        """The weights a deployment starts from, as its strategy says (e.g. all traffic
        pinned on the live fleet, so new instances get none until told)."""
        weights = strategy.initial_weights(live)
        traffic = None if weights is None else {
            "weights": {str(k): v for k, v in weights.items()}, "replicas": replicas}
        self._set(service, traffic, replicas, "deployment start")

    def settle(self, deployment: Deployment, spec: ServiceSpec, strategy: Strategy,
               actor: str) -> None:
        """After success: keep the old fleet warm for the window the strategy says, or go
        back to equal weights and retire it."""
        old = deployment.from_release
        window = strategy.warm_window(old, deployment.to_release)
        if old is not None and window > 0:
            self._set(deployment.service, {
                "weights": {str(deployment.to_release): 100, str(old): 0},
                "replicas": spec.replicas,
                "warm": {"release": old, "until": self._instances.clock() + window,
                         "from": deployment.to_release}}, spec.replicas, "old fleet warm",
                actor)
            return
        if old is not None and old != deployment.to_release:  # e.g. blue-green, no window
            self._drain_fleet(deployment.service, old, "replaced")
        self.equal(deployment.service, actor)

    def equal(self, service: str, actor: str = "corral") -> None:
        self._set(service, None, 0, "equal weights", actor)

    def warm(self, service: str) -> dict[str, Any] | None:
        traffic = self._store.get_traffic(service)
        return dict(traffic["warm"]) if traffic and traffic.get("warm") else None

    def retire_warm(self, service: str, actor: str, why: str) -> None:
        """Drain and stop the warm fleet, if the service has one."""
        warm = self.warm(service)
        if warm is None:
            return
        self._drain_fleet(service, int(warm["release"]), f"warm fleet retired: {why}")
        self.equal(service, actor)

    def _drain_fleet(self, service: str, release: int, why: str) -> None:
        """Drain and stop, in the background, every instance of `release` not yet draining."""
        spec = self._spec(service, release)
        for instance in self._instances.fleets.of_service(service):
            if instance.release == release and instance.state is not InstanceState.DRAINING:
                self._instances.drain_in_background(instance.id, why,
                                                    spec.drain_timeout if spec else 30.0,
                                                    spec.stop_grace if spec else 10.0)

    def _set(self, service: str, traffic: dict[str, Any] | None, replicas: int, why: str,
             actor: str = "corral") -> None:
        self._store.set_traffic(service, traffic, Event(
            at=self._instances.clock(), actor=actor, action="traffic.set", subject=service,
            detail={"traffic": traffic, "why": why}))
        self._instances.fleets.set_fleet_weights(service, weights_of(traffic),
                                             int((traffic or {}).get("replicas", replicas)))
        for listener in self.on_set:
            listener()

    def _spec(self, service: str, version: int) -> ServiceSpec | None:
        release = self._instances.fleets.release(service, version)
        return release.spec if release else None


class WarmKeeper:
    """A controller loop: retire warm fleets whose rollback window has ended. It sleeps until
    the first window ends (at most `idle`), and a change of traffic wakes it at once."""

    def __init__(self, traffic: Traffic, store: Store, instances: Instances, actor: str,
                 period: float = 1.0, idle: float = 60.0) -> None:
        self._traffic = traffic
        self._store = store
        self._instances = instances
        self._actor = actor
        self._period = period
        self._idle = idle
        self._loop = BackgroundLoop("warm-keeper", self.tick, period, what="warm fleet sweep")
        traffic.on_set.append(self._loop.wake)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop(timeout=5)

    def tick(self) -> float:
        """Retire the warm fleets that are due; the seconds until the next one is."""
        now = self._instances.clock()
        pause = self._idle
        for service in self._store.services():
            warm = self._traffic.warm(service)
            if not warm:
                continue
            until = float(warm["until"])
            if until > now:
                pause = min(pause, until - now)
                continue
            holder = WARM_KEEPER
            if self._store.acquire_lock(f"deploy/{service}", holder, now, 30.0) is None:
                try:
                    self._traffic.retire_warm(service, self._actor, "rollback window ended")
                finally:
                    self._store.release_lock(f"deploy/{service}", holder)
            else:
                pause = min(pause, self._period)  # a deployment holds it: look again soon
        return max(pause, 0.05)
