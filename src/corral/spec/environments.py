"""[environments.NAME]: named targets (staging, prod) that overlay a few service keys.

The merge is explicit and one level deep, never an inheritance chain (Kamal's destinations
surprise their users there): for each service an environment names, `replicas`,
`strategy`, `listen`, `driver` and `resources` (the whole table, never key by key) replace
the service's value; `env` adds its keys to the service's `env`, a key set in both taking
the environment's value. Nothing else is inherited or merged. `effective_spec` gives the
spec one environment sees (`corral validate --env NAME --print` shows it). Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from corral.spec.model import (
    _NAME,
    NAME_PATTERN,
    RouterSpec,
    ServiceOverlay,
    ServiceSpec,
    Spec,
    _check_one_driver,
)


def check_environments(spec: Spec) -> None:
    """What one environment's section cannot say alone: names, one default, services and
    environments that exist, and listen addresses no two environments share (each has its
    own router on this machine). Raises ValueError, which the spec loader locates."""
    environments = spec.environments
    for name, environment in environments.items():
        if not _NAME.match(name):
            raise ValueError(f"environment name {name!r} must match {NAME_PATTERN}")
        for service in environment.services:
            if service not in spec.services:
                raise ValueError(f"environments.{name}.services.{service}: no such service "
                                 f"(known: {', '.join(sorted(spec.services)) or 'none'})")
        for other in environment.require_passed:
            if other not in environments or other == name:
                raise ValueError(f"environments.{name}.require_passed: {other!r} is not "
                                 "another environment of this spec")
    defaults = sorted(n for n, e in environments.items() if e.default)
    if len(defaults) > 1:
        raise ValueError(f"only one environment can be the default; {', '.join(defaults)} "
                         "all say default = true")
    _check_listens(spec)
    for name in environments:
        _check_driver(spec, name)


def _check_driver(spec: Spec, environment: str) -> None:
    """What the spec checks of its services' drivers holds in each environment too: one
    driver for all, and a registry for swarm."""
    services = effective_services(spec, environment)
    try:
        _check_one_driver(services)
    except ValueError as error:
        raise ValueError(f"environments.{environment}: {error} (after its overlays)") from None
    if any(s.driver == "swarm" for s in services.values()) and not spec.drivers.swarm.registry:
        raise ValueError(f'environments.{environment}: driver = "swarm" needs [drivers.swarm] '
                         'registry = "HOST:PORT/PREFIX": the nodes pull images from there')


def _check_listens(spec: Spec) -> None:
    claimed: dict[str, str] = {}
    for name in spec.environments:
        for service, merged in effective_services(spec, name).items():
            if merged.router is None:
                continue
            other = claimed.setdefault(merged.router.listen, f"{name}/{service}")
            if other != f"{name}/{service}":
                raise ValueError(
                    f"{name}/{service} and {other} would both listen on "
                    f"{merged.router.listen}: set environments.{name}.services.{service}."
                    "listen to an address of its own")


def overlay_service(service: ServiceSpec, overlay: ServiceOverlay) -> ServiceSpec:
    """`service` as an environment sees it (the merge rules of the module docstring).

    >>> base = ServiceSpec(image="web", replicas=3, env={"A": "1", "B": "2"})
    >>> merged = overlay_service(base, ServiceOverlay(replicas=1, env={"B": "staging"},
    ...                                               listen="127.0.0.1:8081"))
    >>> merged.replicas, merged.env, merged.router.listen
    (1, {'A': '1', 'B': 'staging'}, '127.0.0.1:8081')
    >>> from corral.spec.model import ResourcesSpec
    >>> sized = ServiceSpec(image="web", resources=ResourcesSpec(memory=64 << 20, pids=64))
    >>> overlay_service(sized, ServiceOverlay(resources=ResourcesSpec(cpus=2))).resources
    ResourcesSpec(memory=None, memory_max=None, cpus=2.0, pids=None)
    """
    data: dict[str, Any] = service.model_dump(by_alias=True, exclude_unset=True)
    if overlay.replicas is not None:
        data["replicas"] = overlay.replicas
    for key in ("strategy", "driver", "resources"):
        if (value := getattr(overlay, key)) is not None:
            data[key] = value
    if overlay.env:
        data["env"] = {**service.env, **overlay.env}
    if overlay.listen is not None:
        router = service.router or RouterSpec(listen=overlay.listen)
        data["router"] = router.model_copy(update={"listen": overlay.listen})
    return ServiceSpec.model_validate(data)


def effective_services(spec: Spec, environment: str) -> dict[str, ServiceSpec]:
    overlays = spec.environments[environment].services
    return {name: overlay_service(service, overlays[name]) if name in overlays else service
            for name, service in spec.services.items()}


def effective_spec(spec: Spec, environment: str | None) -> Spec:
    """The spec `environment` sees: its overlays applied to the services (the spec itself
    for None, a spec without environments)."""
    if environment is None:
        return spec
    return spec.model_copy(update={"services": effective_services(spec, environment)})


def check_pipeline(spec: Spec) -> None:
    """The environments, images and services a [pipeline]'s stages name exist; a spec with
    deploy stages has environments. Raises ValueError, which the spec loader locates."""
    if spec.pipeline is None:
        return
    for n, stage in enumerate(spec.pipeline.stages):
        where = f"pipeline.stages[{n}] ({stage.kind})"
        for env in (stage.env, stage.from_):
            if env is not None and env not in spec.environments:
                known = ", ".join(sorted(spec.environments)) or "none"
                raise ValueError(f"{where}: no environment {env!r} (known: {known})")
        if stage.service is not None and stage.service not in spec.services:
            raise ValueError(f"{where}: no service {stage.service!r}")
        if stage.kind == "test" and (stage.image or _only_image(spec, where)) \
                not in spec.images:
            raise ValueError(f"{where}: no image {stage.image!r} in [images]")


def _only_image(spec: Spec, where: str) -> str:
    if len(spec.images) != 1:
        raise ValueError(f"{where}: name the image the command runs in (image = \"NAME\")")
    return next(iter(spec.images))
