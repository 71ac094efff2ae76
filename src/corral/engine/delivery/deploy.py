"""Deployments: move a service to a release by calling its strategy until it decides.

A strategy-agnostic loop: observe (instances, router stats, promote/abort requests) →
decide (core) → save the progress → execute the steps → repeat, holding the service's
lock. Progress is saved before steps run, so a deployment interrupted anywhere resumes
(delivery/resume.py). Rollback to a warm fleet lives in delivery/rollback.py. A release
that is already live is not deployed again: nothing runs and nothing is recorded.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from corral.core.capacity import Footprint
from corral.core.delivery import Decision, Observation, Progress, Target
from corral.core.release import config_digest, service_of
from corral.core.strategies import STRATEGIES, Strategy, recorded_strategy, strategy_for
from corral.engine.delivery.admission import admit
from corral.engine.delivery.execute import CrashPoints, Emit, Executor
from corral.engine.delivery.instances import Instances
from corral.engine.delivery.last_lines import with_last_lines
from corral.engine.delivery.locks import deployment_holder, holder_kind, lock_name
from corral.engine.delivery.request import DeployRequest
from corral.engine.delivery.traffic import Traffic
from corral.engine.images.trust import refuse_unsigned
from corral.errors import CorralError, DeployError, LockHeld, NotFound
from corral.ports.driver import HasLogPaths
from corral.ports.records import Deployment, DeploymentOutcome, Event, InstanceState, Release
from corral.ports.store import Store

log = logging.getLogger(__name__)

LOCK_TTL = 60.0
__all__ = ["Deployer", "Emit"]


class Deployer:
    """Runs one deployment at a time per service (the store lock makes sure of it)."""

    def __init__(self, store: Store, instances: Instances, stopping: threading.Event) -> None:
        self._store = store
        self._instances = instances
        self._clock = instances.clock
        self._stopping = stopping
        self.traffic = Traffic(store, instances)
        self.crash = CrashPoints()
        self._wake = threading.Condition()
        self._signals: dict[int, set[str]] = {}  # deployment id -> {"promote", "abort"}
        self._running: dict[str, int] = {}  # service -> deployment id run by this process

    # -- entry points ------------------------------------------------------------------
    def deploy(self, request: DeployRequest, emit: Emit) -> Deployment | None:
        """The deployment, or None when the release asked for is live already (an
        "unchanged" event says so; no deployment, no ledger entry)."""
        service = service_of(request.config)  # the request's config: no release yet
        strategy = strategy_for(service, request.strategy)
        if strategy is None:
            raise DeployError(f"unknown strategy {request.strategy!r}",
                              hint=f"use one of: {', '.join(sorted(STRATEGIES))}")
        # images (issue 3): require_signature is checked here too, not only by the CLI.
        refuse_unsigned(self._instances.images, self._store, request.service, service,
                        request.image_digest, request.actor, self._clock(), Path.cwd())
        release = self._release_for(request)
        # Unique per request: the same user deploying the same release twice must not
        # "re-acquire" the first one's lock.
        holder = deployment_holder(request.actor, request.service, release.label,
                                   secrets.token_hex(3))
        taken = self._take_lock(request.service, holder)
        if taken is not None:
            raise LockHeld(f"another deployment of {request.service} is running ({taken})",
                           hint="wait for it to finish (`corral status`), or stop it with "
                                f"`corral abort {request.service}`")
        try:
            live = self._store.live_release(request.service)  # read under the lock
            if release.version == live:
                emit({"type": "unchanged", "service": request.service, "release": live,
                      "image": release.image_digest})
                return None
            self._refuse_bad(release, request)
            admit(self._instances.driver, self._instances.fleets, release, strategy.name, live,
                  Footprint(request.reserve_memory, request.reserve_cpus))
            deployment = self._store.create_deployment(
                request.service, strategy.name, live, release.version, service.replicas,
                self._clock(), self._event(request.actor, "deployment.start", request.service, {
                    "from": live, "to": release.version, "image": release.image_digest,
                    "strategy": strategy.name}))
            progress = Progress(holder=holder)
            self._store.save_progress(deployment.id, progress.to_json(), self._clock())
            emit({"type": "start", "deployment": deployment.id, "service": request.service,
                  "from": live, "to": release.version, "strategy": strategy.name,
                  "replicas": service.replicas, "image": release.image_digest})
            self.traffic.retire_warm(request.service, request.actor, "a new deployment began")
            self.traffic.prepare(request.service, strategy, service.replicas, live)
            return self.run(deployment, release, progress, request.actor, emit, holder)
        finally:
            self._store.release_lock(lock_name(request.service), holder)

    def run(self, deployment: Deployment, release: Release, progress: Progress, actor: str,
            emit: Emit, holder: str) -> Deployment:
        """Drive a created (or resumed) deployment to its end with the strategy it was
        recorded with; errors finish it `failed`, with the instances it started stopped
        and the live release keeping the traffic."""
        service = release.spec
        strategy = recorded_strategy(deployment.strategy, service)
        self._running[deployment.service] = deployment.id
        try:
            self._instances.fleets.set_listen(release.service, service.router.listen
                                          if service.router else None)
            self._instances.fleets.set_preview(release.service, strategy.is_previewable)
            self._instances.fleets.resync(release.service)
            decision = self._drive(deployment, release, strategy, progress, actor, emit,
                                   holder)
            if decision is None:  # the controller is stopping: a later one resumes it
                return deployment
            return self._conclude(deployment, release, strategy, decision, actor, emit)
        except CorralError as exc:
            self._retire_started(deployment, actor)
            self._finish(deployment, DeploymentOutcome.FAILED, exc.message, actor, emit)
            raise
        finally:
            self._running.pop(deployment.service, None)
            self._signals.pop(deployment.id, None)

    def _take_lock(self, service: str, holder: str) -> str | None:
        """The lock, waiting out the brief holds of background loops (reconciler, warm
        keeper); any other hold (a deployment, a rollback) is refused at once."""
        deadline = time.monotonic() + 5.0
        while True:
            taken = self._store.acquire_lock(lock_name(service), holder, self._clock(), LOCK_TTL)
            if taken is None or not holder_kind(taken).is_brief:
                return taken
            if time.monotonic() > deadline:
                return taken
            time.sleep(0.05)

    def signal(self, service: str, what: str, actor: str | None = None) -> int:
        """Ask the running deployment of `service` to promote or abort; its id. The ledger
        records who asked (`deployment.signal`), when the API names the actor."""
        deployment_id = self._running.get(service)
        if deployment_id is None:
            raise NotFound(f"no deployment of {service} is running",
                           hint=f"`corral status {service}` shows the last one")
        if actor is not None:
            self._store.append_event(self._event(actor, "deployment.signal", service, {
                "deployment": deployment_id, "signal": what}))
        with self._wake:
            self._signals.setdefault(deployment_id, set()).add(what)
            self._wake.notify_all()
        return deployment_id

    # -- the loop ----------------------------------------------------------------------
    def _drive(self, deployment: Deployment, release: Release, strategy: Strategy,
               progress: Progress, actor: str, emit: Emit, holder: str) -> Decision | None:
        service = release.spec
        previous = deployment.from_release
        target = Target(release.version, None if previous == release.version else previous,
                        service.replicas, service.health.start_timeout)
        executor = Executor(self._store, self._instances, deployment, service, emit, actor,
                            self._wake, self.crash)
        while not self._stopping.is_set():
            self._store.acquire_lock(lock_name(deployment.service), holder, self._clock(),
                                     LOCK_TTL)
            decision = strategy.next_decision(target, progress,
                                              self._observe(deployment, strategy))
            if decision.progress != progress:
                if decision.progress.phase == "retreat" and progress.phase != "retreat":
                    emit({"type": "rollback", "to": target.previous,
                          "reason": self._in_own_words(deployment, decision.progress.reason)})
                self._store.save_progress(deployment.id, decision.progress.to_json(),
                                          self._clock())
                progress = decision.progress
            executor.run(decision.steps)
            if decision.outcome is not None:
                self._instances.wait_for_drains()
                return decision
        return None

    def _observe(self, deployment: Deployment, strategy: Strategy) -> Observation:
        name = deployment.service
        failed = [i for i in self._store.list_instances(name, live_only=False)
                  if i.state is InstanceState.FAILED and i.created_at >= deployment.started_at]
        stats = {}
        if (strategy.needs_router_stats and self._instances.router is not None
                and self._instances.fleets.listen_of(name)):
            stats = self._instances.router.stats(name)
        signals = self._signals.get(deployment.id, set())
        return Observation(tuple(self._instances.fleets.of_service(name)) + tuple(failed),
                           self._clock(), stats, "promote" in signals, "abort" in signals)

    def _conclude(self, deployment: Deployment, release: Release, strategy: Strategy,
                  decision: Decision, actor: str, emit: Emit) -> Deployment:
        outcome = decision.outcome or DeploymentOutcome.FAILED
        name = deployment.service
        if outcome is DeploymentOutcome.SUCCEEDED:
            self._store.set_live_release(name, release.version, self._event(
                actor, "release.live", name, {"release": release.version}))
            self.traffic.settle(deployment, release.spec, strategy, actor)
            left = deployment.from_release
            if strategy.is_fast_rollback and left not in (None, release.version):
                self.mark_rolled_back(name, int(left or 0), release.version, actor)
        else:
            self.traffic.equal(name, actor)
            if outcome is DeploymentOutcome.ROLLED_BACK:
                why = decision.reason or "rolled back"
                self._store.set_release_mark(name, release.version, why, self._event(
                    actor, "release.bad", name, {"release": release.version, "reason": why}))
        reason = decision.reason if outcome is DeploymentOutcome.SUCCEEDED else \
            self._in_own_words(deployment, decision.reason)
        return self._finish(deployment, outcome, reason, actor, emit)

    def _in_own_words(self, deployment: Deployment, reason: str | None) -> str | None:
        """A failure reason that names an instance, followed by that instance's last lines
        (engine/delivery/last_lines.py)."""
        driver = self._instances.driver
        return with_last_lines(reason, [
            i for i in self._store.list_instances(deployment.service, live_only=False)
            if i.created_at >= deployment.started_at],
            driver.log_paths if isinstance(driver, HasLogPaths) else None)

    def _retire_started(self, deployment: Deployment, actor: str) -> None:
        """After an error: stop what this deployment started of a release that is not live,
        and share traffic among what is left (the live fleet), as if it never began."""
        name = deployment.service
        if deployment.to_release == self._store.live_release(name):
            return
        target = self._instances.fleets.release(name, deployment.to_release)
        spec = target.spec if target else None
        for instance in self._instances.fleets.of_service(name):
            if (instance.release == deployment.to_release
                    and instance.created_at >= deployment.started_at
                    and instance.state is not InstanceState.DRAINING):
                self._instances.drain_in_background(
                    instance.id, f"deployment #{deployment.id} failed",
                    spec.drain_timeout if spec else 30.0, spec.stop_grace if spec else 10.0)
        self.traffic.equal(name, actor)

    def mark_rolled_back(self, service: str, left: int, to: int, actor: str) -> None:
        """Mark the release a succeeded rollback left bad (only then: a rollback that failed
        leaves the live release as it was, live and deployable)."""
        why = f"rolled back to v{to} by {actor}"
        self._store.set_release_mark(service, left, why, self._event(
            actor, "release.bad", service, {"release": left, "reason": why}))

    # -- records -----------------------------------------------------------------------
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

    def _refuse_bad(self, release: Release, request: DeployRequest) -> None:
        bad = self._store.bad_releases(release.service).get(release.version)
        if bad is None:
            return
        if not request.force:
            raise DeployError(
                f"release {release.service} {release.label} (image "
                f"{release.image_digest[:19]}…) was rolled back and is marked bad: {bad}",
                hint="change the image or the config, or pass --force to deploy it again")
        self._store.set_release_mark(release.service, release.version, None, self._event(
            request.actor, "release.unmark", release.service,
            {"release": release.version, "reason": "deployed again with --force"}))

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
