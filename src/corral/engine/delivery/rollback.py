"""`corral rollback`: put a service back on an earlier release, as fast as it can be done.

When that release's fleet is still warm (blue-green's rollback window) and can carry the
whole load, all traffic moves in one router update; otherwise the release is deployed by
the fast path (every instance replaced at once, no analysis, no gate). Once it succeeded
the release rolled back from is marked bad; a rollback that cannot start (the target's
image is gone, e.g. collected by gc) changes nothing and says how to get the image back.
Which release and which path are decided here from the store; the work is the deployer's.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.core.delivery import Progress, fleet, ready
from corral.core.rollback import is_warm_switch_possible, previous_release
from corral.core.strategies import fast_rollback
from corral.engine.delivery.deploy import Deployer
from corral.engine.delivery.execute import Emit
from corral.engine.delivery.instances import Instances
from corral.engine.delivery.locks import lock_name, rollback_holder
from corral.errors import DeployError, ImageError, LockHeld, NotFound
from corral.ports.records import Deployment, DeploymentOutcome, Event, Release
from corral.ports.store import Store


@dataclass(frozen=True)
class RollbackRequest:
    service: str
    actor: str
    to: int | None = None  # default: the release before the live one


def rollback_target(store: Store, service: str, to: int | None) -> tuple[int, int]:
    """(live release, release to go back to)."""
    live = store.live_release(service)
    if live is None:
        raise NotFound(f"service {service!r} has no live release to roll back",
                       hint=f"deploy it first: corral deploy {service}")
    if to is not None:
        if store.get_release(service, to) is None:
            raise NotFound(f"release {service} v{to} is not retained",
                           hint=f"`corral releases {service}` lists them")
        if to == live:
            raise DeployError(f"v{to} is already the live release of {service}")
        return live, to
    previous = previous_release(live, store.list_deployments(service),
                                [r.version for r in store.list_releases(service)],
                                store.bad_releases(service))
    if previous is None:
        raise NotFound(f"{service} has no release before v{live} to roll back to")
    return live, previous


def require_image(instances: Instances, release: Release, state_dir: Path | None) -> None:
    """Raise DeployError, before anything changes, when the image of `release` cannot be
    started here (gone from the layout, e.g. collected by `corral gc`); the hint says how
    to get it back: pull it from where it was pushed, or rebuild its git commit."""
    try:
        instances.images.config(release.image_digest)
        instances.images.unpack(release.image_digest)
    except (NotFound, ImageError):
        raise DeployError(
            f"cannot roll {release.service} back to {release.label}: its image "
            f"{release.image_digest[:19]}… is not here any more; nothing was changed",
            hint=_recovery_hint(release, state_dir)) from None


def _recovery_hint(release: Release, state_dir: Path | None) -> str:
    from corral.engine.images.registry import pull_references

    back = f"then `corral rollback {release.service} --to {release.label}`"
    ways = [f"`corral pull {ref}`" for ref in
            (pull_references(state_dir, release.image_digest) if state_dir else [])[:1]]
    if release.git_commit:
        # Builds are reproducible: the same commit, built clean, gives the same digest.
        ways.append(f"rebuild it from its commit: `git checkout {release.git_commit[:12]}` "
                    "in a clean tree and `corral build`")
    if not ways:
        return ("it was never pushed and has no git commit on record: deploy the code you "
                "want instead (`corral deploy`)")
    return " or ".join(ways) + f"; {back}"


class Rollback:
    def __init__(self, store: Store, instances: Instances, deployer: Deployer,
                 state_dir: Path | None = None) -> None:
        self._store = store
        self._instances = instances
        self._deployer = deployer
        self._state_dir = state_dir  # where push/pull remember registries, for the hint

    def run(self, request: RollbackRequest, emit: Emit) -> Deployment:
        began = time.monotonic()
        name = request.service
        live, to = rollback_target(self._store, name, request.to)
        release = self._store.get_release(name, to)
        assert release is not None
        service = release.spec
        strategy = fast_rollback(service)  # unless a warm fleet can take it all at once
        require_image(self._instances, release, self._state_dir)
        holder = rollback_holder(request.actor, name, to, secrets.token_hex(3))
        taken = self._store.acquire_lock(lock_name(name), holder, self._instances.clock(), 60.0)
        if taken is not None:
            raise LockHeld(f"a deployment of {name} is running ({taken})",
                           hint=f"stop it first: corral abort {name}")
        try:
            deployment = self._store.create_deployment(
                name, strategy.name, live, to, service.replicas, self._instances.clock(),
                self._event(request.actor, "deployment.start", name,
                            {"from": live, "to": to, "strategy": strategy.name}))
            progress = Progress(phase="start", holder=holder)
            self._store.save_progress(deployment.id, progress.to_json(), self._instances.clock())
            emit({"type": "start", "deployment": deployment.id, "service": name, "from": live,
                  "to": to, "strategy": strategy.name, "replicas": service.replicas,
                  "image": release.image_digest})
            warm = self._deployer.traffic.warm(name)
            warm_ready = ready(fleet(self._instances.fleets.of_service(name), to))
            if is_warm_switch_possible(int(warm["release"]) if warm else None, to,
                                       len(warm_ready), service.replicas):
                return self._switch(deployment, live, to, service.replicas, request.actor,
                                    emit, began)
            emit({"type": "fast-path", "why": f"no warm fleet of v{to} can carry the load"})
            self._deployer.traffic.equal(name, request.actor)
            # The deployer marks v{live} bad once (and only if) the fast path succeeded.
            return self._deployer.run(deployment, release, progress, request.actor, emit,
                                      holder)
        finally:
            self._store.release_lock(lock_name(name), holder)

    def _switch(self, deployment: Deployment, live: int, to: int, replicas: int, actor: str,
                emit: Emit, began: float) -> Deployment:
        """One router update moves all traffic to the warm fleet; then the rest is tidying."""
        name = deployment.service
        # Saved first: a controller killed right after the switch must not restore the old
        # weights when it comes back.
        self._store.set_traffic(name, {"weights": {str(to): 100, str(live): 0},
                                       "replicas": replicas}, self._event(
            actor, "traffic.set", name, {"why": f"rollback to the warm fleet of v{to}"}))
        self._instances.fleets.set_fleet_weights(name, {to: 100, live: 0}, replicas)
        switched_ms = round((time.monotonic() - began) * 1000, 1)
        self._store.add_step(deployment.id, "SetWeights", {"fleets": {f"v{to}": 100,
                                                                      f"v{live}": 0},
                                                           "switched_ms": switched_ms},
                             self._instances.clock())
        emit({"type": "step", "kind": "SetWeights", "fleets": {f"v{to}": 100, f"v{live}": 0},
              "weights": {f"v{to}": 100.0, f"v{live}": 0.0}, "switched_ms": switched_ms})
        self._deployer.crash.after("SetWeights")
        self._store.set_live_release(name, to, self._event(actor, "release.live", name,
                                                           {"release": to}))
        self._deployer.mark_rolled_back(name, live, to, actor)
        old = self._instances.fleets.release(name, live)
        spec = old.spec if old else None
        for instance in fleet(self._instances.fleets.of_service(name), live):
            self._instances.drain_in_background(instance.id, f"rolled back to v{to}",
                                            spec.drain_timeout if spec else 30.0,
                                            spec.stop_grace if spec else 10.0)
        self._deployer.traffic.equal(name, actor)
        done = self._store.finish_deployment(
            deployment.id, DeploymentOutcome.SUCCEEDED, self._instances.clock(),
            f"switched back to the warm fleet of v{to} in {switched_ms}ms",
            self._event(actor, "deployment.succeeded", name, {"deployment": deployment.id}))
        emit({"type": "result", "deployment": done.id, "outcome": done.outcome.value,
              "reason": done.reason, "switched_ms": switched_ms,
              "seconds": round((done.ended_at or 0) - done.started_at, 3)})
        return done

    def _event(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> Event:
        return Event(at=self._instances.clock(), actor=actor, action=action, subject=subject,
                     detail=detail)
