"""Resuming deployments a killed controller left running.

At start (`prepare`, before the first router sync) the saved fleet weights are restored and
drains that were cut short are finished; then (`start`, once health checks run) every
deployment still `running` continues from its saved progress in its own thread. The
strategies do the rest: they compare what was saved with what is observed.
"""

from __future__ import annotations

import logging
import threading

from corral.core.delivery import Progress
from corral.engine.delivery.deploy import Deployer
from corral.engine.delivery.instances import Instances
from corral.engine.delivery.locks import lock_name, resumed_holder
from corral.errors import CorralError
from corral.ports.records import Deployment, DeploymentOutcome, Event, InstanceState
from corral.ports.store import Store

log = logging.getLogger(__name__)


class Resumer:
    """A controller loop that resumes interrupted deployments once, at start."""

    def __init__(self, store: Store, instances: Instances, deployer: Deployer, actor: str) -> None:
        self._store = store
        self._instances = instances
        self._deployer = deployer
        self._actor = actor
        self.threads: list[threading.Thread] = []

    def prepare(self) -> None:
        self._deployer.traffic.restore()
        for instance in self._instances.fleets.all():
            if instance.state is InstanceState.DRAINING:
                log.info("finishing the drain of %s", instance.id)
                self._instances.drain_in_background(instance.id, instance.reason or "drained",
                                                5.0, 5.0)

    def interrupted(self) -> list[Deployment]:
        return [d for d in self._store.list_deployments()
                if d.outcome is DeploymentOutcome.RUNNING]

    def start(self) -> None:
        for deployment in self.interrupted():
            thread = threading.Thread(target=self._resume, args=(deployment,),
                                      name=f"resume-{deployment.id}", daemon=True)
            self.threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Resumed deployments stop with the controller's `stopping` event."""

    def _resume(self, deployment: Deployment) -> None:
        release = self._store.get_release(deployment.service, deployment.to_release)
        saved = self._store.get_progress(deployment.id)
        if release is None:
            self._abandon(deployment, "its release is not in the store")
            return
        progress = Progress.from_json(saved) if saved else Progress()
        log.info("resuming deployment #%d of %s at phase %s", deployment.id,
                 deployment.service, progress.phase)
        self._store.append_event(Event(
            at=self._instances.clock(), actor=self._actor, action="deployment.resume",
            subject=deployment.service, detail={"deployment": deployment.id,
                                                "phase": progress.phase}))
        holder = progress.holder or resumed_holder(deployment.id)
        try:
            self._deployer.run(deployment, release, progress, self._actor,
                               lambda event: log.info("resume: %s", event), holder)
        except CorralError as exc:
            log.error("resumed deployment #%d failed: %s", deployment.id, exc)
        finally:
            self._store.release_lock(lock_name(deployment.service), holder)

    def _abandon(self, deployment: Deployment, why: str) -> None:
        self._store.finish_deployment(
            deployment.id, DeploymentOutcome.FAILED, self._instances.clock(),
            f"could not resume: {why}", Event(
                at=self._instances.clock(), actor=self._actor, action="deployment.failed",
                subject=deployment.service, detail={"deployment": deployment.id}))

