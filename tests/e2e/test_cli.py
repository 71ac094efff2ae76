"""The corral CLI as a user runs it, in a fresh folder, against real everything: the
debootstrap image, bubblewrap instances, the router process, the SQLite store."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_project import CliProject

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


class Project(CliProject):
    def get(self, path: str = "/") -> tuple[int, str]:
        return self.request(path)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("shop"))
    project.corral("init", "--name", "shop", "--port", str(project.port))
    yield project
    project.corral("down", check=False)


def test_a_missing_spec_file_says_how_to_create_one(tmp_path: Path) -> None:
    done = Project(tmp_path).corral("validate", check=False)
    assert done.returncode == 1
    assert "no such spec file" in done.stderr and "corral init" in done.stderr


def test_an_invalid_spec_names_file_key_line_and_column(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.corral("init", "--port", str(project.port))
    project.edit(r"replicas = 3", "replicas = 3\nreplica = 2")
    done = project.corral("validate", check=False)
    assert done.returncode == 1
    assert "corral.toml:20:1: services.web.replica: unknown key" in done.stderr


def test_the_whole_life_of_a_service(project: Project) -> None:
    built = project.json("build")["images"]["web"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", built)
    assert project.json("build")["images"]["web"] == built, "a rebuild changed the digest"

    project.corral("up", "-d")
    project.corral("deploy", "web")
    status = project.json("status", "web")["services"][0]
    assert status["live_release"] == 1
    assert [i["state"] for i in status["instances"]] == ["ready"] * 3
    assert status["traffic"] == {"v1": 100.0}
    assert project.get() == (200, "1")

    project.edit(r'APP_VERSION = "1"', 'APP_VERSION = "2"')
    project.corral("deploy", "web")
    assert {project.get()[1] for _ in range(20)} == {"2"}
    releases = project.json("releases", "web")["releases"]
    assert [(r["release"], r["live"]) for r in releases] == [("v1", False), ("v2", True)]


def test_a_release_that_never_becomes_healthy_is_refused_and_v2_keeps_serving(
        project: Project) -> None:
    project.edit(r'APP_VERSION = "2"', 'APP_VERSION = "3", FAIL_HEALTH = "1"')
    project.edit(r'start_timeout = "30s"', 'start_timeout = "3s"')
    done = project.corral("deploy", "web", check=False)
    assert done.returncode == 3, done.stderr
    assert "did not pass its health check within 3s" in done.stderr
    status = project.json("status", "web")["services"][0]
    assert status["live_release"] == 2
    assert {i["release"] for i in status["instances"]} == {"v2"}
    assert {project.get()[1] for _ in range(20)} == {"2"}
    project.edit(r'APP_VERSION = "3", FAIL_HEALTH = "1"', 'APP_VERSION = "2"')
    project.edit(r'start_timeout = "3s"', 'start_timeout = "30s"')


def test_a_second_deploy_of_a_service_is_refused_while_one_runs(project: Project) -> None:
    project.edit(r'APP_VERSION = "2"', 'APP_VERSION = "4", FAIL_HEALTH = "1"')
    project.edit(r'start_timeout = "30s"', 'start_timeout = "8s"')
    first = subprocess.Popen([sys.executable, "-m", "corral", "deploy", "web"],
                             cwd=project.folder, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = project.json("status", "web")["services"][0]
            if any(i["release"] == "v4" for i in status["instances"]):
                break
            time.sleep(0.1)
        second = project.corral("deploy", "web", check=False)
        assert second.returncode == 1
        assert "another deployment of web is running" in second.stderr
    finally:
        first.communicate(timeout=120)
    assert first.returncode == 3
    project.edit(r'APP_VERSION = "4", FAIL_HEALTH = "1"', 'APP_VERSION = "2"')
    project.edit(r'start_timeout = "8s"', 'start_timeout = "30s"')


def test_deploying_an_image_that_is_not_in_the_store_says_so(project: Project) -> None:
    missing = "sha256:" + "0" * 64
    done = project.corral("deploy", "web", "--image", missing, check=False)
    assert done.returncode == 1
    assert missing[:19] in done.stderr and "corral build" in done.stderr


def test_instances_and_router_survive_a_controller_crash_and_are_re_adopted(
        project: Project) -> None:
    before = project.json("status", "web")["services"][0]["instances"]
    pid = int((project.folder / ".corral/run/controller.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert project.get() == (200, "2"), "the router stopped serving without its controller"
    project.corral("up", "-d")
    after = project.json("status", "web")["services"][0]["instances"]
    assert [(i["id"], i["state"]) for i in after] == [(i["id"], "ready") for i in before]


def test_a_router_port_already_in_use_fails_the_deploy_clearly(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.corral("init", "--port", str(project.port))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", project.port))
        squatter.listen()
        project.corral("up", "-d")
        try:
            done = project.corral("deploy", "web", check=False)
        finally:
            project.corral("down", check=False)
    assert done.returncode != 0
    assert f"127.0.0.1:{project.port}" in done.stderr and "in use" in done.stderr


def test_down_stops_every_instance_and_the_router(project: Project) -> None:
    pids = [i["pid"] for i in project.json("status", "web")["services"][0]["instances"]]
    project.corral("down")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)
    with pytest.raises(OSError):
        project.get()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
