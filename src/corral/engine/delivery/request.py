"""A deploy request: the service, the digest it should run and its release config, made in
the CLI's process before the controller sees anything.

It builds the service's image when the spec names one, refuses an unsigned image the
service requires signed, and pins trusted keys into the release config; it deploys nothing
(engine/delivery/deploy.py runs the request in the controller).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from corral.core.image_health import with_image_health
from corral.core.release import release_config, secret_refs
from corral.engine.delivery.gate import refuse_unpassed
from corral.engine.images.build import Progress, image_for_service, service_spec
from corral.engine.images.provenance import git_info
from corral.engine.images.trust import pin_trusted_keys, refuse_unsigned
from corral.engine.secrets import pin_secret_versions
from corral.engine.workspace import Workspace, current_actor
from corral.errors import NotFound
from corral.spec.model import ServiceSpec


@dataclass(frozen=True)
class DeployRequest:
    service: str
    image_digest: str
    config: dict[str, Any]
    actor: str
    git_commit: str | None = None
    git_commit_time: float | None = None
    force: bool = False  # deploy a release even if it was marked bad
    # `deploy --strategy`: how this one deployment runs. Never part of the release config,
    # so the next plain deploy of an unchanged service finds its release live.
    strategy: str | None = None
    # [capacity] of the spec: what capacity admission keeps for the system
    reserve_memory: int = 0
    reserve_cpus: float = 0.0

    def api_body(self, force: bool = False, strategy: str | None = None) -> dict[str, Any]:
        """The `/v1/deploy` body: the controller names the actor from the caller's token or
        unix credentials, never from what the client says, so `actor` is left out."""
        body = {k: v for k, v in self.__dict__.items() if k != "actor"}
        return body | {"force": force, "strategy": strategy}


def deploy_request(ws: Workspace, service: str, image: str | None = None,
                   progress: Progress | None = None) -> DeployRequest:
    digest = image_for_service(ws, service, image, progress)
    git = git_info(ws.folder)
    spec = service_spec(ws, service)
    # images.signing: refuse an unsigned image here, before the controller sees it.
    refuse_unsigned(ws.images, ws.store, service, spec, digest, current_actor(), time.time(),
                    ws.folder)
    # environments: require_passed + min_soak, before the controller sees anything
    refuse_unpassed(ws, service, digest)
    capacity = ws.loaded.spec.capacity
    return DeployRequest(service=service, image_digest=digest,
                         config=release_config_of(ws, spec, digest, service),
                         actor=current_actor(),
                         git_commit=git.commit, git_commit_time=git.commit_time,
                         reserve_memory=capacity.reserve_memory,
                         reserve_cpus=capacity.reserve_cpus)


def release_config_of(ws: Workspace, service: ServiceSpec, digest: str,
                      name: str = "") -> dict[str, Any]:
    """The release config of `service` (named `name`) running `digest`, as both plan and
    deploy make it: with no `health` in the spec, the image's healthcheck is the readiness
    check; trusted key files are pinned by their content; secrets by their newest version
    (a rotation makes a new release)."""
    with contextlib.suppress(NotFound):  # not here (yet): a deploy says so when it resolves
        service = with_image_health(service, ws.images.config(digest))
    config = pin_trusted_keys(release_config(service, digest), ws.folder)
    if secret_refs(service):
        config = pin_secret_versions(ws, name or "service", config)
    return config
