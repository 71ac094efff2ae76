"""A service's readiness check when its spec has none: the image's Healthcheck, if any.

Docker's Healthcheck becomes an exec check (CMD-SHELL runs with /bin/sh -c) with Docker's
defaults for unset values (30s interval and timeout, 3 retries). The start period extends
the time a new instance has to become ready. Pure: decided here, applied in engine/.
"""

from __future__ import annotations

from corral.ports.records import ImageConfig, ImageHealthcheck
from corral.spec.model import HealthSpec, ServiceSpec

DOCKER_INTERVAL = 30.0
DOCKER_TIMEOUT = 30.0
DOCKER_RETRIES = 3


def health_from_image(check: ImageHealthcheck | None) -> HealthSpec | None:
    """The exec HealthSpec of an image's Healthcheck; None for none, NONE or an odd test.

    >>> from corral.ports.records import ImageHealthcheck as H
    >>> spec = health_from_image(H(("CMD-SHELL", "test -e /ok"), interval=2.0, retries=5))
    >>> spec.command, spec.interval, spec.timeout, spec.unhealthy_after, spec.start_timeout
    (('/bin/sh', '-c', 'test -e /ok'), 2.0, 30.0, 5, 34.0)
    """
    if check is None or not check.test:
        return None
    kind, *rest = check.test
    if kind == "CMD" and rest:
        command = tuple(rest)
    elif kind == "CMD-SHELL" and len(rest) == 1 and rest[0].strip():
        command = ("/bin/sh", "-c", rest[0])
    else:
        return None  # "NONE" disables the check; anything else is not Docker's
    interval = check.interval or DOCKER_INTERVAL
    timeout = check.timeout or DOCKER_TIMEOUT
    return HealthSpec(kind="exec", command=command, interval=interval, timeout=timeout,
                      unhealthy_after=check.retries or DOCKER_RETRIES,
                      start_timeout=max(HealthSpec().start_timeout,
                                        check.start_period + 2 * interval + timeout))


def with_image_health(service: ServiceSpec, image: ImageConfig) -> ServiceSpec:
    """`service` with its image's healthcheck as `health`, when the spec sets no `health`.

    >>> from corral.ports.records import ImageHealthcheck as H
    >>> bare = ServiceSpec(image="web")
    >>> image = ImageConfig(digest="sha256:0", healthcheck=H(("CMD", "true")))
    >>> with_image_health(bare, image).health.command
    ('true',)
    >>> own = ServiceSpec(image="web", health={"path": "/healthz"})
    >>> with_image_health(own, image).health.path
    '/healthz'
    """
    if "health" in service.model_fields_set:
        return service
    health = health_from_image(image.healthcheck)
    return service if health is None else service.model_copy(update={"health": health})
