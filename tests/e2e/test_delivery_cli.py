"""Progressive delivery as a user drives it: blue-green preview and promote, rollback to the
warm fleet, the bad-release guard, canary abort, exit codes. Real CLI, controller, router."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cli_project import CliProject
from loopback import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


class Project(CliProject):
    def args(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "corral", *args]

    def version(self, release: str | None = None) -> str:
        return self.request("/", release)[1]

    def phase(self) -> str | None:
        status = json.loads(self.corral("status", "web", "--json").stdout)["services"][0]
        last = status["last_deployment"]
        return last["outcome"] if last else None


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("delivery"))
    project.corral("init", "--port", str(project.port))
    project.edit(r"replicas = 3", "replicas = 2")
    project.edit(r'strategy = "rolling"', 'strategy = "blue-green"\n'
                 'blue_green = { auto_promote = false }\n'
                 'canary = { steps = [50, 100], interval = "60s", min_requests = 0 }')
    project.corral("up", "-d")
    project.corral("deploy", "web")
    yield project
    project.corral("down", check=False)


def test_blue_green_previews_the_new_fleet_and_switches_on_promote(project: Project) -> None:
    project.edit(r'APP_VERSION = "1"', 'APP_VERSION = "2"')
    deploy = subprocess.Popen(project.args("deploy", "web", "--json"), cwd=project.folder,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Promote only once the deployment waits at its gate: a promote that comes earlier
        # is honoured too, and the deployment then never stops at the gate.
        seen = []
        assert deploy.stdout is not None
        while not seen or seen[-1]["type"] not in ("gate", "result"):
            line = deploy.stdout.readline()
            if not line:
                break
            seen.append(json.loads(line))
        assert seen and seen[-1]["type"] == "gate", seen
        poll(lambda: project.version("v2") == "2")  # preview before any weight
        assert {project.version() for _ in range(20)} == {"1"}
        project.corral("promote", "web")
        out, _ = deploy.communicate(timeout=120)
    finally:
        if deploy.poll() is None:
            deploy.kill()
    assert deploy.returncode == 0
    events = seen + [json.loads(line) for line in out.splitlines()]
    assert events[-1]["type"] == "result" and events[-1]["outcome"] == "succeeded", events
    assert {project.version() for _ in range(20)} == {"2"}


def test_rollback_to_the_warm_fleet_and_the_bad_release_guard(project: Project) -> None:
    done = project.corral("rollback", "web", "--json")
    result = [json.loads(line) for line in done.stdout.splitlines()][-1]
    assert result["outcome"] == "succeeded" and result["switched_ms"] < 1000
    assert {project.version() for _ in range(20)} == {"1"}
    refused = project.corral("deploy", "web", check=False)
    assert refused.returncode == 1 and "marked bad" in refused.stderr
    assert "--force" in refused.stderr


def test_aborting_a_canary_exits_4_and_leaves_the_stable_fleet_serving(
        project: Project) -> None:
    project.edit(r'strategy = "blue-green"', 'strategy = "canary"')
    project.edit(r'APP_VERSION = "2"', 'APP_VERSION = "3"')
    deploy = subprocess.Popen(project.args("deploy", "web"), cwd=project.folder,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        poll(lambda: "3" in {project.version() for _ in range(10)})
        aborted = project.corral("abort", "web", check=False)
        deploy.communicate(timeout=120)
    finally:
        if deploy.poll() is None:
            deploy.kill()
    assert aborted.returncode == 0 and deploy.returncode == 4  # the abort succeeded
    assert {project.version() for _ in range(20)} == {"1"}
