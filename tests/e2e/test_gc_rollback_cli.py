"""gc, rollback and no-op deploys as a user drives them (issue 19, items 4 and 5): a deploy
that changes nothing records nothing, `--strategy` is not part of the release, gc keeps
what a rollback can reach, and a rollback to an image gc took changes nothing and says how
to get it back. Real CLI, controller, router, bubblewrap instances and docker-registry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli_project import CliProject
from loopback import free_port, poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

GIT = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


class Project(CliProject):
    def version(self) -> str:
        return self.request("/")[1]

    def live(self) -> int:
        return int(self.json("status", "web")["services"][0]["live_release"])

    def instance_ids(self, release: int) -> list[str]:
        instances = self.json("status", "web")["services"][0]["instances"]
        return sorted(i["id"] for i in instances
                      if i["release"] == f"v{release}" and i["state"] == "ready")

    def ledger(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.corral("ledger", "--export").stdout.splitlines()]

    def image_of(self, release: int) -> str:
        rows = self.json("releases", "web")["releases"]
        return str(next(r["image"] for r in rows if r["version"] == release))

    def deploy(self, *args: str) -> None:
        self.corral("deploy", "web", *args)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("gc-rollback"))
    project.corral("init", "--port", str(project.port))
    project.edit(r"replicas = 3", "replicas = 2")
    # A git repository, so releases carry the commit a rebuild starts from.
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "first"]):
        subprocess.run(["git", *args], cwd=project.folder, check=True,
                       env={**os.environ, **GIT}, capture_output=True)
    project.corral("up", "-d")
    project.deploy()
    yield project
    project.corral("down", check=False)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A real docker-registry on loopback; its address."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed")
    address = f"127.0.0.1:{free_port()}"
    (tmp_path / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\n"
        f"http:\n  addr: {address}\n")
    with (tmp_path / "registry.log").open("wb") as log:
        process = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "config.yml")],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        poll(lambda: _answers(address), 30.0, "docker-registry")
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(address: str) -> bool:
    try:
        return httpx.get(f"http://{address}/v2/", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_deploying_an_unchanged_service_says_nothing_to_deploy_and_records_nothing(
        project: Project) -> None:
    dora = project.json("dora", "--since", "1d")["deployment_frequency"]
    ledger = project.ledger()
    ids = project.instance_ids(1)
    done = project.corral("deploy", "web")
    assert "nothing to deploy: web v1 is live" in done.stdout
    assert "deployment #" not in done.stdout + done.stderr
    events = [json.loads(line) for line in project.corral("deploy", "web", "--json")
              .stdout.splitlines()]
    assert [e["type"] for e in events] == ["unchanged"] and events[0]["release"] == 1
    assert project.json("dora", "--since", "1d")["deployment_frequency"] == dora
    assert project.ledger() == ledger
    assert project.instance_ids(1) == ids and project.live() == 1


def test_deploy_strategy_applies_to_one_deployment_and_is_not_part_of_the_release(
        project: Project) -> None:
    project.edit(r'GREETING = "hello"', 'GREETING = "hi"')
    project.deploy("--strategy", "blue-green")
    assert project.live() == 2
    last = project.json("status", "web")["services"][0]["last_deployment"]
    assert last["strategy"] == "blue-green" and last["outcome"] == "succeeded"
    ids = project.instance_ids(2)
    assert len(ids) == 2
    ledger = project.ledger()
    # Before, the plain deploy found a new release (strategy "rolling" in its config) and
    # replaced every instance of an app that had not changed.
    done = project.corral("deploy", "web")
    assert "nothing to deploy: web v2 is live" in done.stdout
    assert project.instance_ids(2) == ids and project.ledger() == ledger
    assert [r["version"] for r in project.json("releases", "web")["releases"]] == [1, 2]


def test_gc_keeps_what_a_rollback_can_reach_counting_releases_and_the_window(
        project: Project) -> None:
    # v3 and v4 share one image (B: only the service's env changed); v5 has its own (C).
    project.edit(r'APP_VERSION = "1"', 'APP_VERSION = "2"')
    project.deploy()
    project.edit(r'GREETING = "hi"', 'GREETING = "hey"')
    project.deploy()
    project.edit(r'APP_VERSION = "2"', 'APP_VERSION = "3"')
    project.deploy()
    assert project.live() == 5 and project.version() == "3"
    first, shared = project.image_of(1), project.image_of(3)
    assert project.image_of(4) == shared != first
    # Keep one release besides the live one: v4. The window (7 days by default) keeps every
    # release live since, back to v1, however many releases share an image.
    gc = project.json("gc", "--keep", "1")
    assert first in gc["kept"] and shared in gc["kept"] and first not in gc["blobs"]
    assert "v1" in gc["kept"][first] and "ago" in gc["kept"][first]
    # Without the window only the count decides, counted as releases: v4 (image B) and the
    # live v5; v1's image would go.
    dry = project.json("gc", "--keep", "1", "--keep-for", "0s", "--dry-run")
    assert first in dry["blobs"] and shared not in dry["blobs"]
    rolled = project.corral("rollback", "web", "--to", "v1")
    assert rolled.returncode == 0
    assert project.live() == 1 and project.version() == "1"


def test_a_rollback_to_an_image_gc_took_changes_nothing_and_says_how_to_get_it_back(
        project: Project, registry: str) -> None:
    project.edit(r'APP_VERSION = "3"', 'APP_VERSION = "4"')
    project.deploy()
    live = project.live()
    shared = project.image_of(3)
    pushed = project.json("push", f"{registry}/shop/web:two", "--image", shared)
    assert pushed["digest"] == shared
    gone = project.json("gc", "--keep", "0", "--keep-for", "0s")
    assert shared in gone["blobs"]
    listed = project.json("images")
    rows = listed["images"] if isinstance(listed, dict) else listed
    assert shared not in {i["digest"] for i in rows}

    ledger = project.ledger()
    failed = project.corral("rollback", "web", "--to", "v3", check=False)
    assert failed.returncode == 1
    said = " ".join((failed.stdout + failed.stderr).split())
    assert "is not here any more" in said and "nothing was changed" in said, said
    assert f"corral pull {registry}/shop/web@{shared}" in said, said
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project.folder, text=True,
                            capture_output=True, check=True).stdout.strip()
    assert f"git checkout {commit[:12]}" in said, said
    assert "corral build`" in said or "corral build" in said
    # The live release is untouched: still live, serving, not marked bad, redeployable.
    assert project.ledger() == ledger
    assert project.live() == live and project.version() == "4"
    again = project.corral("deploy", "web")
    assert f"nothing to deploy: web v{live} is live" in again.stdout
    # The hint works: pull the image back by digest, and the rollback goes through.
    project.corral("pull", f"{registry}/shop/web@{shared}")
    started = time.monotonic()
    project.corral("rollback", "web", "--to", "v3")
    assert project.live() == 3 and project.version() == "2", time.monotonic() - started
    marks = [e for e in project.ledger() if e["action"] == "release.bad"]
    assert marks[-1]["detail"]["release"] == live
