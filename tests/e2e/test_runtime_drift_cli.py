"""Runtime drift as a user meets it, through the CLI and the controller's own drift check
(every 2 s here, CORRAL_DRIFT_PERIOD): a shell-form busybox image (its shell execs httpd, an
exec liveness check enters it every second) keeps its 3 instances through several checks,
and a shell entered with nsenter gets its instance replaced with the ledger saying what
entered."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from cli_project import BUSYBOX_HTTPD_IMAGE, CliProject, app_pid, write_busybox_root
from corral.api.client import ControllerClient
from loopback import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600),
              pytest.mark.skipif(os.geteuid() != 0, reason="nsenter into a sandbox needs root")]

RUNTIME_PERIOD = 2.0  # CORRAL_DRIFT_PERIOD for this controller (10 s by default)
SPEC = """\
[project]
name = "churn"

{image}
[services.web]
image = "web"
replicas = 3
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ path = "/", interval = "1s", timeout = "1s", healthy_after = 1 }}
liveness = {{ kind = "exec", command = ["/bin/busybox", "sleep", "0.3"], interval = "1s" }}
"""


class Project(CliProject):
    def ready(self, count: int) -> list[dict[str, Any]]:
        instances = self.json("status", "web")["services"][0]["instances"]
        ready = [i for i in instances if i["state"] == "ready"]
        return ready if len(ready) == count == len(instances) else []

    def drift_entries(self) -> list[dict[str, Any]]:
        return list(self.json("ledger", "--action", "drift.runtime")["entries"])

    def runtime_checks(self) -> int:
        """How many runtime drift checks the controller has run (GET /v1/reconcile)."""
        client = ControllerClient(self.folder / ".corral" / "run" / "controller.sock")
        try:
            return int(client.get("/v1/reconcile")["runtime_checks"])
        finally:
            client.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("churn"))
    write_busybox_root(project.folder, "hi\n")
    spec = SPEC.format(port=project.port, image=BUSYBOX_HTTPD_IMAGE)
    (project.folder / "corral.toml").write_text(spec)
    project.corral("build")
    project.corral("up", "-d", env={"CORRAL_DRIFT_PERIOD": str(RUNTIME_PERIOD)})
    project.corral("deploy", "web")
    yield project
    project.corral("down", check=False)


def test_a_shell_form_service_keeps_its_instances_through_three_drift_checks(
        project: Project) -> None:
    before = {i["id"] for i in poll(lambda: project.ready(3), 60, "3 ready instances")}
    checks = project.runtime_checks()

    def unchanged_until_three_more_checks() -> bool:
        # read first: instances checked before the count moved on are covered by it
        done = project.runtime_checks() >= checks + 3
        assert {i["id"] for i in project.ready(3)} == before  # a churning one would be gone
        assert project.drift_entries() == []
        assert project.request()[0] == 200
        return done

    poll(unchanged_until_three_more_checks, 4 * RUNTIME_PERIOD + 30, "three drift checks")


def test_a_shell_entered_with_nsenter_gets_its_instance_replaced_and_the_ledger_says_why(
        project: Project) -> None:
    instances = poll(lambda: project.ready(3), 60, "3 ready instances")
    victim = instances[0]
    shell = subprocess.Popen(["nsenter", "-t", str(app_pid(victim["pid"])), "-m", "-p", "-U",
                              "--preserve-credentials", "--", "/bin/busybox", "sh", "-c",
                              "/bin/busybox sleep 120"])
    try:
        after = poll(lambda: (r := project.ready(3)) and victim["id"] not in
                     {i["id"] for i in r} and r, 3 * RUNTIME_PERIOD + 30, "the replacement")
    finally:
        shell.kill()
        shell.wait()
    assert {i["id"] for i in instances[1:]} <= {i["id"] for i in after}
    (entry,) = project.drift_entries()
    assert entry["detail"]["instance"] == victim["id"]
    assert any("entered from outside" in d and "(uid 0)" in d
               for d in entry["detail"]["differences"])
    assert ["/bin/busybox", "sleep", "120"] in [p["argv"] for p in entry["detail"]["entered"]]
    assert project.request()[0] == 200
