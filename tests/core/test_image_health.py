"""A service without `health` takes its image's Docker healthcheck as its readiness check."""

from __future__ import annotations

import pytest

from corral.core.image_health import health_from_image, with_image_health
from corral.ports.records import ImageConfig, ImageHealthcheck
from corral.spec.model import ServiceSpec


@pytest.mark.parametrize(("check", "command", "interval", "timeout", "after", "start_timeout"), [
    (ImageHealthcheck(("CMD", "curl", "-f", "x")), ("curl", "-f", "x"), 30.0, 30.0, 3, 90.0),
    (ImageHealthcheck(("CMD-SHELL", "test -e /ok"), 1.0, 2.0, 0.0, 5),
     ("/bin/sh", "-c", "test -e /ok"), 1.0, 2.0, 5, 30.0),
    (ImageHealthcheck(("CMD", "true"), 10.0, 1.0, 60.0, 1), ("true",), 10.0, 1.0, 1, 81.0),
])
def test_docker_healthchecks_become_exec_checks_with_dockers_defaults(
        check: ImageHealthcheck, command: tuple[str, ...], interval: float, timeout: float,
        after: int, start_timeout: float) -> None:
    health = health_from_image(check)
    assert health is not None and health.kind == "exec"
    assert (health.command, health.interval, health.timeout, health.unhealthy_after,
            health.healthy_after, health.start_timeout) == (
        command, interval, timeout, after, 1, start_timeout)


@pytest.mark.parametrize("check", [
    None, ImageHealthcheck(("NONE",)), ImageHealthcheck(()), ImageHealthcheck(("CMD",)),
    ImageHealthcheck(("CMD-SHELL", " ")), ImageHealthcheck(("SOMETHING", "x"))])
def test_no_none_or_malformed_healthchecks_give_no_check(check: ImageHealthcheck | None) -> None:
    assert health_from_image(check) is None


IMAGE = ImageConfig(digest="sha256:" + "0" * 64,
                    healthcheck=ImageHealthcheck(("CMD", "true"), interval=2.0))


def test_a_service_without_health_takes_the_images() -> None:
    service = ServiceSpec.model_validate({"image": "web"})
    assert with_image_health(service, IMAGE).health.command == ("true",)


def test_a_service_health_in_the_spec_always_wins() -> None:
    service = ServiceSpec.model_validate({"image": "web", "health": {"kind": "tcp"}})
    assert with_image_health(service, IMAGE) is service


def test_an_image_without_healthcheck_keeps_the_default_http_check() -> None:
    service = ServiceSpec.model_validate({"image": "web"})
    plain = ImageConfig(digest=IMAGE.digest)
    assert with_image_health(service, plain).health.kind == "http"
