"""The deployer executes rolling plans against fake adapters (the real ones are proven in
tests/integration and tests/e2e); health is a stand-in check run once on every instance
the fleet adds (passing unless its release is in `unhealthy_releases`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from corral.core.release import release_config
from corral.drivers.fake import FakeDriver
from corral.engine.delivery.deploy import Deployer
from corral.engine.delivery.instances import Instances
from corral.engine.delivery.locks import reconciler_holder
from corral.engine.delivery.request import DeployRequest
from corral.engine.fleet import Fleets
from corral.errors import DeployError, LockHeld
from corral.images.fake import FakeImageStore
from corral.ports.records import DeploymentOutcome, Instance
from corral.ports.router import ReleaseStats
from corral.routers.fake import FakeRouter
from corral.spec.model import ImageSpec, ServiceSpec
from corral.stores.memory import MemoryStore


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.store = MemoryStore()
        self.router = RecordingRouter()
        self.router.ensure_running()
        self.driver = FakeDriver()
        self.images = FakeImageStore()
        self.fleets = Fleets(self.store, self.router, time.time, "tester")
        instances = Instances(self.driver, self.router, self.images, self.fleets, time.time, tmp)
        self.stopping = threading.Event()
        self.deployer = Deployer(self.store, instances, self.stopping)
        self.unhealthy_releases: set[int] = set()
        self.fleets.on_add.append(self._check_once)
        self.digest = self.images.build("web", ImageSpec(entrypoint=("app",)), tmp)

    def _check_once(self, instance: Instance) -> None:
        passed = instance.release not in self.unhealthy_releases
        self.fleets.record_check(instance.id, passed, None if passed else "503", 1, 3)

    def request(self, **service: object) -> DeployRequest:
        spec = ServiceSpec.model_validate({
            "image": self.digest, "replicas": 3, "router": {"listen": "127.0.0.1:18999"},
            "health": {"start_timeout": "300ms"}, **service})
        return DeployRequest("web", self.digest, release_config(spec, self.digest), "tester")


class RecordingRouter(FakeRouter):
    """The fake router, remembering every backend set it was given; `before_stats` (when
    set) is called each time a service's stats are read (simulated traffic)."""

    def __init__(self) -> None:
        super().__init__()
        self.sets: list[list[tuple[str, int]]] = []
        self.before_stats: Callable[[str], None] | None = None

    def stats(self, service: str) -> dict[str, ReleaseStats]:
        if self.before_stats is not None:
            self.before_stats(service)
        return super().stats(service)

    def set_backends(self, service, listen, backends):  # type: ignore[no-untyped-def]
        self.sets.append([(b.release, b.weight) for b in backends])
        super().set_backends(service, listen, backends)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.stopping.set()


def ready_weights(snapshot: list[tuple[str, int]]) -> int:
    return sum(1 for _, weight in snapshot if weight > 0)


def test_a_first_deploy_ends_with_every_replica_ready_and_routed(rig: Rig) -> None:
    done = rig.deployer.deploy(rig.request(), lambda event: None)
    assert done.outcome is DeploymentOutcome.SUCCEEDED
    assert rig.store.live_release("web") == 1
    assert sorted(b.weight for b in rig.router.backends("web")) == [100, 100, 100]


def test_a_rolling_deploy_never_routes_to_fewer_than_replicas_ready_instances(rig: Rig) -> None:
    rig.deployer.deploy(rig.request(), lambda event: None)
    start = len(rig.router.sets)
    done = rig.deployer.deploy(rig.request(env={"V": "2"}), lambda event: None)
    assert done.outcome is DeploymentOutcome.SUCCEEDED
    rolled = rig.router.sets[start:]
    assert all(ready_weights(snapshot) >= 3 for snapshot in rolled)
    assert {release for release, _ in rolled[-1]} == {"v2"}
    assert rig.store.live_release("web") == 2


def test_a_release_that_never_becomes_healthy_is_rolled_back_and_v1_keeps_all_traffic(
        rig: Rig) -> None:
    rig.deployer.deploy(rig.request(), lambda event: None)
    rig.unhealthy_releases.add(2)
    events: list[dict[str, object]] = []
    done = rig.deployer.deploy(rig.request(env={"V": "bad"}), events.append)
    assert done.outcome is DeploymentOutcome.ROLLED_BACK
    assert "did not pass its health check" in (done.reason or "")
    assert rig.store.live_release("web") == 1
    assert {(b.release, b.weight) for b in rig.router.backends("web")} == {("v1", 100)}
    assert len(rig.router.backends("web")) == 3
    assert all(i.release == 1 for i in rig.fleets.of_service("web"))
    kinds = [e["type"] for e in events]
    assert "rollback" in kinds and kinds[-1] == "result"
    assert 2 in rig.store.bad_releases("web")


def test_redeploying_an_unchanged_service_reuses_its_release(rig: Rig) -> None:
    rig.deployer.deploy(rig.request(), lambda event: None)
    rig.deployer.deploy(rig.request(), lambda event: None)
    assert [r.version for r in rig.store.list_releases("web")] == [1]


def test_a_second_deploy_of_the_same_service_is_refused_while_one_runs(rig: Rig) -> None:
    rig.store.acquire_lock("deploy/web", "someone else", time.time(), 60)
    with pytest.raises(LockHeld, match="another deployment of web is running"):
        rig.deployer.deploy(rig.request(), lambda event: None)


def test_a_deploy_waits_out_the_reconcilers_brief_hold_of_the_lock(rig: Rig) -> None:
    holder = reconciler_holder(4242)
    rig.store.acquire_lock("deploy/web", holder, time.time(), 60)
    # the reconciler lets go while the deploy is waiting for the lock
    threading.Timer(0.2, lambda: rig.store.release_lock("deploy/web", holder)).start()
    done = rig.deployer.deploy(rig.request(), lambda event: None)
    assert done is not None and done.outcome is DeploymentOutcome.SUCCEEDED


def test_a_release_marked_bad_is_refused_unless_forced(rig: Rig) -> None:
    rig.deployer.deploy(rig.request(), lambda event: None)
    rig.unhealthy_releases.add(2)
    rig.deployer.deploy(rig.request(env={"V": "bad"}), lambda event: None)
    with pytest.raises(DeployError, match="marked bad"):
        rig.deployer.deploy(rig.request(env={"V": "bad"}), lambda event: None)
    rig.unhealthy_releases.clear()
    forced = replace(rig.request(env={"V": "bad"}), force=True)
    assert rig.deployer.deploy(forced, lambda event: None).outcome is DeploymentOutcome.SUCCEEDED
    assert rig.store.bad_releases("web") == {}
