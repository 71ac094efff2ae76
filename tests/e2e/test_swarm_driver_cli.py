"""The Swarm driver on a real 3-node Swarm (three dockerd in network namespaces of this
machine), driven through the CLI: one release's instances spread over the nodes, and under
constant load through corral's router a rolling deploy, a blue-green switch, a rollback, a
good and a bad canary and the loss of a node, each with its failed requests counted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_project import BUSYBOX_HTTPD_IMAGE, CliProject
from load import Load
from loopback import free_port, is_listening, poll
from swarm_cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SPEC = """\
[project]
name = "fleet"

{image}
[services.web]
image = "web"
driver = "swarm"
replicas = 3
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ path = "/healthz", interval = "200ms", timeout = "1s", unhealthy_after = 2 }}
rolling = {{ max_surge = 1, max_unavailable = 0 }}
blue_green = {{ auto_promote = true, rollback_window = "10m" }}
canary = {{ steps = [34, 100], interval = "2s", max_error_rate = 0.05, min_requests = 20 }}
stop_grace = "1s"
drain_timeout = "2s"
resources = {{ memory = "32M", memory_max = "48M", cpus = 0.25, pids = 64 }}

[drivers.swarm]
docker_host = "{manager}"
registry = "{registry}/corral"
insecure_registry = true
start_timeout = "10s"
"""


def write_release(folder: Path, version: str, *, bad: bool = False) -> None:
    """The image's root: a static busybox serving `version` at /, or (bad) a CGI at / that
    answers 500 while /healthz still passes."""
    rootfs = folder / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
    www = rootfs / "www"
    (www / "cgi-bin").mkdir(parents=True)
    (www / "healthz").write_text("ok\n")
    if bad:
        script = www / "cgi-bin" / "index.cgi"
        script.write_text("#!/bin/busybox sh\necho 'Status: 500 Bad Release'\necho\necho bad\n")
        script.chmod(0o755)
    else:
        (www / "index.html").write_text(f"{version}\n")


class Project(CliProject):
    def instances(self) -> list[dict[str, Any]]:
        return list(self.json("status", "web")["services"][0]["instances"])

    def ready(self, count: int, release: int) -> list[dict[str, Any]]:
        ready = [i for i in self.instances()
                 if i["state"] == "ready" and i["release"] in (release, f"v{release}")]
        return ready if len(ready) == count else []

    def release(self, version: str, *, bad: bool = False) -> None:
        write_release(self.folder, version, bad=bad)
        self.corral("build")

    def deploy_under_load(self, *args: str, check: bool = True) -> tuple[Load, int, int]:
        """Deploy (or roll back) while two clients GET / through the router; (the load,
        answers before the command returned, the command's exit code)."""
        with Load(f"127.0.0.1:{self.port}") as load:
            poll(lambda: load.count() >= 20, 30, "the load to be flowing")
            done = self.corral(*args, check=check)
            served = load.count()
            poll(lambda: load.count() >= served + 20, 30, "answers after the command")
        return load, served, done.returncode


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    made = Cluster(Path(tempfile.mkdtemp(prefix="corral-swarm-")), net=1).start()
    yield made
    made.stop()
    shutil.rmtree(made.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("fleet"))
    (project.folder / "corral.toml").write_text(SPEC.format(
        image=BUSYBOX_HTTPD_IMAGE, port=project.port, manager=cluster.manager.host,
        registry=cluster.registry_address))
    project.release("v1")
    project.corral("up", "-d")
    yield project
    project.corral("down", check=False)


def services(cluster: Cluster) -> list[Any]:
    return [s for s in cluster.manager.client().services.list()
            if s.attrs["Spec"]["Labels"].get("corral.service") == "web"]


def test_a_release_spreads_over_the_three_nodes_pinned_by_digest(
        project: Project, cluster: Cluster) -> None:
    project.corral("deploy", "web")
    ready = poll(lambda: project.ready(3, 1), 90, "3 ready instances of v1")
    assert sorted(i["address"].rpartition(":")[0] for i in ready) == cluster.node_ips
    digest = next(i["digest"] for i in project.json("images")["images"]
                  if "web:latest" in i["names"])
    images = {s.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] for s in
              services(cluster)}
    assert images == {f"{cluster.registry_address}/corral/fleet-web@{digest}"}
    resources = [s.attrs["Spec"]["TaskTemplate"]["Resources"] for s in services(cluster)]
    assert resources == [{"Limits": {"MemoryBytes": 48 << 20, "NanoCPUs": 250_000_000,
                                     "Pids": 64},
                          "Reservations": {"MemoryBytes": 32 << 20,
                                           "NanoCPUs": 250_000_000}}] * 3
    # and each node's engine created the task's container with those limits
    hosts = [c.attrs["HostConfig"] for engine in cluster.engines
             for c in engine.client().containers.list()]
    assert [(h["Memory"], h["NanoCpus"], h["PidsLimit"]) for h in hosts] == [
        (48 << 20, 250_000_000, 64)] * 3
    with Load(f"127.0.0.1:{project.port}") as load:
        poll(lambda: load.count() >= 30, 30, "answers")
    assert load.failed() == [] and load.bodies_since(0) == {"v1\n"}


