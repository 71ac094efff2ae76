"""The Driver contract, run on every driver: the in-memory fake and the real process driver.

The engine relies on exactly these behaviours; a driver that passes here can run a fleet.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from corral.drivers import FakeDriver, ProcessDriver
from corral.drivers.container import ContainerDriver
from corral.errors import DriverError
from corral.ports.driver import Driver, Measurable
from corral.ports.records import InstanceSpec, Limits
from docker_engines import BUSYBOX_HTTPD

HTTP_APP = (
    "import os, http.server as h\n"
    "h.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), h.BaseHTTPRequestHandler)"
    ".serve_forever()\n"
)


@dataclass
class Harness:
    driver: Driver
    spec: Callable[[str], InstanceSpec]  # an instance id -> a spec for a long-running app
    serves_http: bool  # whether something really answers at the returned address


def answers_http(address: str, deadline_s: float = 10.0) -> bool:
    """Poll `address` until any HTTP answer arrives (even 501), or the deadline passes."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(host, int(port), timeout=1)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return True
        except OSError:
            time.sleep(0.05)
        finally:
            conn.close()
    return False


@pytest.fixture(params=["fake", pytest.param("process", marks=pytest.mark.integration),
                        pytest.param("container-dockerd", marks=pytest.mark.integration),
                        pytest.param("container-podman", marks=pytest.mark.integration)])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    rootfs = "/nonexistent-image-root"
    argv: tuple[str, ...] = ("python3", "-c", HTTP_APP)
    digest = "sha256:ab"
    driver: Driver
    if request.param == "fake":
        driver = FakeDriver()
    elif request.param == "process":
        rootfs = str(request.getfixturevalue("debian_rootfs"))
        driver = ProcessDriver(tmp_path / ".corral")
    else:
        engine = request.getfixturevalue(request.param.partition("-")[2])
        layout, digest = request.getfixturevalue("busybox_image")
        argv = BUSYBOX_HTTPD
        driver = ContainerDriver(tmp_path / ".corral", layout=layout, docker_host=engine.host)

    def spec(instance_id: str) -> InstanceSpec:
        return InstanceSpec(id=instance_id, service="web", release=1, image_digest=digest,
                            rootfs=rootfs, argv=argv, env={}, labels={"release": "v1"})

    yield Harness(driver, spec, serves_http=request.param != "fake")
    for observed in driver.list():
        driver.stop(observed.id, grace=1)


def test_a_started_instance_is_running_at_its_address(harness: Harness) -> None:
    observed = harness.driver.start(harness.spec("web-1"))
    host, port = observed.address.rsplit(":", 1)
    assert observed.id == "web-1"
    assert observed.running
    assert host == "127.0.0.1" and 0 < int(port) < 65536
    assert observed.labels == {"release": "v1"}
    if harness.serves_http:
        assert answers_http(observed.address)


def test_a_started_instance_is_listed_and_inspectable(harness: Harness) -> None:
    started = harness.driver.start(harness.spec("web-1"))
    listed = {o.id: o for o in harness.driver.list()}
    assert listed["web-1"].running
    assert listed["web-1"].address == started.address
    inspected = harness.driver.inspect("web-1")
    assert inspected is not None and inspected.address == started.address


def test_a_stopped_instance_disappears(harness: Harness) -> None:
    harness.driver.start(harness.spec("web-1"))
    harness.driver.stop("web-1", grace=2)
    assert [o.id for o in harness.driver.list()] == []
    assert harness.driver.inspect("web-1") is None


def test_stopping_only_one_instance_leaves_the_other_running(harness: Harness) -> None:
    harness.driver.start(harness.spec("web-1"))
    kept = harness.driver.start(harness.spec("web-2"))
    harness.driver.stop("web-1", grace=2)
    assert [(o.id, o.running) for o in harness.driver.list()] == [("web-2", True)]
    if harness.serves_http:
        assert answers_http(kept.address)


def test_stopping_an_unknown_or_already_stopped_instance_is_not_an_error(
        harness: Harness) -> None:
    harness.driver.stop("never-started", grace=1)
    harness.driver.start(harness.spec("web-1"))
    harness.driver.stop("web-1", grace=1)
    harness.driver.stop("web-1", grace=1)
    assert harness.driver.list() == []


def test_two_instances_get_different_addresses(harness: Harness) -> None:
    first = harness.driver.start(harness.spec("web-1"))
    second = harness.driver.start(harness.spec("web-2"))
    assert first.address != second.address
    if harness.serves_http:
        assert answers_http(first.address) and answers_http(second.address)


def test_inspecting_an_unknown_instance_gives_none(harness: Harness) -> None:
    assert harness.driver.inspect("never-started") is None


def test_starting_an_instance_id_twice_is_refused(harness: Harness) -> None:
    harness.driver.start(harness.spec("web-1"))
    with pytest.raises(DriverError):
        harness.driver.start(harness.spec("web-1"))
    assert [o.id for o in harness.driver.list()] == ["web-1"]


def test_a_measurable_driver_reports_an_instance_limits_and_its_machine(
        harness: Harness) -> None:
    if not isinstance(harness.driver, Measurable):
        pytest.skip(f"{harness.driver.name} does not measure instances")
    spec = replace(harness.spec("web-1"), limits=Limits(memory=64 << 20, pids=100))
    harness.driver.start(spec)

    usage = harness.driver.usage("web-1")
    machine = harness.driver.capacity()

    if usage is not None:  # None: this host has no usable cgroup layout (it says so)
        assert (usage.memory_limit, usage.pids_limit) == (64 << 20, 100)
        assert usage.memory is not None and usage.oom_kills == 0
    assert harness.driver.usage("never-started") is None
    assert machine.memory >= machine.memory_available > 0 and machine.cpus >= 1
