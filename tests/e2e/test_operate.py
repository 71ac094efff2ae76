"""Operate as a user runs it: plan, self-healing after SIGKILL, chaos with and without
--drift, against real bubblewrap instances, the router and the SQLite store."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import pytest

from cli_project import CliProject, app_pid
from loopback import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


class Project(CliProject):
    def get(self, path: str = "/") -> int:
        return self.request(path)[0]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("ops"))
    project.corral("init", "--name", "ops", "--port", str(project.port))
    yield project
    project.corral("down", check=False)


def ready(project: Project, count: int) -> list[dict]:  # type: ignore[type-arg]
    instances = project.json("status", "web")["services"][0]["instances"]
    live = [i for i in instances if i["state"] == "ready"]
    return live if len(live) == count == len(instances) else []


def test_plan_shows_a_creation_before_the_first_deploy_and_exits_2(project: Project) -> None:
    done = project.corral("plan", check=False)
    assert done.returncode == 2, done.stderr
    assert "+ web" in done.stdout and "1 to create" in done.stdout


def test_plan_exits_0_when_what_runs_is_what_the_spec_says(project: Project) -> None:
    project.corral("up", "-d")
    project.corral("deploy", "web")
    done = project.corral("plan", "--json", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["changes"] == []


def test_plan_names_the_key_that_forces_a_replacement(project: Project) -> None:
    project.edit(r'GREETING = "hello"', 'GREETING = "hi"')
    try:
        done = project.corral("plan", check=False)
        assert done.returncode == 2
        assert "~ web" in done.stdout and "env.GREETING 'hello' → 'hi'" in done.stdout
    finally:
        project.edit(r'GREETING = "hi"', 'GREETING = "hello"')


def test_a_sigkilled_instance_is_replaced_and_the_ledger_says_why(project: Project) -> None:
    before = poll(lambda: ready(project, 3))
    victim = before[0]
    os.kill(app_pid(victim["pid"]), signal.SIGKILL)  # the app crashes, as an OOM kill does
    after = poll(lambda: (r := ready(project, 3)) and victim["id"] not in {i["id"] for i in r}
                 and r)
    assert victim["id"] not in {i["id"] for i in after}
    assert project.get() == 200
    ledger = project.corral("ledger", "--json", check=False)
    if ledger.returncode == 0:
        assert "reconcile.replace" in ledger.stdout


def test_chaos_kills_and_reports_each_restore_with_no_failed_requests(
        project: Project) -> None:
    done = project.corral("chaos", "web", "--kill", "2", "--interval", "1", "--json",
                          "--seed", "7", check=False)
    result = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert result["seed"] == 7 and len(result["kills"]) == 2
    assert all(k["restored_s"] is not None for k in result["kills"])
    # the router retries idempotent requests; a request cut mid-answer may still fail
    assert result["requests"] > 0 and result["failed_requests"] <= result["requests"] * 0.05


def test_chaos_drift_changes_a_file_and_every_instance_using_the_root_is_replaced(
        project: Project) -> None:
    before = {i["id"] for i in poll(lambda: ready(project, 3))}
    done = project.corral("chaos", "web", "--drift", "--json", check=False)
    result = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    drift = result["kills"][0]
    assert drift["kind"] == "drift" and drift["file"] and drift["restored_s"] is not None
    after = {i["id"] for i in poll(lambda: ready(project, 3))}
    assert not before & after
    assert list((project.folder / ".corral" / "cache" / "quarantine").iterdir())
