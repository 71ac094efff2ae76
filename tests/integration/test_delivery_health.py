"""Health kinds against real sandboxes: exec checks run inside the instance (its files, its
uid, its pid namespace) through the process driver's exec_in; tcp and http checks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.drivers import ProcessDriver
from corral.engine.operate.health import run_check
from corral.ports.records import Instance, InstanceSpec, InstanceState
from corral.spec.model import HealthSpec

pytestmark = pytest.mark.integration

APP = """
import http.server, os
open('/tmp/alive', 'w').write('yes')
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == '/ok' else 503); self.end_headers()
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"""


@pytest.fixture
def running(tmp_path: Path, debian_rootfs: Path) -> Iterator[tuple[ProcessDriver, Instance]]:
    driver = ProcessDriver(tmp_path / ".corral")
    observed = driver.start(InstanceSpec(
        id="web-v1-abc", service="web", release=1, image_digest="sha256:ab",
        rootfs=str(debian_rootfs), argv=("python3", "-c", APP), env={}))
    instance = Instance("web-v1-abc", "web", 1, "sha256:ab", observed.address,
                        InstanceState.STARTING, time.time())
    deadline = time.monotonic() + 20
    while run_check(driver, instance, HealthSpec(kind="tcp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield driver, instance
    driver.stop(instance.id, grace=0.5)


def test_an_exec_check_runs_inside_the_sandbox_as_its_uid(
        running: tuple[ProcessDriver, Instance]) -> None:
    driver, instance = running
    script = "id -u; cat /tmp/alive; echo; hostname"
    code, output = driver.exec_in(instance.id, ["sh", "-c", script], 10)
    assert code == 0, output
    assert output.split() == ["65534", "yes", "web-v1-abc"]


def test_exec_tcp_and_http_checks_pass_and_fail_on_what_they_check(
        running: tuple[ProcessDriver, Instance]) -> None:
    driver, instance = running
    assert run_check(driver, instance, HealthSpec(kind="exec",
                                                  command=("test", "-f", "/tmp/alive"))) is None
    failed = run_check(driver, instance, HealthSpec(kind="exec",
                                                    command=("test", "-f", "/tmp/nope")))
    assert failed is not None and "exited 1" in failed
    assert run_check(driver, instance, HealthSpec(kind="tcp")) is None
    assert run_check(driver, instance, HealthSpec(path="/ok")) is None
    assert "503" in (run_check(driver, instance, HealthSpec(path="/bad")) or "")


def test_an_exec_check_that_hangs_fails_at_its_timeout(
        running: tuple[ProcessDriver, Instance]) -> None:
    driver, instance = running
    failed = run_check(driver, instance, HealthSpec(kind="exec", command=("sleep", "30"),
                                                    timeout=0.5))
    assert failed is not None and "124" in failed