def test_a_rolling_deploy_under_load_fails_no_request(project: Project) -> None:
    project.release("v2")
    load, served, _ = project.deploy_under_load("deploy", "web")
    print(f"rolling: {len(load.failed())} failed of {load.count()}")
    assert load.failed() == []
    assert load.bodies_since(served) == {"v2\n"}
    poll(lambda: project.ready(3, 2), 60, "3 ready instances of v2")


def test_a_blue_green_switch_under_load_fails_no_request(project: Project) -> None:
    project.release("v3")
    load, served, _ = project.deploy_under_load("deploy", "web", "--strategy", "blue-green")
    print(f"blue-green: {len(load.failed())} failed of {load.count()}")
    assert load.failed() == []
    assert load.bodies_since(served) == {"v3\n"}


def test_a_rollback_switches_back_to_the_warm_fleet_under_load(project: Project) -> None:
    load, served, _ = project.deploy_under_load("rollback", "web")
    print(f"rollback: {len(load.failed())} failed of {load.count()}")
    assert load.failed() == []
    assert load.bodies_since(served) == {"v2\n"}


def test_a_good_canary_under_load_fails_no_request(project: Project) -> None:
    project.release("v4")
    load, served, code = project.deploy_under_load("deploy", "web", "--strategy", "canary")
    print(f"canary (good): {len(load.failed())} failed of {load.count()}")
    assert code == 0 and load.failed() == []
    assert load.bodies_since(served) == {"v4\n"}


def test_a_bad_canary_is_rolled_back_and_the_stable_fleet_keeps_serving(
        project: Project) -> None:
    project.release("v5", bad=True)
    load, served, code = project.deploy_under_load("deploy", "web", "--strategy", "canary",
                                                   check=False)
    failed = load.failed()
    print(f"canary (bad): {len(failed)} failed of {load.count()} (the canary's 500s)")
    assert code != 0
    # only the canary's own failures: its 500s, or the router's 502 for its broken answers
    assert {status for _, status, _ in failed} <= {500, 502}
    assert len(failed) < load.count() * 0.34
    assert load.bodies_since(served) == {"v4\n"}
    last = project.json("status", "web")["services"][0]["last_deployment"]
    assert last["outcome"] == "rolled back"


def test_old_releases_services_are_removed_once_decommissioned(
        project: Project, cluster: Cluster) -> None:
    live = poll(lambda: project.ready(3, 4), 60, "v4 ready")

    def releases_left() -> set[str]:
        return {s.attrs["Spec"]["Labels"]["corral.release"] for s in services(cluster)}
    # the bad canary, and v1, v3 (replaced, or left by the rollback) are drained, then removed
    poll(lambda: releases_left().isdisjoint({"1", "3", "5"}), 60, "old services removed")
    assert {i["id"] for i in live} <= {
        s.attrs["Spec"]["Labels"]["dev.corral.driver.instance"] for s in services(cluster)}




def replaced(project: Project, victim: str) -> bool:
    """Three ready v4 instances, none of them `victim`."""
    ready = project.ready(3, 4)
    return bool(ready) and victim not in {i["id"] for i in ready}


def test_a_task_that_dies_on_its_node_is_replaced(project: Project, cluster: Cluster) -> None:
    victim = poll(lambda: project.ready(3, 4), 60, "v4 ready")[0]
    node = cluster.node_ips.index(victim["address"].rpartition(":")[0])
    (container,) = cluster.engines[node].client().containers.list(filters={
        "label": f"com.docker.swarm.service.name=fleet-{victim['id']}"})
    container.kill()
    poll(lambda: replaced(project, victim["id"]), 60, "a new instance for the dead task")


def test_a_service_changed_from_outside_is_replaced(
        project: Project, cluster: Cluster) -> None:
    victim = poll(lambda: project.ready(3, 4), 60, "v4 ready")[0]
    service = cluster.manager.client().services.get(f"fleet-{victim['id']}")
    image = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    other = image.replace(image.rpartition("@")[2], _digest_of_release(project, 2))
    # `docker service update --image` by hand: Swarm swaps the task for one of another image
    # on a new port. Whichever corral sees first (the old address failing its health check,
    # the task gone, or the image in the runtime drift check), the instance is replaced.
    service.update(image=other)
    poll(lambda: replaced(project, victim["id"]), 60, "the changed instance replaced")
    entries = project.json("ledger", "--service", "web", "--limit", "500")["entries"]
    ended = {e["action"] for e in entries if e["subject"] == f"web/{victim['id']}"}
    assert ended & {"instance.failed", "instance.unhealthy", "drift.runtime"}, ended


def _digest_of_release(project: Project, version: int) -> str:
    answer = project.json("releases", "web")
    rows = answer["releases"] if isinstance(answer, dict) else answer
    return str(next(r["image"] for r in rows if r["version"] == version))

