"""Two controllers of one project on one PostgreSQL: the active one is killed with SIGKILL
during a canary step, then (its successor) during a rollback, while requests flow; each
time the standby takes the lease, re-adopts the instances and the router, and finishes the
deployment from its persisted steps: no failed request, no step done twice, one ledger."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_scratch_image import Load

from cli_project import BUSYBOX_HTTPD_IMAGE, CliProject, write_busybox_root
from corral.core.ledger import verify_chain
from corral.ports.records import Deployment, DeploymentStep
from corral.stores import SqlStore
from loopback import poll
from postgres import PostgresCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SPEC = """\
[project]
name = "pair"

{image}
[services.web]
image = "web"
replicas = 2
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ path = "/", interval = "300ms", timeout = "1s", healthy_after = 1 }}
strategy = "canary"
canary = {{ steps = [50, 100], interval = "4s", min_requests = 0 }}
"""


class Pair(CliProject):
    """The project, its shared PostgreSQL store, and the controllers started on it."""

    def __init__(self, folder: Path, url: str) -> None:
        super().__init__(folder)
        self.env = {"CORRAL_STORE": url, "CORRAL_LEASE_TTL": "2"}
        self.store = SqlStore(url)
        self.standbys: list[subprocess.Popen[bytes]] = []

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.corral(*args, check=check, env=self.env)

    def start_standby(self) -> subprocess.Popen[bytes]:
        log = self.folder / f"standby-{len(self.standbys)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "corral", "up", "--standby"],
                                       cwd=self.folder, env={**os.environ, **self.env},
                                       stdout=out, stderr=subprocess.STDOUT)
        self.standbys.append(process)
        poll(lambda: "standby: controller" in log.read_text(), 60, "the standby to wait")
        return process

    def active_pid(self) -> int:
        lease = self.store.current_lease("controller")
        assert lease is not None
        return int(lease.holder.rpartition(":")[2])

    def latest(self) -> Deployment:
        return self.store.list_deployments("web")[0]

    def page(self) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory,
         postgres: PostgresCluster) -> Iterator[Pair]:
    pair = Pair(tmp_path_factory.mktemp("pair"), postgres.create_database())
    write_busybox_root(pair.folder, "v1\n")
    (pair.folder / "corral.toml").write_text(SPEC.format(port=pair.port,
                                                         image=BUSYBOX_HTTPD_IMAGE))
    pair.run("build")
    pair.run("up", "-d")
    try:
        pair.run("deploy", "web")
        pair.start_standby()
        yield pair
    finally:
        pair.run("down", check=False)
        for process in pair.standbys:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
        pair.store.close()


def kill_active_when(pair: Pair, reached: Any, what: str) -> int:
    """SIGKILL the active controller once `reached(deployment, steps)` holds; its pid."""
    pid = pair.active_pid()
    poll(lambda: reached(pair.latest(), pair.store.list_steps(pair.latest().id)), 120, what)
    os.kill(pid, signal.SIGKILL)
    return pid


def is_done_once(steps: list[DeploymentStep]) -> bool:
    """No step repeated: the same kind with the same detail (timings aside) twice."""
    seen = [(s.kind, sorted((k, str(v)) for k, v in s.detail.items() if not k.endswith("_ms")))
            for s in steps]
    return len(seen) == len(set(map(str, seen)))


def finish_after_failover(pair: Pair, killed: int, deployment: int) -> Deployment:
    """The deployment once the standby that took over from `killed` has ended it."""
    poll(lambda: pair.active_pid() != killed, 60, "the standby to take the lease")
    return poll(lambda: _finished(pair, deployment), 180, "the deployment to finish")


def _finished(pair: Pair, deployment: int) -> Deployment | None:
    found = pair.store.get_deployment(deployment)
    return found if found is not None and found.outcome != "running" else None


def test_killed_during_a_canary_step_the_standby_finishes_it_under_load(pair: Pair) -> None:
    (pair.folder / "rootfs/www/index.html").write_text("v2\n")
    pair.run("build")
    with Load(pair) as load:
        poll(lambda: len(load.answers) >= 20, 30, "the load to flow")
        deploy = subprocess.Popen([sys.executable, "-m", "corral", "deploy", "web"],
                                  cwd=pair.folder, env={**os.environ, **pair.env},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killed = kill_active_when(pair, lambda d, steps: d.to_release == 2 and any(
            s.kind == "SetWeights" for s in steps), "the canary at its 50% step")
        deployment = pair.latest()
        assert deployment.outcome == "running"  # killed mid-deployment, not after
        pair.start_standby()  # the next failover's standby, while the first takes over
        done = finish_after_failover(pair, killed, deployment.id)
        poll(lambda: pair.page() == (200, "v2\n"), 60, "v2 serving")
        deploy.wait(60)
    assert done.outcome == "succeeded" and pair.store.live_release("web") == 2
    failed = [a for a in load.answers if a[0] != 200]
    assert failed == [], f"{len(failed)} of {len(load.answers)} requests failed"
    steps = pair.store.list_steps(deployment.id)
    assert is_done_once(steps), [(s.kind, s.detail) for s in steps]
    assert verify_chain(pair.store.raw_events()).ok


def test_killed_during_a_rollback_the_standby_finishes_it_under_load(pair: Pair) -> None:
    with Load(pair) as load:
        poll(lambda: len(load.answers) >= 20, 30, "the load to flow")
        rollback = subprocess.Popen([sys.executable, "-m", "corral", "rollback", "web"],
                                    cwd=pair.folder, env={**os.environ, **pair.env},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killed = kill_active_when(pair, lambda d, steps: d.to_release == 1 and d.from_release
                                  == 2 and bool(steps), "the rollback's first step")
        deployment = pair.latest()
        assert deployment.outcome == "running"
        done = finish_after_failover(pair, killed, deployment.id)
        poll(lambda: pair.page() == (200, "v1\n"), 60, "v1 serving again")
        rollback.wait(60)
    assert done.outcome in ("succeeded", "rolled back") and pair.store.live_release("web") == 1
    failed = [a for a in load.answers if a[0] != 200]
    assert failed == [], f"{len(failed)} of {len(load.answers)} requests failed"
    steps = pair.store.list_steps(deployment.id)
    assert is_done_once(steps), [(s.kind, s.detail) for s in steps]
    assert verify_chain(pair.store.raw_events()).ok
