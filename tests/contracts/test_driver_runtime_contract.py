"""The runtime-inspection contract (ports.runtime.Inspectable), run on the fake and the
process driver: what the drift watch compares with the instance's launch to find runtime
drift (processes in it, mounts, ids, capabilities), and what it must not count."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.core.drift import ExpectedRuntime, runtime_drift
from corral.drivers import FakeDriver, ProcessDriver
from corral.ports.records import InstanceSpec
from corral.ports.runtime import Inspectable, RuntimeFacts

APP = "import time\nwhile True: time.sleep(1)\n"


@pytest.fixture(params=["fake", pytest.param("process", marks=pytest.mark.integration)])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Inspectable, str]]:
    driver: FakeDriver | ProcessDriver
    if request.param == "fake":
        driver, rootfs = FakeDriver(), "/nonexistent-image-root"
    else:
        rootfs = str(request.getfixturevalue("debian_rootfs"))
        driver = ProcessDriver(tmp_path / ".corral")
    yield driver, rootfs
    for observed in driver.list():
        driver.stop(observed.id, grace=1)


def _spec(rootfs: str, volume: Path) -> InstanceSpec:
    return InstanceSpec(id="web-1", service="web", release=1, image_digest="sha256:ab",
                        rootfs=rootfs, argv=("python3", "-c", APP),
                        env={"GREETING": "hello", "PATH": "/usr/bin:/bin"},
                        volumes={str(volume): "/mnt"})


def _facts(driver: Inspectable, instance_id: str) -> RuntimeFacts:
    deadline = time.monotonic() + 10
    while True:
        facts = driver.runtime(instance_id)
        if facts is not None or time.monotonic() > deadline:
            assert facts is not None, "a running instance has runtime facts"
            return facts
        time.sleep(0.05)


def test_runtime_facts_report_the_argv_and_env_the_instance_was_given(
        rig: tuple[Inspectable, str], tmp_path: Path) -> None:
    driver, rootfs = rig
    observed = driver.start(_spec(rootfs, tmp_path / "vol"))  # type: ignore[attr-defined]
    facts = _facts(driver, "web-1")
    assert facts.argv == ("python3", "-c", APP)
    assert facts.env["GREETING"] == "hello"
    assert facts.env["PORT"] == observed.address.rpartition(":")[2]


def test_runtime_facts_report_the_read_only_image_root_and_the_volume(
        rig: tuple[Inspectable, str], tmp_path: Path) -> None:
    driver, rootfs = rig
    driver.start(_spec(rootfs, tmp_path / "vol"))  # type: ignore[attr-defined]
    facts = _facts(driver, "web-1")
    mounts = {m.target: m for m in facts.mounts}
    assert facts.root == rootfs
    assert mounts["/"].read_only
    assert mounts["/mnt"].source == str(tmp_path / "vol") and not mounts["/mnt"].read_only


def test_runtime_facts_report_the_driver_s_unprivileged_user(
        rig: tuple[Inspectable, str], tmp_path: Path) -> None:
    driver, rootfs = rig
    driver.start(_spec(rootfs, tmp_path / "vol"))  # type: ignore[attr-defined]
    facts = _facts(driver, "web-1")
    assert facts.launched is not None
    assert facts.uid != 0 and facts.launched.credentials.uid == facts.uid
    assert facts.launched.credentials.capabilities == 0


def test_a_fresh_instance_runs_as_it_was_launched_so_it_has_no_runtime_drift(
        rig: tuple[Inspectable, str], tmp_path: Path) -> None:
    driver, rootfs = rig
    spec = _spec(rootfs, tmp_path / "vol")
    driver.start(spec)  # type: ignore[attr-defined]
    facts = _facts(driver, "web-1")
    assert facts.launched is not None and facts.launched.taken == "start"
    assert facts.launched.image_digest == spec.image_digest
    assert sorted(map(repr, facts.launched.mounts)) == sorted(map(repr, facts.mounts))
    app = next(p for p in facts.processes if p.pid == facts.pid)
    assert app.from_init and app.session_inside and not app.exec_check
    assert app.credentials == facts.launched.credentials
    assert runtime_drift(ExpectedRuntime(spec.image_digest), facts) == []
    assert driver.runtime("web-1").launched == facts.launched  # type: ignore[union-attr]


def test_a_stopped_or_unknown_instance_has_no_runtime_facts(
        rig: tuple[Inspectable, str], tmp_path: Path) -> None:
    driver, rootfs = rig
    driver.start(_spec(rootfs, tmp_path / "vol"))  # type: ignore[attr-defined]
    driver.stop("web-1", grace=1)  # type: ignore[attr-defined]
    assert driver.runtime("web-1") is None
    assert driver.runtime("never-started") is None


def test_a_killed_instance_is_listed_as_exited_not_forgotten(
        rig: tuple[Inspectable, str], tmp_path: Path) -> None:
    driver, rootfs = rig
    driver.start(_spec(rootfs, tmp_path / "vol"))  # type: ignore[attr-defined]
    _facts(driver, "web-1")
    assert driver.kill("web-1")  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while driver.inspect("web-1").running and time.monotonic() < deadline:  # type: ignore
        time.sleep(0.05)
    observed = driver.inspect("web-1")  # type: ignore[attr-defined]
    assert observed is not None and not observed.running
    assert not driver.kill("web-1")  # type: ignore[attr-defined]
