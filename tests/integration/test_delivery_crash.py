"""Crash safety: the controller is killed (os._exit, as kill -9) right after every step of
each strategy, then started again; the deployment must resume or roll back, and traffic
must end on live, ready instances only. Real everything: CLI, controller, router, sandboxes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_project import CliProject

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

CRASH_POINTS = {
    "rolling": ["StartInstances:1", "DrainAndStop:1", "StartInstances:2", "DrainAndStop:2"],
    "blue-green": ["StartInstances:1", "SetWeights:1"],
    "canary": ["StartInstances:1", "SetWeights:1", "RecordAnalysis:1", "StartInstances:2",
               "SetWeights:2", "RecordAnalysis:2", "SetWeights:3", "DrainAndStop:1"],
}
CASES = [(strategy, point) for strategy, points in CRASH_POINTS.items() for point in points]


class Project(CliProject):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.version = 1

    def status(self) -> dict[str, Any]:
        data = json.loads(self.corral("status", "web", "--json").stdout)
        return data["services"][0]  # type: ignore[no-any-return]

    def bump(self) -> int:
        self.edit(rf'APP_VERSION = "{self.version}"', f'APP_VERSION = "{self.version + 1}"')
        self.version += 1
        return self.version

    def get(self) -> int:
        return self.request()[0]

    def controller_pid(self) -> int | None:
        try:
            return int((self.folder / ".corral" / "run" / "controller.pid").read_text())
        except (OSError, ValueError):
            return None


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("crash"))
    project.corral("init", "--port", str(project.port))
    project.edit(r"replicas = 3", "replicas = 2")
    project.edit(r'strategy = "rolling"', 'strategy = "rolling"\n'
                 'canary = { steps = [50, 100], interval = "500ms", min_requests = 0 }\n'
                 'blue_green = { rollback_window = "0s" }')
    project.corral("up", "-d")
    project.corral("deploy", "web")
    yield project
    project.corral("down", check=False)


def wait_settled(project: Project, deadline_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        status = project.status()
        last = status["last_deployment"]
        if last and last["outcome"] != "running" and all(
                i["state"] == "ready" for i in status["instances"]):
            return status
        time.sleep(0.5)
    raise AssertionError(f"the deployment did not settle: {project.status()}")


@pytest.mark.parametrize(("strategy", "point"), CASES)
def test_a_controller_killed_after_a_step_resumes_and_leaves_traffic_on_live_instances(
        project: Project, strategy: str, point: str) -> None:
    project.edit(r'strategy = "[a-z-]+"', f'strategy = "{strategy}"')
    version = project.bump()
    project.corral("down", "--keep-instances")
    log_path = project.folder / ".corral" / "run" / "controller.log"
    seen = len(log_path.read_bytes())
    project.corral("up", "-d", env={"CORRAL_CRASH_AT": point})
    crashed = project.corral("deploy", "web", check=False)
    assert crashed.returncode != 0, f"the controller did not crash at {point}"
    log = log_path.read_bytes()[seen:].decode(errors="replace")
    assert f"CORRAL_CRASH_AT={point}: crashing on purpose" in log
    assert project.get() == 200, "traffic broke while the controller was dead"
    project.corral("up", "-d")
    status = wait_settled(project)
    last = status["last_deployment"]
    assert last["outcome"] in ("succeeded", "rolled back"), last
    if last["outcome"] == "succeeded":
        assert status["live_release"] == last["to"]
        assert {i["release"] for i in status["instances"]} == {f"v{last['to']}"}
    live = {i["address"] for i in status["instances"] if i["state"] == "ready"}
    weighted = {b["address"] for b in status["backends"] if b["weight"] > 0}
    assert weighted and weighted <= live
    assert all(project.get() == 200 for _ in range(20))
    assert version == project.version