@pytest.fixture
def loopback_registry(tmp_path: Path) -> Iterator[str]:
    """A docker-registry on this machine's loopback: corral reaches it, the nodes (each in
    its own network namespace) do not."""
    address = f"127.0.0.1:{free_port()}"
    (tmp_path / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\n"
        f"http:\n  addr: {address}\n")
    with (tmp_path / "registry.log").open("wb") as out:
        process = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "config.yml")],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        poll(lambda: is_listening(int(address.rpartition(":")[2])), 30, "the registry")
        yield address
    finally:
        process.terminate()
        process.wait(10)


def restart_controller(project: Project) -> None:
    """SIGKILL the controller and start a new one, which re-adopts the instances (a changed
    [drivers.swarm] takes effect; the running instances are untouched)."""
    pid = int((project.folder / ".corral/run/controller.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    poll(lambda: not Path(f"/proc/{pid}").exists(), 10, "the controller to die")
    project.corral("up", "-d")


def test_a_registry_the_nodes_cannot_reach_fails_the_deploy_and_the_live_release_serves(
        project: Project, cluster: Cluster, loopback_registry: str) -> None:
    poll(lambda: project.ready(3, 4), 60, "v4 ready")
    spec = project.folder / "corral.toml"
    good = spec.read_text()
    spec.write_text(good.replace(cluster.registry_address, loopback_registry))
    restart_controller(project)
    try:
        project.release("v6")
        before = {s.id for s in services(cluster)}
        load, _, code = project.deploy_under_load("deploy", "web", check=False)
        print(f"unreachable registry: {len(load.failed())} failed of {load.count()}")
        assert code != 0
        assert load.failed() == [] and load.bodies_since(0) == {"v4\n"}
        assert poll(lambda: project.ready(3, 4), 30, "v4 still ready")
        assert {s.id for s in services(cluster)} == before  # nothing half-created is left
        last = project.json("status", "web")["services"][0]["last_deployment"]
        assert last["outcome"] != "succeeded"
        assert loopback_registry in (last.get("reason") or "")
    finally:
        spec.write_text(good)
        restart_controller(project)


def test_an_unreachable_manager_stops_the_controller_at_start_and_names_docker_host(
        tmp_path: Path) -> None:
    project = Project(tmp_path)
    (project.folder / "corral.toml").write_text(SPEC.format(
        image=BUSYBOX_HTTPD_IMAGE, port=project.port, registry="127.0.0.1:1",
        manager=f"unix://{tmp_path}/no-manager.sock"))
    write_release(project.folder, "v1")
    try:
        done = project.corral("up", "-d", check=False)
        router = project.folder / ".corral" / "run" / "router.pid"
        left = int(router.read_text()) if router.exists() else None
    finally:
        project.corral("down", check=False)
    assert done.returncode != 0
    assert "no-manager.sock" in done.stderr and "[drivers.swarm] docker_host" in done.stderr
    assert left is None or not Path(f"/proc/{left}").exists()  # nothing left half-started

def test_the_loss_of_a_node_under_load_fails_no_request_and_is_replaced(
        project: Project, cluster: Cluster) -> None:
    before = poll(lambda: project.ready(3, 4), 60, "v4 ready")
    dead_ip = cluster.node_ips[2]
    assert dead_ip in {i["address"].rpartition(":")[0] for i in before}
    with Load(f"127.0.0.1:{project.port}") as load:
        poll(lambda: load.count() >= 20, 30, "the load to be flowing")
        cluster.kill_node(2)

        def replaced() -> bool:
            ready = project.ready(3, 4)
            return bool(ready) and dead_ip not in {i["address"].rpartition(":")[0]
                                                   for i in ready}
        poll(replaced, 120, "3 ready instances on the 2 nodes left")
        served = load.count()
        poll(lambda: load.count() >= served + 20, 30, "answers after the replacement")
    print(f"node loss: {len(load.failed())} failed of {load.count()}")
    assert load.failed() == []



def test_a_node_that_leaves_mid_deployment_neither_stalls_it_nor_fails_requests(
        project: Project, cluster: Cluster) -> None:
    poll(lambda: project.ready(3, 4), 60, "v4 ready on the nodes left")
    project.release("v7")
    leaving = cluster.node_ips[1]
    with Load(f"127.0.0.1:{project.port}") as load:
        poll(lambda: load.count() >= 20, 30, "the load to be flowing")
        deploy = subprocess.Popen([sys.executable, "-m", "corral", "deploy", "web"],
                                  cwd=project.folder, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            poll(lambda: any(i["release"] in (7, "v7") for i in project.instances()), 60,
                 "the first v7 instance")
            cluster.kill_node(1)
            _, stderr = deploy.communicate(timeout=240)  # within its deadline, either way
        finally:
            if deploy.poll() is None:
                deploy.kill()
        live = 7 if deploy.returncode == 0 else 4
        ready = poll(lambda: project.ready(3, live), 120, f"3 ready instances of v{live}")
        served = load.count()
        poll(lambda: load.count() >= served + 20, 30, "answers after the deploy")
    print(f"node left mid-deployment: deploy exit {deploy.returncode} ({stderr.strip()[-200:]}),"
          f" {len(load.failed())} failed of {load.count()}")
    assert leaving not in {i["address"].rpartition(":")[0] for i in ready}
    assert load.failed() == []
    assert load.bodies_since(served) == {f"v{live}\n"}
