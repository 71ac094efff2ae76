"""Liveness as a user sees it: an instance that stops passing its liveness check is replaced
by a new one (never restarted in place), with real sandboxes, router and controller."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cli_project import CliProject, app_pid

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

LIVENESS = ('liveness = { kind = "exec", command = ["test", "!", "-e", "/tmp/sick"], '
            'interval = "300ms", unhealthy_after = 2 }')


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliProject]:
    project = CliProject(tmp_path_factory.mktemp("alive"))
    project.corral("init", "--name", "alive", "--port", str(project.port))
    project.edit(r"replicas = 3", "replicas = 2")
    project.edit(r"(health = \{[^\n]*\})", r"\1\n" + LIVENESS.replace("\\", "\\\\"))
    yield project
    project.corral("down", check=False)


def ready_instances(project: CliProject) -> list[dict[str, Any]]:
    service = project.json("status", "web")["services"][0]
    return [i for i in service["instances"] if i["state"] == "ready"]


def test_an_instance_failing_liveness_is_replaced_by_a_new_one(project: CliProject) -> None:
    project.corral("up", "-d")
    project.corral("deploy", "web")
    before = ready_instances(project)
    assert len(before) == 2
    sick = before[0]
    # Into its private /tmp, from inside its namespaces (as an exec check runs): from now on
    # its liveness check fails.
    subprocess.run(["nsenter", "-t", str(app_pid(sick["pid"])), "-U", "-m",
                    "-S", "65534", "-G", "65534", "--", "touch", "/tmp/sick"], check=True)
    deadline = time.monotonic() + 60
    after = before
    while time.monotonic() < deadline:
        after = ready_instances(project)
        ids = {i["id"] for i in after}
        if sick["id"] not in ids and len(after) == 2:
            break
        time.sleep(0.2)
    assert sick["id"] not in {i["id"] for i in after}, "the sick instance is still there"
    assert len(after) == 2 and before[1]["id"] in {i["id"] for i in after}
    ledger = project.corral("ledger", "--service", "web").stdout
    assert sick["id"] in ledger and "liveness" in ledger
    assert project.request()[0] == 200
