"""`blue_green.preview = false` holds across a controller restart: a blue-green deployment
waiting for promotion keeps its new fleet hidden from `X-Corral-Release` requests before the
restart, after it (the deployment is resumed), and goes live on promote. Real CLI,
controller, router and sandboxes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from cli_project import CliProject
from loopback import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliProject]:
    project = CliProject(tmp_path_factory.mktemp("preview"))
    project.corral("init", "--port", str(project.port))
    project.edit(r"replicas = 3", "replicas = 1")
    project.edit(r'strategy = "rolling"', 'strategy = "blue-green"\n'
                 'blue_green = { auto_promote = false, preview = false }')
    project.corral("up", "-d")
    project.corral("deploy", "web")
    yield project
    project.corral("down", check=False)


def service(project: CliProject) -> dict[str, Any]:
    return project.json("status", "web")["services"][0]  # type: ignore[no-any-return]


def waiting_with_v2_ready(project: CliProject) -> bool:
    status = service(project)
    last = status["last_deployment"]
    return bool(last and last["outcome"] == "running" and any(
        i["release"] == "v2" and i["state"] == "ready" for i in status["instances"]))


def test_preview_off_survives_a_controller_restart(project: CliProject) -> None:
    project.edit(r'APP_VERSION = "1"', 'APP_VERSION = "2"')
    deploy = subprocess.Popen([sys.executable, "-m", "corral", "deploy", "web", "--json"],
                              cwd=project.folder, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        assert deploy.stdout is not None
        events = []
        while not events or events[-1]["type"] not in ("gate", "result"):
            line = deploy.stdout.readline()
            if not line:
                break
            events.append(json.loads(line))
        assert events and events[-1]["type"] == "gate", events
        hidden = project.request("/", "v2")
        assert hidden[1] != "2", "preview = false, yet v2 answered a preview request"
        assert {project.request() for _ in range(10)} == {(200, "1")}

        project.corral("down", "--keep-instances")
        deploy.wait(60)
    finally:
        if deploy.poll() is None:
            deploy.kill()
            deploy.wait(10)

    project.corral("up", "-d")
    wait_for(lambda: waiting_with_v2_ready(project), 120, "the resumed deployment at its gate")
    assert project.request("/", "v2") == hidden, "v2 became previewable after the restart"
    assert {project.request() for _ in range(10)} == {(200, "1")}
    assert [b["release"] for b in service(project)["backends"]] == ["v1"]

    project.corral("promote", "web")
    wait_for(lambda: service(project)["live_release"] == 2, 120, "v2 live on promote")
    wait_for(lambda: {project.request() for _ in range(10)} == {(200, "2")}, 60,
             "all traffic on v2")
