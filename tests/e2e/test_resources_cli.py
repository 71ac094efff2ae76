"""Resource limits as a user sees them, with real sandboxes, cgroups, router and controller:
an instance over its memory limit is killed by the kernel and replaced (cause=oom) while
its neighbour serves; `status` shows use against limits; a blue-green fleet that does not
fit beside the live one is refused before anything starts."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cli_project import CliProject
from corral.drivers import cgroups
from corral.drivers.procfs import machine_capacity

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

HOG_ROUTE = '''        if self.path == "/hog":
            hoard = [bytearray(8 << 20) for _ in range(64)]  # 512M: far over the limit
            body, status = str(len(hoard)).encode(), 200
        elif self.path == "/healthz":'''


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliProject]:
    if not cgroups.prepare(cgroups.detect()).is_usable:
        pytest.skip("no usable cgroup layout on this host")
    project = CliProject(tmp_path_factory.mktemp("limits"))
    project.corral("init", "--name", "limits", "--port", str(project.port))
    project.edit(r"replicas = 3", 'replicas = 2\nresources = { memory = "48M", '
                 'memory_max = "64M", cpus = 0.5, pids = 64 }')
    server = project.folder / "app" / "server.py"
    server.write_text(server.read_text().replace('        if self.path == "/healthz":',
                                                 HOG_ROUTE, 1))
    project.corral("up", "-d", env={"CORRAL_USAGE_PERIOD": "1"})  # cost's used hours
    yield project
    project.corral("down", check=False)


def instances(project: CliProject) -> list[dict[str, Any]]:
    return list(project.json("status", "web")["services"][0]["instances"])


def ready(project: CliProject) -> list[dict[str, Any]]:
    return [i for i in instances(project) if i["state"] == "ready"]


def get(address: str, path: str) -> int:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return 0  # the connection died with the instance
    finally:
        connection.close()


def test_an_instance_over_its_memory_limit_is_replaced_with_cause_oom(
        project: CliProject) -> None:
    project.corral("deploy", "web")
    before = ready(project)
    assert len(before) == 2
    hog, neighbour = before

    assert get(hog["address"], "/hog") == 0  # the kernel ends it mid-request

    deadline = time.monotonic() + 90
    after = before
    while time.monotonic() < deadline:
        after = ready(project)
        if hog["id"] not in {i["id"] for i in after} and len(after) == 2:
            break
        time.sleep(0.2)
    assert {i["id"] for i in after} != {i["id"] for i in before}, "not replaced"
    assert neighbour["id"] in {i["id"] for i in after}
    assert get(neighbour["address"], "/") == 200 and project.request()[0] == 200
    ledger = project.json("ledger", "--service", "web")
    causes = [e["detail"].get("cause") for e in ledger["entries"]
              if hog["id"] in json.dumps(e["detail"])]
    assert "oom" in causes, ledger


def test_status_shows_each_instance_use_against_its_limits(project: CliProject) -> None:
    shown = ready(project)[0]

    assert shown["usage"]["memory_limit"] == 64 << 20
    assert 0 < shown["usage"]["memory"] < 64 << 20
    assert shown["usage"]["cpus"] == 0.5 and shown["usage"]["pids_limit"] == 64
    text = project.corral("status", "web").stdout
    assert "/64M" in text
    limits = project.json("status")["controller"]["limits"]
    assert limits["enforced"] and limits["how"].startswith("cgroup v")


def test_a_blue_green_fleet_that_does_not_fit_is_refused_before_anything_starts(
        project: CliProject) -> None:
    # 27% of the machine each: rolling's peak (2 + 1 surge) is 81% and fits, a blue-green
    # fleet beside the live one (2 + 2) is 108% and cannot
    each = machine_capacity().memory * 27 // 100
    project.edit(r'resources = \{[^}]*\}', f'resources = {{ memory = {each} }}')
    project.corral("deploy", "web")
    running = {i["id"] for i in instances(project)}
    project.edit(r'GREETING = "hello"', 'GREETING = "bonjour"')

    refused = project.corral("deploy", "web", "--strategy", "blue-green", check=False)

    assert refused.returncode != 0
    assert "capacity" in refused.stderr and "blue-green deployment needs memory" in refused.stderr
    assert {i["id"] for i in instances(project)} == running
    assert project.request()[0] == 200



def test_cost_reports_the_hours_each_release_reserved(project: CliProject) -> None:
    report = project.json("cost", "--since", "1d")

    reserved = {row["release"]: row for row in report["releases"] if row["service"] == "web"}
    assert reserved["v1"]["memory_gib_hours"] > 0  # 48M each, for as long as they ran
    assert reserved["v2"]["memory_gib_hours"] > reserved["v1"]["memory_gib_hours"]
    assert report["total"]["memory_gib_hours"] >= sum(r["memory_gib_hours"]
                                                      for r in reserved.values()) - 1e-3
    assert "resource-hours reserved and used" in project.corral("cost").stdout


def test_cost_reports_the_memory_running_instances_used_from_their_cgroups(
        project: CliProject) -> None:
    if project.corral("status", "web", check=False).returncode != 0:  # run alone
        project.corral("deploy", "web")

    def used() -> dict[str, Any]:
        return dict(project.json("cost", "--since", "1d", "--service", "web")["total"])

    deadline = time.monotonic() + 30
    total = used()
    while total["used_memory_gib_hours"] == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        total = used()

    assert total["used_memory_gib_hours"] > 0, total  # sampled from the instances' cgroups
    assert total["used_memory_gib_hours"] < total["memory_gib_hours"]
    assert total["idle_share"] is not None and 0 < total["idle_share"] < 1
