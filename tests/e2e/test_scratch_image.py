"""A project nobody here wrote, driven through the CLI as a new user would: a FROM scratch image
holding only a static busybox, serving files with `busybox httpd` from a shell-form entrypoint.
It validates, builds, comes up, deploys 3 replicas and rolls v1 -> v2 under load with no
failed request: the runtime supplies what the image lacks (/proc, /dev, /tmp, /sys …)."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_project import BUSYBOX_HTTPD_IMAGE, CliProject, write_busybox_root
from loopback import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SPEC = """\
[project]
name = "static"

{image}
[services.web]
image = "web"
replicas = 3
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ path = "/", interval = "300ms", timeout = "1s", healthy_after = 1 }}
strategy = "rolling"
rolling = {{ max_surge = 1, max_unavailable = 0 }}
"""


class Project(CliProject):
    def page(self, port: int | None = None) -> tuple[int, str]:
        """GET / through the router (or straight from an instance's port): status and body."""
        connection = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=5)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def instances(self) -> list[dict[str, Any]]:
        return list(self.json("status", "web")["services"][0]["instances"])

    def ready(self, count: int, release: int) -> list[dict[str, Any]]:
        ready = [i for i in self.instances()
                 if i["state"] == "ready" and i["release"] in (release, f"v{release}")]
        return ready if len(ready) == count else []


class Load:
    """Loopback GETs through the router, one after another, until stopped or bounded."""

    def __init__(self, project: Project, max_requests: int = 20_000,
                 max_seconds: float = 120.0) -> None:
        self.project, self.max_requests, self.max_seconds = project, max_requests, max_seconds
        self.answers: list[tuple[int, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self.stop.is_set() and len(self.answers) < self.max_requests \
                and time.monotonic() < deadline:
            try:
                self.answers.append(self.project.page())
            except (OSError, http.client.HTTPException) as exc:
                self.answers.append((0, type(exc).__name__))
            self.stop.wait(0.005)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("static"))
    write_busybox_root(project.folder, "v1\n")
    spec = SPEC.format(port=project.port, image=BUSYBOX_HTTPD_IMAGE)
    (project.folder / "corral.toml").write_text(spec)
    yield project
    project.corral("down", check=False)


def test_a_scratch_image_of_one_static_busybox_builds_and_serves_3_replicas(
        project: Project) -> None:
    project.corral("validate")
    built = project.corral("build")
    assert "sha256:" in built.stdout + built.stderr
    assert sorted(p.name for p in (project.folder / "rootfs").iterdir()) == ["bin", "www"]
    project.corral("up", "-d")
    project.corral("deploy", "web")
    instances = poll(lambda: project.ready(3, 1), 60, "3 ready instances of v1")
    assert project.page() == (200, "v1\n")
    for instance in instances:  # every replica answers on its own, not only the router
        port = int(instance["address"].rpartition(":")[2])
        assert project.page(port) == (200, "v1\n")


def test_a_rolling_deploy_to_v2_under_load_fails_no_request(project: Project) -> None:
    poll(lambda: project.ready(3, 1), 60, "3 ready instances of v1")
    (project.folder / "rootfs/www/index.html").write_text("v2\n")
    project.corral("build")
    with Load(project) as load:
        before = poll(lambda: len(load.answers) >= 20 and len(load.answers), 30,
                      "the load to be flowing")
        project.corral("deploy", "web")
        served = len(load.answers)
        assert served - before >= 20, "the load kept flowing while the deploy ran"
        poll(lambda: len(load.answers) >= served + 20, 30, "answers after the deploy")
    failed = [a for a in load.answers if a[0] != 200]
    assert failed == [], f"{len(failed)} of {len(load.answers)} requests failed: {failed[:5]}"
    bodies = [body for _, body in load.answers]
    assert bodies[0] == "v1\n" and set(bodies) == {"v1\n", "v2\n"}
    assert set(bodies[served:]) == {"v2\n"}  # once the deploy returned, only v2 answers
    assert poll(lambda: project.ready(3, 2), 60, "3 ready instances of v2")
    assert {project.page()[1] for _ in range(20)} == {"v2\n"}


def test_down_stops_every_instance(project: Project) -> None:
    pids = [i["pid"] for i in project.instances() if i.get("pid")]
    assert pids
    project.corral("down")
    poll(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 30,
         "every instance to be stopped")
