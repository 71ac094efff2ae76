"""The container driver as a user drives it, on a real dockerd: `driver = "container"` runs
the same spec, image (by digest), router and rolling deploy as the process driver, with the
sandbox the engine allows, logs in corral's log store, re-adoption after a controller crash
and replacement of a container removed from outside."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_project import BUSYBOX_HTTPD_IMAGE, CliProject, write_busybox_root
from docker_engines import BUSYBOX_HTTPD, Engine
from load import Load
from loopback import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SPEC = """\
[project]
name = "boxed"

{image}
[services.web]
image = "web"
driver = "container"
command = {command}
replicas = 2
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ path = "/", interval = "200ms", timeout = "1s", healthy_after = 1 }}
rolling = {{ max_surge = 1, max_unavailable = 0 }}
stop_grace = "1s"
volumes = {{ data = "/var/lib/app" }}
{resources}

[drivers.container]
docker_host = "{docker_host}"
"""
# What dockerd is given and must show in each container's HostConfig (podman, whose limits
# depend on its cgroup manager, runs the spec without them).
RESOURCES = 'resources = { memory = "48M", memory_max = "64M", cpus = 0.5, pids = 64 }'


class Project(CliProject):
    def instances(self) -> list[dict[str, Any]]:
        return list(self.json("status", "web")["services"][0]["instances"])

    def ready(self, count: int, release: int) -> list[dict[str, Any]]:
        ready = [i for i in self.instances()
                 if i["state"] == "ready" and i["release"] in (release, f"v{release}")]
        return ready if len(ready) == count else []

    def page(self) -> tuple[int, str]:
        with Load(f"127.0.0.1:{self.port}") as load:
            poll(load.count, 30, "an answer")
        return load.answers[0][1], load.answers[0][2]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, dockerd: Engine) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("boxed"))
    write_busybox_root(project.folder, "v1\n")
    (project.folder / "corral.toml").write_text(SPEC.format(
        port=project.port, image=BUSYBOX_HTTPD_IMAGE, docker_host=dockerd.host,
        command=json.dumps(BUSYBOX_HTTPD), resources=RESOURCES))
    project.corral("build")
    project.corral("up", "-d")
    yield project
    project.corral("down", check=False)


def containers(engine: Engine) -> list[Any]:
    return [c for c in engine.client().containers.list(all=True)
            if c.labels.get("corral.service") == "web"]


def test_instances_are_sandboxed_containers_of_the_image_by_digest(
        project: Project, dockerd: Engine) -> None:
    project.corral("deploy", "web")
    ready = poll(lambda: project.ready(2, 1), 60, "2 ready instances of v1")
    assert project.page() == (200, "v1\n")
    found = {c.name: c for c in containers(dockerd)}
    assert sorted(found) == sorted(i["id"] for i in ready)
    images = project.json("images")["images"]
    (digest,) = [i["digest"] for i in images if "web:latest" in i["names"]]
    for container in found.values():
        host = container.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
        assert container.attrs["Config"]["User"] == "65534:65534"
        assert container.labels["corral.image"] == digest
        assert [m["Destination"] for m in container.attrs["Mounts"]] == ["/var/lib/app"]
        assert container.exec_run(["/bin/busybox", "touch", "/var/lib/app/w"]).exit_code == 0
        assert container.exec_run(["/bin/busybox", "touch", "/bin/w"]).exit_code != 0
        assert (host["MemoryReservation"], host["Memory"], host["NanoCpus"],
                host["PidsLimit"]) == (48 << 20, 64 << 20, 500_000_000, 64)
        # the kernel holds it (v1 or v2 layout); only the file that exists is read: exec's
        # output mixes stderr in, and a "No such file" line could come first
        pids_max = container.exec_run(["/bin/busybox", "sh", "-c",
                                       "for f in /sys/fs/cgroup/pids/pids.max "
                                       "/sys/fs/cgroup/pids.max; do [ -f $f ] && "
                                       "/bin/busybox cat $f && break; done"])
        assert pids_max.output.split() == [b"64"], pids_max.output


def test_a_rolling_deploy_under_load_fails_no_request(project: Project) -> None:
    poll(lambda: project.ready(2, 1), 60, "2 ready instances of v1")
    (project.folder / "rootfs/www/index.html").write_text("v2\n")
    project.corral("build")
    with Load(f"127.0.0.1:{project.port}") as load:
        poll(lambda: load.count() >= 20, 30, "the load to be flowing")
        project.corral("deploy", "web")
        served = load.count()
        poll(lambda: load.count() >= served + 20, 30, "answers after the deploy")
    assert load.failed() == [], f"{len(load.failed())} of {load.count()} requests failed"
    assert load.bodies_since(0) == {"v1\n", "v2\n"} and load.bodies_since(served) == {"v2\n"}
    assert poll(lambda: project.ready(2, 2), 60, "2 ready instances of v2")


def test_the_logs_of_containers_reach_the_log_store(project: Project) -> None:
    ids = [i["id"] for i in poll(lambda: project.ready(2, 2), 60, "v2 ready")]

    def logged() -> bool:
        lines = project.corral("logs", "web", "--json").stdout
        return all(f"started {instance}" in lines for instance in ids)
    poll(logged, 30, "each instance's first line in `corral logs`")


def test_a_controller_crash_leaves_containers_serving_and_they_are_re_adopted(
        project: Project) -> None:
    before = poll(lambda: project.ready(2, 2), 60, "v2 ready")
    pid = int((project.folder / ".corral/run/controller.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    poll(lambda: not Path(f"/proc/{pid}").exists(), 10, "the controller to die")
    assert project.page() == (200, "v2\n")
    project.corral("up", "-d")
    after = poll(lambda: project.ready(2, 2), 60, "the re-adopted instances ready")
    assert sorted(i["id"] for i in after) == sorted(i["id"] for i in before)


def test_a_container_removed_from_outside_is_replaced(project: Project,
                                                      dockerd: Engine) -> None:
    before = {i["id"] for i in poll(lambda: project.ready(2, 2), 60, "v2 ready")}
    victim = sorted(before)[0]
    dockerd.client().containers.get(victim).remove(force=True)

    def replaced() -> bool:
        now = {i["id"] for i in project.ready(2, 2)}
        return victim not in now and len(now - before) == 1
    poll(replaced, 60, "a new instance in place of the removed container")


def test_an_unreachable_engine_stops_the_controller_at_start_and_names_docker_host(
        tmp_path: Path) -> None:
    project = Project(tmp_path)
    write_busybox_root(project.folder, "v1\n")
    (project.folder / "corral.toml").write_text(SPEC.format(
        port=project.port, image=BUSYBOX_HTTPD_IMAGE,
        docker_host=f"unix://{tmp_path}/no-engine.sock", command=json.dumps(BUSYBOX_HTTPD),
        resources=""))
    try:
        done = project.corral("up", "-d", check=False)
        router = project.folder / ".corral" / "run" / "router.pid"
        left = int(router.read_text()) if router.exists() else None
    finally:
        project.corral("down", check=False)
    assert done.returncode != 0
    assert "cannot reach the Docker engine" in done.stderr and "no-engine.sock" in done.stderr
    assert "[drivers.container] docker_host" in done.stderr
    # nothing is left half-started: the router this start made serves nothing, so it stopped
    assert left is None or not Path(f"/proc/{left}").exists()


def test_the_same_spec_deploys_and_rolls_on_podman_with_no_failed_request(
        tmp_path: Path, podman: Engine) -> None:
    project = Project(tmp_path)
    write_busybox_root(project.folder, "v1\n")
    (project.folder / "corral.toml").write_text(SPEC.format(
        port=project.port, image=BUSYBOX_HTTPD_IMAGE, docker_host=podman.host,
        command=json.dumps(BUSYBOX_HTTPD), resources=""))
    project.corral("build")
    project.corral("up", "-d")
    try:
        project.corral("deploy", "web")
        poll(lambda: project.ready(2, 1), 60, "2 ready instances of v1 on podman")
        (project.folder / "rootfs/www/index.html").write_text("v2\n")
        project.corral("build")
        with Load(f"127.0.0.1:{project.port}") as load:
            poll(lambda: load.count() >= 20, 30, "the load to be flowing")
            project.corral("deploy", "web")
            served = load.count()
            poll(lambda: load.count() >= served + 20, 30, "answers after the deploy")
    finally:
        project.corral("down", check=False)
    assert load.failed() == [], f"{len(load.failed())} of {load.count()} requests failed"
    assert load.bodies_since(served) == {"v2\n"}
