"""What makes a release: the service's config (its spec with the image pinned by digest).

Any change to the image or to any key of the service makes a new release; the config
digest is a hash of the canonical JSON of that config, so key order never matters. The
store keeps the config as JSON; a release record gives it back typed (`Release.spec`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from corral.ports.records import Deployment, DeploymentOutcome, ImageConfig
from corral.spec.model import SecretRef, ServiceSpec


def release_config(service: ServiceSpec, image_digest: str) -> dict[str, Any]:
    """The service spec as JSON-able data, with `image` replaced by the pinned digest."""
    config = service.model_dump(mode="json", by_alias=True)
    config["image"] = image_digest
    return config


def config_digest(config: dict[str, Any]) -> str:
    """A stable digest of a release config.

    >>> config_digest({"b": 1, "a": [1, 2]}) == config_digest({"a": [1, 2], "b": 1})
    True
    """
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def service_of(config: dict[str, Any]) -> ServiceSpec:
    """The ServiceSpec a config describes, for a config that is not a release yet (a deploy
    request's); a stored release carries its own, parsed once, as `Release.spec`."""
    return ServiceSpec.model_validate(config)


def secret_refs(service: ServiceSpec) -> dict[tuple[str, str], SecretRef]:
    """The secrets `service` references, by where each goes: ("env", NAME) for an
    environment variable, ("files", PATH) for a secret file; plain env values are not.

    >>> spec = ServiceSpec(image="web", env={"A": "1", "DB": {"secret": "db"}},
    ...                    files={"/run/secrets/db": {"secret": "db"}})
    >>> sorted((where, ref.secret) for where, ref in secret_refs(spec).items())
    [(('env', 'DB'), 'db'), (('files', '/run/secrets/db'), 'db')]
    """
    return {**{("env", k): v for k, v in service.env.items() if not isinstance(v, str)},
            **{("files", k): v for k, v in service.files.items()}}


def instance_argv(service: ServiceSpec, image: ImageConfig) -> tuple[str, ...]:
    """What an instance runs: the service's command, else the image's entrypoint + cmd."""
    if service.command:
        return service.command
    return (*image.entrypoint, *image.cmd)


def instance_env(name: str, service: ServiceSpec, image: ImageConfig, release_label: str,
                 instance_id: str) -> dict[str, str]:
    """Image env, overridden by the service env, plus corral's own variables. Secret
    references are left out: their values reach the driver apart (InstanceSpec.secret_env),
    never through what a driver records."""
    return {**image.env, **service.plain_env, "CORRAL_SERVICE": name,
            "CORRAL_RELEASE": release_label, "CORRAL_INSTANCE": instance_id}


def release_outcome(version: int, live: int | None, bad: Mapping[int, str],
                    deployments: Sequence[Deployment]) -> str:
    """What became of a release, in the words `corral releases` shows: `live`; else the end
    of the newest deployment to it when that went wrong: `rolled back`, `failed`, `aborted`
    (or `deploying` while it runs); else `bad` if it is marked bad (the release a `corral
    rollback` left: redeploying it needs --force); else `replaced` (it was live; a later
    release took over), or `not deployed` if no deployment went to it.

    >>> from corral.ports.records import DeploymentOutcome as O
    >>> def d(to, outcome):
    ...     return Deployment(id=to, service="web", strategy="rolling", from_release=None,
    ...                       to_release=to, outcome=outcome, started_at=float(to))
    >>> history = [d(3, O.ROLLED_BACK), d(2, O.SUCCEEDED), d(1, O.SUCCEEDED)]
    >>> bad = {3: "rolled back", 1: "rolled back from"}
    >>> [release_outcome(v, 2, bad, history) for v in (1, 2, 3, 4)]
    ['bad', 'live', 'rolled back', 'not deployed']
    >>> release_outcome(1, 2, {}, history)
    'replaced'
    """
    if version == live:
        return "live"
    mine = [d for d in deployments if d.to_release == version]
    newest = max(mine, key=lambda d: (d.started_at, d.id)) if mine else None
    if newest is not None and newest.outcome is not DeploymentOutcome.SUCCEEDED:
        return "deploying" if newest.outcome is DeploymentOutcome.RUNNING \
            else str(newest.outcome)
    if version in bad:
        return "bad"
    return "not deployed" if newest is None else "replaced"
