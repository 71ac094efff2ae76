"""Environments through the CLI: one spec, two environments (staging, prod), each with its
own controller, router, releases and ledger; prod refuses an image staging has not shown
live and healthy for min_soak, and `promote --from staging --to prod` runs the exact
digest staging runs, with prod's own replicas and address, never rebuilt."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import pytest

from cli_project import BUSYBOX_HTTPD_IMAGE, CliProject, write_busybox_root
from loopback import free_port, poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SPEC = """\
[project]
name = "shop"

{image}
[services.web]
image = "web"
replicas = 1
env = {{ GREETING = "hello" }}
router = {{ listen = "127.0.0.1:{staging}" }}
health = {{ path = "/", interval = "200ms", timeout = "1s", healthy_after = 1 }}

[environments.staging]
default = true

[environments.prod]
require_passed = ["staging"]
min_soak = "1h"

[environments.prod.services.web]
replicas = 2
listen = "127.0.0.1:{prod}"
env = {{ GREETING = "hello from prod" }}
"""


class Project(CliProject):
    def __init__(self, folder: Any) -> None:
        super().__init__(folder)
        self.prod_port = free_port()

    def page(self, port: int) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def ready(self, env: str, count: int) -> list[dict[str, Any]]:
        services = self.json("status", "web", "--env", env)["services"]
        ready = [i for i in services[0]["instances"] if i["state"] == "ready"]
        return ready if len(ready) == count else []

    def live_digest(self, env: str) -> str:
        rows = self.json("releases", "web", "--env", env)["releases"]
        (live,) = [r for r in rows if r.get("outcome") == "live" or r.get("live")]
        return str(live["image"])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("environments"))
    write_busybox_root(project.folder, "v1\n")
    (project.folder / "corral.toml").write_text(SPEC.format(
        image=BUSYBOX_HTTPD_IMAGE, staging=project.port, prod=project.prod_port))
    yield project
    for env in ("staging", "prod"):
        project.corral("down", "--env", env, check=False)


def test_validate_prints_each_environments_effective_spec(project: Project) -> None:
    prod = project.json("validate", "--env", "prod", "--print")["effective"]
    web = prod["services"]["web"]
    assert prod["environment"] == "prod"
    assert (web["replicas"], web["env"]["GREETING"], web["router"]["listen"]) == (
        2, "hello from prod", f"127.0.0.1:{project.prod_port}")
    staging = project.json("validate", "--print")["effective"]  # the default environment
    assert staging["environment"] == "staging"
    assert staging["services"]["web"]["replicas"] == 1
    wrong = project.corral("validate", "--env", "qa", check=False)
    assert wrong.returncode == 1 and "no environment 'qa'" in wrong.stderr + wrong.stdout


def test_validate_prints_the_driver_and_resources_an_environment_replaces(
        tmp_path: Any) -> None:
    project = Project(tmp_path)
    (project.folder / "corral.toml").write_text(SPEC.format(
        image=BUSYBOX_HTTPD_IMAGE, staging=project.port, prod=project.prod_port)
        + 'driver = "container"\nresources = { memory = "256M", cpus = 0.5 }\n')
    web = project.json("validate", "--env", "prod", "--print")["effective"]["services"]["web"]
    assert web["driver"] == "container"
    assert web["resources"] == {"memory": 256 << 20, "memory_max": None, "cpus": 0.5,
                                "pids": None}
    staging = project.json("validate", "--print")["effective"]["services"]["web"]
    assert (staging["driver"], staging.get("resources")) == ("process", None)


def test_prod_refuses_an_image_staging_never_ran(project: Project) -> None:
    project.corral("up", "-d", "--env", "staging")
    project.corral("up", "-d", "--env", "prod")
    refused = project.corral("deploy", "web", "--env", "prod", check=False)
    assert refused.returncode == 1
    assert "prod/web refuses image" in refused.stderr
    assert "was never live and healthy in staging" in refused.stderr
    assert project.json("status", "--env", "prod")["services"] == []


def test_a_promotion_before_min_soak_is_refused_naming_staging(project: Project) -> None:
    project.corral("deploy", "web")  # the default environment: staging
    poll(lambda: project.ready("staging", 1), 60, "staging's instance ready")
    assert project.page(project.port) == (200, "v1\n")
    refused = project.corral("promote", "web", "--from", "staging", "--to", "prod",
                             check=False)
    assert refused.returncode == 1
    assert "was live in staging for" in refused.stderr and "less than min_soak 1h" in \
        refused.stderr
    assert project.json("status", "--env", "prod")["services"] == []


def test_promote_deploys_stagings_exact_digest_with_prods_config(project: Project) -> None:
    project.edit(r'min_soak = "1h"', 'min_soak = "0s"')
    staging_digest = project.live_digest("staging")
    project.corral("promote", "web", "--from", "staging", "--to", "prod")
    poll(lambda: project.ready("prod", 2), 60, "prod's 2 instances ready")
    assert project.live_digest("prod") == staging_digest
    assert project.page(project.prod_port) == (200, "v1\n")
    assert len(project.ready("staging", 1)) == 1  # staging untouched, on its own router
    ledger = project.json("ledger", "--env", "prod")["entries"]
    promoted = [e for e in ledger if e["action"] == "environment.promote"]
    assert promoted and promoted[-1]["subject"] == "prod/web"
    assert promoted[-1]["detail"]["from"] == "staging/web"
    assert promoted[-1]["detail"]["image"] == staging_digest
    assert promoted[-1]["detail"]["outcome"] == "succeeded"
    # each environment has its own ledger: staging's shows no promotion
    assert not [e for e in project.json("ledger", "--env", "staging")["entries"]
                if e["action"] == "environment.promote"]
