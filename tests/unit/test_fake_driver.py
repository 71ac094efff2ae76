"""What the fake driver offers beyond the shared contract: crashes on demand, a given clock."""

from __future__ import annotations

import pytest

from corral.drivers import FakeDriver
from corral.errors import DriverError
from corral.ports.records import InstanceSpec


def spec(instance_id: str) -> InstanceSpec:
    return InstanceSpec(id=instance_id, service="web", release=1, image_digest="sha256:ab",
                        rootfs="/images/ab", argv=("app",), env={})


def test_a_crashed_instance_is_listed_as_exited_with_its_code() -> None:
    driver = FakeDriver()
    driver.start(spec("web-1"))
    driver.start(spec("web-2"))
    driver.crash("web-1", exit_code=137)
    assert [(o.id, o.running, o.exit_code) for o in driver.list()] == [
        ("web-1", False, 137), ("web-2", True, None)]


def test_an_exited_instance_can_be_forgotten_but_a_running_one_cannot() -> None:
    driver = FakeDriver()
    driver.start(spec("web-1"))
    with pytest.raises(DriverError, match="still running"):
        driver.forget("web-1")
    driver.crash("web-1", exit_code=1)
    driver.forget("web-1")
    assert driver.inspect("web-1") is None


def test_the_start_time_comes_from_the_given_clock() -> None:
    driver = FakeDriver(now=lambda: 1234.5)
    assert driver.start(spec("web-1")).started_at == 1234.5


def test_every_started_spec_is_remembered_in_order() -> None:
    driver = FakeDriver()
    driver.start(spec("web-1"))
    driver.start(spec("web-2"))
    driver.stop("web-1", grace=0)
    assert [s.id for s in driver.started] == ["web-1", "web-2"]
