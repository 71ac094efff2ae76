"""Executing a decision's steps with the engine's instances; recording and reporting each.

Steps come from core strategies; this module only carries them out (start, drain, stop,
set weights, wait) and writes each to the store and the event stream. It also holds the
injectable kill points (CORRAL_CRASH_AT=<step kind>:<n>) the crash-safety tests use.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from corral.core.steps import (
    AwaitHealthy,
    AwaitPromotion,
    DrainAndStop,
    RecordAnalysis,
    SetWeights,
    StartInstances,
    Step,
    StopInstances,
    Wait,
)
from corral.core.weights import backends_for, traffic_shares
from corral.engine.delivery.instances import Instances
from corral.errors import NotFound
from corral.ports.records import Deployment, Event, Release
from corral.ports.store import Store
from corral.spec.model import ServiceSpec

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]
CRASH_ENV = "CORRAL_CRASH_AT"


class CrashPoints:
    """`CORRAL_CRASH_AT=SetWeights:2` kills this process (os._exit, like kill -9) right after
    the second SetWeights it executes; tests use it to crash at every step of a strategy."""

    def __init__(self, spec: str | None = None) -> None:
        spec = os.environ.get(CRASH_ENV, "") if spec is None else spec
        kind, _, count = spec.partition(":")
        self._kind = kind or None
        self._at = int(count or 1)
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def after(self, kind: str) -> None:
        with self._lock:
            self._seen[kind] = self._seen.get(kind, 0) + 1
            if kind == self._kind and self._seen[kind] == self._at:
                log.warning("%s=%s:%d: crashing on purpose", CRASH_ENV, kind, self._at)
                logging.shutdown()
                os._exit(137)


class Executor:
    """Runs the steps of one deployment. `wake` is notified by promote/abort requests."""

    def __init__(self, store: Store, instances: Instances, deployment: Deployment,
                 service: ServiceSpec, emit: Emit, actor: str, wake: threading.Condition,
                 crash: CrashPoints) -> None:
        self._store = store
        self._instances = instances
        self._deployment = deployment
        self._service = service
        self._emit = emit
        self._actor = actor
        self._wake = wake
        self._crash = crash
        self._said: str | None = None
        self._checks_said: dict[str, tuple[int, int]] = {}  # instance -> (passes, failures)

    def run(self, steps: tuple[Step, ...]) -> None:
        for step in steps:
            if isinstance(step, AwaitHealthy):
                self._report_health(step.instance_ids)
                with self._instances.fleets.changed:
                    self._instances.fleets.changed.wait(timeout=0.25)
            elif isinstance(step, AwaitPromotion):
                self._say({"type": "gate", "release": step.release,
                           "hint": f"corral promote {self._deployment.service} | "
                                   f"corral abort {self._deployment.service}"})
                with self._wake:
                    self._wake.wait(timeout=0.5)
            elif isinstance(step, Wait):
                self._say({"type": "wait", "why": step.why, "until": step.until})
                with self._wake:
                    left = step.until - self._instances.clock()
                    self._wake.wait(timeout=max(0.0, min(0.5, left)))
            else:
                self._record(type(step).__name__, self._act(step))

    def _act(self, step: Step) -> dict[str, Any]:
        instances, service = self._instances, self._service
        if isinstance(step, StartInstances):
            release = self._release(step.release)
            return {"release": step.release,
                    "instances": start_side_by_side(instances, release, step.count)}
        if isinstance(step, DrainAndStop | StopInstances):
            drain = service.drain_timeout if isinstance(step, DrainAndStop) else 0.0
            for instance_id in step.instance_ids:
                instances.drain_in_background(instance_id, step.reason, drain, service.stop_grace)
            return {"instances": list(step.instance_ids), "reason": step.reason}
        if isinstance(step, SetWeights):
            self.set_weights(step.weights)
            return {"fleets": {f"v{k}": v for k, v in (step.weights or {}).items()}}
        assert isinstance(step, RecordAnalysis)
        detail = {"step": step.step, "result": step.result, "reason": step.reason,
                  "numbers": step.numbers,
                  "percent": self._service.canary.steps[step.step]}
        self._store.append_event(Event(
            at=self._instances.clock(), actor=self._actor, action="deployment.analysis",
            subject=self._deployment.service, detail={"deployment": self._deployment.id,
                                                      **detail}))
        self._emit({"type": "analysis", **detail})
        return detail

    def set_weights(self, weights: dict[int, int] | None) -> None:
        """Route by fleet weights now, and remember them for a restarted controller."""
        name = self._deployment.service
        replicas = self._service.replicas
        traffic = None if weights is None else {
            "weights": {str(k): v for k, v in weights.items()}, "replicas": replicas}
        self._store.set_traffic(name, traffic, Event(
            at=self._instances.clock(), actor=self._actor, action="traffic.set", subject=name,
            detail={"deployment": self._deployment.id, "traffic": traffic}))
        self._instances.fleets.set_fleet_weights(name, weights, replicas)

    def _record(self, kind: str, detail: dict[str, Any]) -> None:
        self._store.add_step(self._deployment.id, kind, detail, self._instances.clock())
        self._said = None
        if kind != "RecordAnalysis":
            self._emit({"type": "step", "kind": kind, **detail, "weights": self.shares()})
        self._crash.after(kind)

    def shares(self) -> dict[str, float]:
        fleets, name = self._instances.fleets, self._deployment.service
        return traffic_shares(backends_for(fleets.of_service(name), fleets.fleet_weights_of(name),
                                           self._service.replicas))

    def _report_health(self, waiting: tuple[str, ...]) -> None:
        """One `health` event per check of an instance still starting: its result, and the
        seconds waited of those allowed (a failing check is seen every attempt, not once)."""
        fleets = self._instances.fleets
        for instance_id in waiting:
            instance, record = fleets.get(instance_id), fleets.health_of(instance_id)
            seen = (record.passes, record.failures)
            if instance is None or seen == (0, 0) or self._checks_said.get(instance_id) == seen:
                continue
            self._checks_said[instance_id] = seen
            self._emit({"type": "health", "instance": instance_id,
                        "result": record.last_error if record.failures else "passed",
                        "attempt": record.failures or record.passes,
                        "waited": round(self._instances.clock() - instance.created_at, 1),
                        "timeout": self._service.health.start_timeout})

    def _say(self, event: dict[str, Any]) -> None:
        key = f"{event['type']}:{event.get('why', '')}"
        if key != self._said:  # one line per wait, not one per poll
            self._said = key
            self._emit(event)

    def _release(self, version: int) -> Release:
        found = self._instances.fleets.release(self._deployment.service, version)
        if found is None:
            raise NotFound(f"release {self._deployment.service} v{version} is not in the store")
        return found


def start_side_by_side(instances: Instances, release: Release, count: int) -> list[str]:
    """Start `count` instances of `release` at once: a driver whose start waits on a remote
    engine (a Swarm task to be scheduled and run) costs one start's time, not `count`. The
    first failure is raised once every start has ended; those that started are in the
    fleet, where the deployment's failure path stops them."""
    if count <= 1:
        return [instances.start(release).id for _ in range(count)]
    with ThreadPoolExecutor(max_workers=min(count, 8)) as pool:
        futures = [pool.submit(instances.start, release) for _ in range(count)]
    return [future.result().id for future in futures]
