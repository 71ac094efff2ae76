"""The reconcile loop and the drift watch running as threads over fake adapters and a real
local image store (a scratch image: no debootstrap needed). Time is a FakeTimer that only
the test moves; tests wait for the loops' passes (polling with deadlines), never for time."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.core.release import config_digest, release_config
from corral.drivers.fake import FakeDriver
from corral.engine.delivery.instances import Instances
from corral.engine.fleet import Fleets
from corral.engine.loop import FakeTimer
from corral.engine.operate.drift import DriftWatch
from corral.engine.operate.health import HealthMonitor
from corral.engine.operate.reconcile import Reconciler
from corral.images.store import LocalImageStore
from corral.ports.records import Event, Instance, InstanceState
from corral.routers.fake import FakeRouter
from corral.spec.model import ImageSpec, ServiceSpec
from corral.stores.memory import MemoryStore
from loopback import poll

pytestmark = pytest.mark.integration

LISTEN = "127.0.0.1:18998"


class Rig:
    """A controller's parts, with a stand-in health check: starting instances whose
    release is not in `sick` become ready."""

    def __init__(self, tmp: Path) -> None:
        self.clock = FakeTimer(start=time.time())
        self.store = MemoryStore()
        self.router = FakeRouter()
        self.router.ensure_running()
        self.driver = FakeDriver(self.clock)
        (tmp / "app").mkdir()
        (tmp / "app" / "server.py").write_text("print('hello')\n")
        self.images = LocalImageStore(tmp / ".corral", cache_dir=tmp / "machine-cache")
        self.digest = self.images.build("web", ImageSpec.model_validate(
            {"base": "scratch", "copy": [{"src": "app/", "dest": "/app"}],
             "entrypoint": ["/app/server.py"]}), tmp)
        self.fleets = Fleets(self.store, self.router, self.clock, "tester")
        self.instances = Instances(self.driver, self.router, self.images, self.fleets,
                                   self.clock, tmp / "volumes")
        self.monitor = HealthMonitor(self.fleets, self.driver, lambda i: None, self.clock)
        self.reconciler = Reconciler(self.store, self.instances, "tester",
                                     period=0.5, unknown_grace=0.5, timer=self.clock)
        self.drift = DriftWatch(self.store, self.fleets, self.images, self.driver,
                                self.reconciler.condemn, self.clock, "tester",
                                verify_period=30, runtime_period=0.3, timer=self.clock)
        self.sick: set[int] = set()
        self.fleets.on_add.append(self._check_once)

    def _check_once(self, instance: Instance) -> None:
        ok = instance.release not in self.sick
        self.fleets.record_check(instance.id, ok, None if ok else "503", 1, 1)

    def sweep_after(self, seconds: float) -> None:
        """Move time on by `seconds` (at least the period) and wait for the reconciler's
        sweep that planned at the new time."""
        self.clock.advance(seconds)
        now = self.clock()
        poll(lambda: self.reconciler.stats.planned_at >= now)

    def runtime_checks_after(self, count: int) -> None:
        """Move time on by the drift watch's runtime period `count` times, waiting for its
        runtime check each time."""
        for _ in range(count):
            done = self.drift.runtime_passes
            self.clock.advance(0.3)
            poll(lambda done=done: self.drift.runtime_passes > done)  # type: ignore[misc]

    def release(self, replicas: int = 3, **extra: object) -> int:
        spec = ServiceSpec.model_validate({"image": self.digest, "replicas": replicas,
                                           "router": {"listen": LISTEN},
                                           "health": {"start_timeout": "2s"}, **extra})
        config = release_config(spec, self.digest)
        event = Event(at=self.clock(), actor="tester", action="release.create", subject="web")
        release = self.store.add_release("web", self.digest, config_digest(config), config,
                                         self.clock(), event)
        self.store.set_live_release("web", release.version, event)
        self.fleets.set_listen("web", LISTEN)
        return release.version

    def start(self) -> None:
        self.monitor.start()
        self.reconciler.start()
        self.drift.start()

    def stop(self) -> None:
        self.drift.stop()
        self.reconciler.stop()
        self.monitor.stop()

    def ready(self, count: int) -> list[Instance]:
        ready = [i for i in self.fleets.of_service("web") if i.state is InstanceState.READY]
        return ready if len(ready) == count and len(self.fleets.of_service("web")) == count \
            else []

    def events(self, action: str) -> list[Event]:
        return [e for e in self.store.events() if e.action == action]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.stop()


def test_a_live_release_with_no_instances_is_brought_to_its_replicas(rig: Rig) -> None:
    rig.release(replicas=3)
    rig.start()
    poll(lambda: rig.ready(3))
    assert len(rig.router.backends("web")) == 3
    assert {e.detail["cause"] for e in rig.events("reconcile.start")} == {"scale"}


def test_a_killed_instance_is_replaced_by_a_new_one_with_the_cause_recorded(rig: Rig) -> None:
    rig.release(replicas=3)
    rig.start()
    first = {i.id for i in poll(lambda: rig.ready(3))}  # type: ignore[union-attr]
    rig.sweep_after(0.5)  # a sweep saw them ready: their starts succeeded
    victim = sorted(first)[0]
    rig.driver.crash(victim, exit_code=137)
    after = poll(lambda: (r := rig.ready(3)) and victim not in {i.id for i in r} and r)
    assert victim not in {i.id for i in after}  # type: ignore[union-attr]
    replaced = poll(lambda: [e for e in rig.events("reconcile.replace")
                             if e.detail.get("replaces") == victim])
    assert replaced[0].detail["cause"] == "dead"  # type: ignore[index]
    assert "137" in replaced[0].detail["reason"]  # type: ignore[index]
    assert rig.store.get_instance(victim).state is InstanceState.FAILED  # type: ignore[union-attr]
    assert not rig.events("reconcile.destroy"), "a known instance's exit is not 'unknown'"


def test_an_unknown_instance_with_corral_labels_is_destroyed(rig: Rig) -> None:
    rig.release(replicas=1)
    rig.start()
    poll(lambda: rig.ready(1))
    spec = rig.driver.started[0]
    from dataclasses import replace
    rig.driver.start(replace(spec, id="web-stray-1"))
    swept = rig.reconciler.stats.sweeps
    rig.reconciler.wake()
    poll(lambda: rig.reconciler.stats.sweeps > swept)
    # as young as a start whose fleet entry is being written: left alone
    assert rig.driver.inspect("web-stray-1") is not None
    rig.sweep_after(0.5)  # as old as unknown_grace now
    poll(lambda: rig.driver.inspect("web-stray-1") is None)
    assert rig.events("reconcile.destroy")[0].detail["cause"] == "unknown"


def test_a_service_whose_deploy_lock_is_held_is_left_alone(rig: Rig) -> None:
    rig.release(replicas=2)
    assert rig.store.acquire_lock("deploy/web", "a deployment", rig.clock(), 60) is None
    rig.start()
    for _ in range(3):  # three sweeps while the lock is held: each leaves web alone
        rig.sweep_after(0.5)
        assert rig.reconciler.stats.skipped == ["web"]
    assert rig.fleets.of_service("web") == []
    rig.store.release_lock("deploy/web", "a deployment")
    rig.sweep_after(0.5)
    poll(lambda: rig.ready(2))


def test_a_release_that_keeps_crashing_backs_off_instead_of_spinning(rig: Rig) -> None:
    version = rig.release(replicas=1)
    rig.sick.add(version)
    rig.start()
    for _ in range(8):  # 4 s of sweeps: starts fail (stuck after 2 s) and back off
        rig.sweep_after(0.5)
    assert 1 <= len(rig.driver.started) <= 4


def test_a_changed_file_in_an_image_root_replaces_every_instance_using_it(rig: Rig) -> None:
    rig.release(replicas=2)
    rig.start()
    before = {i.id for i in poll(lambda: rig.ready(2))}  # type: ignore[union-attr]
    root = rig.images.unpack(rig.digest)
    poll(lambda: rig.drift._verifiers)  # the root was adopted (file list, first verify)
    target = root / "app" / "server.py"
    os.chmod(target, 0o644)
    target.write_text("print('tampered')\n")
    after = poll(lambda: (r := rig.ready(2)) and not ({i.id for i in r} & before) and r)
    assert after
    drift = rig.events("drift.files")[0]
    assert ["/app/server.py", "modified"] in drift.detail["changes"] or \
        ["/app/server.py", "mode changed from 755 to 644"] in drift.detail["changes"]
    causes = {e.detail["cause"] for e in rig.events("reconcile.replace")}
    assert "drifted" in causes
    fresh = rig.images.unpack(rig.digest)
    assert (fresh / "app" / "server.py").read_text() == "print('hello')\n"
    assert list((rig.drift.guard.quarantine_dir).iterdir())


def test_a_process_entering_an_instance_from_outside_replaces_it(rig: Rig) -> None:
    rig.release(replicas=2)
    rig.start()
    victim = sorted(i.id for i in poll(lambda: rig.ready(2)))[0]  # type: ignore[union-attr]
    facts = rig.driver.runtime(victim)
    assert facts is not None
    rig.driver.tamper(victim, env={**facts.env, "DEBUG": "1"}, argv=("httpd",))
    rig.runtime_checks_after(3)  # what the app does to itself (setenv, exec) is not drift
    assert not rig.events("drift.runtime")
    pid = rig.driver.enter(victim, argv=("sh",), uid=0)
    rig.runtime_checks_after(1)
    poll(lambda: (r := rig.ready(2)) and victim not in {i.id for i in r})
    event = rig.events("drift.runtime")[0]
    assert event.detail["differences"] == [f"process {pid} entered from outside: sh (uid 0)"]
    assert event.detail["entered"] == [{"pid": pid, "argv": ["sh"], "uid": 0}]
