"""Which optional abilities each adapter declares: the engine checks them with isinstance
(ports.driver, ports.runtime, ports.image_roots, ports.image_trust), never by probing names,
so a driver or store that lacks one is simply not asked."""

from __future__ import annotations

from pathlib import Path

from corral.drivers import FakeDriver, ProcessDriver
from corral.engine.adapters import root_guard
from corral.engine.operate.health import check_exec
from corral.images.fake import FakeImageStore
from corral.images.store import LocalImageStore
from corral.ports.driver import Execable, HasLogPaths, Measurable
from corral.ports.image_roots import HasImageRoots
from corral.ports.image_trust import TrustedImageStore
from corral.ports.records import Instance, InstanceState
from corral.ports.runtime import Inspectable, Killable


def abilities(adapter: object) -> set[str]:
    kinds = (Execable, HasLogPaths, Inspectable, Killable, HasImageRoots, TrustedImageStore,
             Measurable)
    return {kind.__name__ for kind in kinds if isinstance(adapter, kind)}


def test_the_process_driver_declares_exec_log_files_inspection_kill_and_usage(
        tmp_path: Path) -> None:
    assert abilities(ProcessDriver(tmp_path)) == {
        "Execable", "HasLogPaths", "Inspectable", "Killable", "Measurable"}


def test_the_fake_driver_declares_inspection_kill_and_usage_only() -> None:
    assert abilities(FakeDriver()) == {"Inspectable", "Killable", "Measurable"}


def test_the_local_image_store_declares_local_roots_and_trust(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    assert abilities(store) == {"HasImageRoots", "TrustedImageStore"}
    guard = root_guard(store)
    assert guard is not None and guard.root_of("sha256:" + "0" * 64) is None


def test_an_image_store_without_local_roots_gets_no_root_guard() -> None:
    store = FakeImageStore()
    assert "HasImageRoots" not in abilities(store)
    assert root_guard(store) is None


def test_an_exec_check_on_a_driver_that_cannot_exec_says_so() -> None:
    instance = Instance(id="i-1", service="web", release=1, image_digest="sha256:aaa",
                        address="127.0.0.1:9000", state=InstanceState.READY, created_at=1.0)
    assert check_exec(FakeDriver(), instance, ("true",), 1.0) == (
        "the fake driver cannot run exec checks")


def test_the_container_driver_declares_exec_log_files_and_kill_but_not_inspection(
        tmp_path: Path) -> None:
    from corral.drivers.container import ContainerDriver

    driver = ContainerDriver(tmp_path, layout=tmp_path / "images",
                             docker_host="unix:///nonexistent.sock")  # opened on first use
    assert abilities(driver) == {"Execable", "HasLogPaths", "Killable"}
