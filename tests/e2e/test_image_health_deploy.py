"""A live deployment gated by the image's own healthcheck (issue 3's `healthcheck` key): the
service sets no `health`, so readiness is the image's check, run inside each new instance.
A release whose image check passes goes live; one whose check fails never gets traffic,
and the fleet before it keeps serving. Real CLI, controller, router and sandboxes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from cli_project import CliProject
from loopback import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHECK = ('healthcheck = {{ command = ["test", "-e", "{path}"], interval = "500ms", '
         'timeout = "2s", retries = 2 }}\n')


@pytest.fixture
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliProject]:
    project = CliProject(tmp_path_factory.mktemp("image-health"))
    project.corral("init", "--port", str(project.port))
    project.edit(r"replicas = 3", "replicas = 2")
    project.edit(r"health = \{[^\n]*\}\n", "")  # the image's healthcheck decides readiness
    project.edit(r'(entrypoint = \[[^\n]*\]\n)', r"\1" + CHECK.format(path="/app/server.py"))
    project.corral("up", "-d")
    yield project
    project.corral("down", check=False)


def deploy(project: CliProject) -> tuple[int, list[dict[str, object]]]:
    done = project.corral("deploy", "web", "--json", check=False)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def test_the_image_healthcheck_gates_a_live_deployment(project: CliProject) -> None:
    code, events = deploy(project)
    assert code == 0 and events[-1]["outcome"] == "succeeded", events
    # The image's check (`test -e`) passes before the app binds its port: wait for that.
    poll(lambda: project.request()[1] == "1", 30, "the app to answer")
    assert {project.request()[1] for _ in range(10)} == {"1"}

    project.edit(r'APP_VERSION = "1"', 'APP_VERSION = "2"')
    project.edit(r'"/app/server.py"\], interval', '"/app/missing"], interval')
    code, events = deploy(project)
    assert code != 0 and events[-1]["outcome"] == "rolled back", events
    reason, *lines = str(events[-1]["reason"]).split("\n")  # then the app's last lines
    assert reason.endswith(
        "did not pass its health check within 30s: test -e /app/missing exited 1"), events
    assert any(line.strip().startswith("stdout  app v2 listening on") for line in lines), lines
    assert {project.request() for _ in range(20)} == {(200, "1")}
    service = project.json("status", "web")["services"][0]
    assert service["live_release"] == 1
    assert {i["release"] for i in service["instances"]} == {"v1"}
