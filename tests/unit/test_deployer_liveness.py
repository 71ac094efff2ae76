"""Liveness: an instance failing its liveness check is marked unhealthy (no traffic) and
handed to the replacement hook; it is never restarted in place. Readiness waits out the
start grace."""

from __future__ import annotations

import socket
from pathlib import Path

from corral.drivers.fake import FakeDriver
from corral.engine.fleet import Fleets
from corral.engine.loop import FakeTimer
from corral.engine.operate.health import HealthMonitor
from corral.ports.records import Instance, InstanceSpec, InstanceState
from corral.routers.fake import FakeRouter
from corral.spec.model import HealthSpec
from corral.stores.memory import MemoryStore
from loopback import poll


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rig(tmp_path: Path, state: InstanceState, clock: FakeTimer,
        readiness: HealthSpec | None, liveness: HealthSpec | None
        ) -> tuple[Fleets, HealthMonitor, FakeDriver]:
    driver = FakeDriver()
    driver.start(InstanceSpec(id="web-v1-a", service="web", release=1, image_digest="d",
                              rootfs=str(tmp_path), argv=("app",), env={}))
    router = FakeRouter()
    router.ensure_running()
    fleets = Fleets(MemoryStore(), router, clock, "tester")
    fleets.add(Instance("web-v1-a", "web", 1, "d", f"127.0.0.1:{closed_port()}", state,
                        clock()))
    monitor = HealthMonitor(fleets, driver, lambda i: readiness, clock,
                            liveness_of=lambda i: liveness)
    return fleets, monitor, driver


def test_a_failing_liveness_check_condemns_the_instance_without_restarting_it(
        tmp_path: Path) -> None:
    clock = FakeTimer()
    fleets, monitor, driver = rig(tmp_path, InstanceState.READY, clock, None,
                                  HealthSpec(kind="tcp", interval=1.0, timeout=0.2,
                                             unhealthy_after=2))
    condemned: list[tuple[str, str]] = []
    monitor.on_liveness_failure.append(lambda i, why: condemned.append((i.id, why)))

    def checked_again() -> list[tuple[str, str]]:
        clock.advance(1.0)  # one liveness interval; the check itself runs in the pool
        monitor.tick()
        return condemned

    poll(checked_again)
    assert condemned and condemned[0][0] == "web-v1-a"
    assert "liveness check failed 2 times" in condemned[0][1]
    instance = fleets.get("web-v1-a")
    assert instance is not None and instance.state is InstanceState.UNHEALTHY
    assert [o.id for o in driver.list()] == ["web-v1-a"]  # not restarted, not stopped here


def test_readiness_is_not_checked_during_the_start_grace(tmp_path: Path) -> None:
    clock = FakeTimer()
    fleets, monitor, _ = rig(tmp_path, InstanceState.STARTING, clock,
                             HealthSpec(kind="tcp", start_grace=60.0, interval=1.0,
                                        timeout=0.2), None)
    for _ in range(59):  # 59 ticks a second apart: all inside the 60 s grace
        clock.advance(1.0)
        monitor.tick()
    assert monitor.quiesce()  # any check started has recorded its result
    assert fleets.health_of("web-v1-a").failures == 0
    past_grace = rig(tmp_path, InstanceState.STARTING, clock,
                HealthSpec(kind="tcp", start_grace=60.0, interval=1.0, timeout=0.2), None)
    clock.advance(61.0)  # the same check, past its grace: the closed port fails it
    poll(lambda: past_grace[1].tick() or past_grace[0].health_of("web-v1-a").failures)
