"""Deployments: move a service to a release by executing a strategy's plans.

Runs the loop observe → plan (core) → execute → record, holds the service's lock, writes
each step to the store and reports progress through `emit`. A failed deployment is rolled
back by the same loop aimed at the previous release, so the old release keeps serving.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.core.release import config_digest, service_of
from corral.core.rolling import RollingTarget, plan_rolling
from corral.core.steps import AwaitHealthy, DrainAndStop, Plan, StartInstances, StopInstances
from corral.core.weights import backends_for, traffic_shares
from corral.engine.instances import Hands
from corral.errors import CorralError, DeployError, LockHeld
from corral.ports.records import Deployment, DeploymentOutcome, Event, Release
from corral.ports.store import Store
from corral.spec.model import ServiceSpec

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]
LOCK_TTL = 60.0


@dataclass(frozen=True)
class DeployRequest:
    service: str
    image_digest: str
    config: dict[str, Any]
    actor: str
    git_commit: str | None = None
    git_commit_time: float | None = None


class Deployer:
    """Runs one deployment at a time per service (the store lock makes sure of it)."""

    def __init__(self, store: Store, hands: Hands, stopping: threading.Event) -> None:
        self._store = store
        self._hands = hands
        self._clock = hands.clock
        self._stopping = stopping

    def deploy(self, request: DeployRequest, emit: Emit) -> Deployment:
        service = service_of(request.config)
        if service.strategy != "rolling":
            raise DeployError(f"strategy {service.strategy!r} is not available yet; this "
                              "version of corral deploys with the rolling strategy",
                              hint=f'set strategy = "rolling" in [services.{request.service}]')
        release = self._release_for(request)
        live = self._store.live_release(request.service)
        holder = (f"{request.actor}, deploying {request.service} {release.label}, "
                  f"request {secrets.token_hex(3)}")
        lock = f"deploy/{request.service}"
        taken = self._store.acquire_lock(lock, holder, self._clock(), LOCK_TTL)
        if taken is not None:
            raise LockHeld(f"another deployment of {request.service} is running ({taken})",
                           hint="wait for it to finish (`corral status`) and deploy again")
        try:
            deployment = self._store.create_deployment(
                request.service, service.strategy, live, release.version, service.replicas,
                self._clock(), self._event(request.actor, "deployment.start", request.service, {
                    "from": live, "to": release.version, "image": release.image_digest}))
            emit({"type": "start", "deployment": deployment.id, "service": request.service,
                  "from": live, "to": release.version, "strategy": service.strategy,
                  "replicas": service.replicas, "image": release.image_digest})
            try:
                return self._run(deployment, release, service, live, request.actor, emit, lock,
                                 holder)
            except CorralError as exc:
                self._finish(deployment, DeploymentOutcome.FAILED, exc.message, request.actor,
                             emit)
                raise
        finally:
            self._store.release_lock(lock, holder)

    def _release_for(self, request: DeployRequest) -> Release:
        digest = config_digest(request.config)
        found = self._store.find_release(request.service, request.image_digest, digest)
        if found is not None:
            return found
        return self._store.add_release(
            request.service, request.image_digest, digest, request.config, self._clock(),
            self._event(request.actor, "release.create", request.service,
                        {"image": request.image_digest, "config": digest}),
            git_commit=request.git_commit, git_commit_time=request.git_commit_time)

    def _run(self, deployment: Deployment, release: Release, service: ServiceSpec,
             live: int | None, actor: str, emit: Emit, lock: str, holder: str) -> Deployment:
        self._hands.fleets.set_listen(release.service, service.router.listen
                                      if service.router else None)
        self._hands.fleets.resync(release.service)
        failure = self._converge(deployment, release, service, emit, lock, holder)
        if failure is None:
            self._store.set_live_release(release.service, release.version, self._event(
                actor, "release.live", release.service, {"release": release.version}))
            return self._finish(deployment, DeploymentOutcome.SUCCEEDED, None, actor, emit)
        emit({"type": "failure", "reason": failure})
        previous = self._store.get_release(release.service, live) if live else None
        if previous is None:
            self._stop_release(release, "deployment failed")
            return self._finish(deployment, DeploymentOutcome.FAILED, failure, actor, emit)
        emit({"type": "rollback", "to": previous.version})
        self._stop_unready(release)
        back = self._converge(deployment, previous, service_of(previous.config), emit, lock,
                              holder)
        if back is not None:
            return self._finish(deployment, DeploymentOutcome.FAILED,
                                f"{failure}; rollback also failed: {back}", actor, emit)
        return self._finish(deployment, DeploymentOutcome.ROLLED_BACK, failure, actor, emit)

    def _converge(self, deployment: Deployment, release: Release, service: ServiceSpec,
                  emit: Emit, lock: str, holder: str) -> str | None:
        """Execute rolling plans until the release runs alone; the failure text if not."""
        target = RollingTarget(release.version, service.replicas, service.rolling.max_surge,
                               service.rolling.max_unavailable, service.health.start_timeout)
        fleets = self._hands.fleets
        while not self._stopping.is_set():
            self._store.acquire_lock(lock, holder, self._clock(), LOCK_TTL)
            plan = plan_rolling(target, fleets.of_service(release.service), self._clock())
            if plan.failure or plan.done:
                self._hands.wait_for_drains()
                return plan.failure
            self._execute(deployment, release, service, plan, emit)
        return "the controller is shutting down"

    def _execute(self, deployment: Deployment, release: Release, service: ServiceSpec,
                 plan: Plan, emit: Emit) -> None:
        hands = self._hands
        for step in plan.steps:
            if isinstance(step, AwaitHealthy):
                with hands.fleets.changed:
                    hands.fleets.changed.wait(timeout=0.25)
                continue
            detail: dict[str, Any]
            if isinstance(step, StartInstances):
                started = [hands.start(release) for _ in range(step.count)]
                detail = {"release": step.release, "instances": [i.id for i in started]}
            elif isinstance(step, DrainAndStop):
                for instance_id in step.instance_ids:
                    hands.drain_in_background(instance_id, step.reason, service.drain_timeout,
                                              service.stop_grace)
                detail = {"instances": list(step.instance_ids), "reason": step.reason}
            elif isinstance(step, StopInstances):
                for instance_id in step.instance_ids:
                    hands.drain_in_background(instance_id, step.reason, 0.0, service.stop_grace)
                detail = {"instances": list(step.instance_ids), "reason": step.reason}
            kind = type(step).__name__
            self._store.add_step(deployment.id, kind, detail, self._clock())
            emit({"type": "step", "kind": kind, **detail,
                  "weights": traffic_shares(backends_for(
                      hands.fleets.of_service(release.service)))})

    def _stop_unready(self, release: Release) -> None:
        for instance in self._hands.fleets.of_service(release.service):
            if instance.release == release.version and instance.state.value != "ready":
                self._hands.drain_and_stop(instance.id, "rolled back", 0.0, 1.0)

    def _stop_release(self, release: Release, reason: str) -> None:
        for instance in self._hands.fleets.of_service(release.service):
            if instance.release == release.version:
                self._hands.drain_and_stop(instance.id, reason, 5.0, 1.0)

    def _finish(self, deployment: Deployment, outcome: DeploymentOutcome, reason: str | None,
                actor: str, emit: Emit) -> Deployment:
        done = self._store.finish_deployment(
            deployment.id, outcome, self._clock(), reason,
            self._event(actor, f"deployment.{outcome.value.replace(' ', '_')}",
                        deployment.service, {"deployment": deployment.id, "reason": reason}))
        emit({"type": "result", "deployment": done.id, "outcome": outcome.value,
              "reason": reason, "seconds": round((done.ended_at or 0) - done.started_at, 3)})
        return done

    def _event(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> Event:
        return Event(at=self._clock(), actor=actor, action=action, subject=subject,
                     detail=detail)


def raise_for_outcome(deployment: Deployment) -> None:
    if deployment.outcome is not DeploymentOutcome.SUCCEEDED:
        raise DeployError(f"deployment {deployment.id} of {deployment.service}: "
                          f"{deployment.outcome.value}: {deployment.reason}")
