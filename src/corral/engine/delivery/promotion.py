"""Promotion between environments: deploy to one environment the exact digest live and
healthy in another (never rebuilt), with the target's own config.

It reads the source environment's store, read-only; the target's gate (gate.py) still
applies. It deploys nothing itself: the target's controller runs the request, as for
`corral deploy`.
"""

from __future__ import annotations

import time
from dataclasses import replace

from corral.engine.delivery.request import DeployRequest, deploy_request
from corral.engine.workspace import Workspace, other_environment, store_if_any
from corral.errors import DeployError, NotFound
from corral.ports.records import Event, InstanceState, Release


def healthy_live_release(source: Workspace, service: str) -> Release:
    """`service`'s live release in `source`, if its instances are all ready (at least
    one); else NotFound or DeployError saying what is wrong there."""
    where = source.qualified(service)
    store = store_if_any(source)
    live = store.live_release(service) if store else None
    release = store.get_release(service, live) if store and live is not None else None
    if store is None or release is None:
        raise NotFound(f"{where} has no live release to promote",
                       hint=f"deploy it there first: corral deploy {service} --env {source.env}")
    instances = [i for i in store.list_instances(service) if i.release == live]
    not_ready = [i for i in instances if i.state is not InstanceState.READY]
    if not instances or not_ready:
        states = ", ".join(f"{i.id} {i.state.value}" for i in not_ready) or "no instance"
        raise DeployError(f"{where} {release.label} is live but not healthy ({states})",
                          hint="promote once every instance of it is ready "
                          f"(corral status --env {source.env})")
    return release


def promotion_request(target: Workspace, source_env: str, service: str) -> DeployRequest:
    """A deploy request for `target` running the exact digest live and healthy in
    `source_env`, with the target's own config; refused by the target's gate first."""
    if target.env is None or source_env == target.env:
        raise DeployError(f"cannot promote from {source_env!r} to {target.env!r}",
                          hint="name two different environments of the spec: "
                          f"corral promote {service} --from staging --to prod")
    source = healthy_live_release(other_environment(target, source_env), service)
    request = deploy_request(target, service, source.image_digest)  # the gate runs there
    # The commit is the one the image was built from, not this checkout's: DORA's lead
    # time runs from it to live in the last environment.
    return replace(request, git_commit=source.git_commit,
                   git_commit_time=source.git_commit_time)


def record_promotion(target: Workspace, service: str, source_env: str, request: DeployRequest,
                     outcomes: list[str]) -> None:
    """The `environment.promote` ledger entry in the target's ledger: from where, which
    digest, and how the deployment ended."""
    target.store.append_event(Event(
        at=time.time(), actor=request.actor, action="environment.promote", subject=service,
        detail={"from": f"{source_env}/{service}", "to": target.qualified(service),
                "image": request.image_digest, "git_commit": request.git_commit,
                "outcome": outcomes[-1] if outcomes else "no result"}))
