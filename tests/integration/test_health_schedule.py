"""The health monitor's schedule on virtual time, probing real loopback servers: an
instance past starting is checked once per interval (on the monitor's grid, never sooner),
an instance added later is found, one gone is no longer probed, a starting one is probed at
its own quick pace. Each server counts the requests it answered."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.drivers.fake import FakeDriver
from corral.engine.fleet import Fleets
from corral.engine.loop import FakeTimer
from corral.engine.operate.health import HealthMonitor
from corral.ports.records import Instance, InstanceSpec, InstanceState
from corral.routers.fake import FakeRouter
from corral.spec.model import HealthSpec
from corral.stores.memory import MemoryStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CHECK = HealthSpec(path="/", interval=1.0, timeout=2.0)


class Counting(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # closes each connection, as busybox httpd does

    def do_GET(self) -> None:
        self.server.requests += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.clock = FakeTimer()
        self.driver = FakeDriver()
        router = FakeRouter()
        router.ensure_running()
        self.fleets = Fleets(MemoryStore(), router, self.clock, "tester")
        self.monitor = HealthMonitor(self.fleets, self.driver, lambda i: CHECK, self.clock,
                                     timer=self.clock, exits_every=1e9)
        self.servers: dict[str, http.server.HTTPServer] = {}

    def add(self, name: str, state: InstanceState = InstanceState.READY) -> Instance:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counting)
        server.requests = 0  # type: ignore[attr-defined]
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self.servers[name] = server
        self.driver.start(InstanceSpec(id=name, service="web", release=1, image_digest="d",
                                       rootfs=str(self.tmp), argv=("app",), env={}))
        instance = Instance(name, "web", 1, "d", f"127.0.0.1:{server.server_address[1]}",
                            state, self.clock())
        self.fleets.add(instance)
        return instance

    def requests(self, name: str) -> int:
        return int(self.servers[name].requests)  # type: ignore[attr-defined]

    def run_for(self, seconds: float, step: float) -> None:
        """Move virtual time on by `step` until `seconds` passed, sweeping at each step and
        letting each sweep's checks finish."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            self.monitor.tick()
            assert self.monitor.quiesce()

    def close(self) -> None:
        self.monitor.stop()
        for server in self.servers.values():
            server.shutdown()
            server.server_close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.close()


def test_a_ready_instance_is_checked_once_per_interval(rig: Rig) -> None:
    rig.add("web-v1-a")
    rig.add("web-v1-b")
    rig.monitor.tick()  # the first checks: at once
    assert rig.monitor.quiesce()
    rig.run_for(4.0, step=0.125)  # sweeping 8 times a second changes nothing
    assert rig.requests("web-v1-a") == 5
    assert rig.requests("web-v1-b") == 5


def test_an_instance_added_later_is_checked_and_one_gone_no_longer(rig: Rig) -> None:
    rig.add("web-v1-a")
    rig.run_for(1.0, step=0.25)
    rig.add("web-v1-b")
    rig.run_for(0.25, step=0.25)
    assert rig.requests("web-v1-b") == 1
    rig.fleets.move("web-v1-a", InstanceState.FAILED, "gone")
    before = rig.requests("web-v1-a")
    rig.run_for(3.0, step=0.25)
    assert rig.requests("web-v1-a") == before
    assert rig.requests("web-v1-b") == 4


def test_a_starting_instance_is_probed_at_its_own_pace_until_ready(rig: Rig) -> None:
    rig.add("web-v1-a", InstanceState.STARTING)
    rig.monitor.tick()  # the first check passes: ready (healthy_after = 1)
    assert rig.monitor.quiesce()
    assert rig.fleets.get("web-v1-a").state is InstanceState.READY  # type: ignore[union-attr]
    rig.run_for(2.0, step=0.125)
    # The check queued while it was starting comes 0.1 s later (at the sweep of 0.125 s);
    # the next one an interval after, on the grid (1.25 s), then none until 2.25 s.
    assert rig.requests("web-v1-a") == 3
