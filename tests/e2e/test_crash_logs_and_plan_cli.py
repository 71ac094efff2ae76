"""Issue 19, items 2 and 3, as a user meets them: an app that dies at start says why in
its own words (deploy output, ledger, `logs`, `status --instance`), and `plan` in a git
repository converges right after `build` and `deploy` and moves no tag. Real bubblewrap
instances, router, controller and OCI layout; the apps are a static busybox in a scratch
image, so no debootstrap is needed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_project import CliProject
from loopback import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BUSYBOX = shutil.which("busybox") or "/bin/busybox"

SPEC = """
[project]
name = "{name}"

[images.web]
base = "scratch"
copy = [{{ src = "root/", dest = "/" }}]
env = {{ APP_VERSION = "1" }}
entrypoint = ["/bin/busybox", "sh", "-c", {script}]

[services.web]
image = "web"
replicas = {replicas}
port = 8000
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ kind = "tcp", interval = "200ms", start_timeout = "10s" }}
"""

# What a Python app that dies on import writes (its traceback's last lines: the CLI's
# e2e helper refuses any "Traceback" on stderr), then its exit status.
CRASH = ("echo starting crashy; echo 'the app failed to import its modules:' >&2; "
         "echo '  File \"/app/server.py\", line 1, in <module>' >&2; "
         "echo 'ModuleNotFoundError: No module named flask' >&2; exit 1")
SERVE = "exec /bin/busybox httpd -f -p $PORT -h /tmp"


def _project(folder: Path, script: str, replicas: int) -> CliProject:
    if not Path(BUSYBOX).is_file():
        pytest.skip("busybox (busybox-static) is not installed")
    project = CliProject(folder)
    root = folder / "root"
    (root / "bin").mkdir(parents=True)  # the runtime supplies /proc, /dev and /tmp
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    (folder / "corral.toml").write_text(SPEC.format(
        name=folder.name,
        script=json.dumps(script), replicas=replicas, port=project.port))
    return project


@pytest.fixture
def crashing(tmp_path: Path) -> Iterator[CliProject]:
    project = _project(tmp_path / "crashy", CRASH, replicas=2)
    project.corral("up", "-d")
    yield project
    project.corral("down", check=False)


def _logs(project: CliProject, *args: str) -> list[dict[str, Any]]:
    done = project.corral("logs", "web", "--json", *args)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_an_app_that_dies_at_start_shows_its_last_lines_everywhere(
        crashing: CliProject) -> None:
    done = crashing.corral("deploy", "web", check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stderr
    failed = re.search(r"instance (web-v1-[0-9a-f]+) failed: exited with code 1", said)
    assert failed, said
    instance = failed.group(1)
    # the failure message ends with what the app wrote, indented, stderr last
    head = f"last lines (`corral logs web --instance {instance}`):"
    assert head in said, said
    tail = said[said.index(head):]
    assert re.search(r"\n +stdout +starting crashy\n", tail), said
    assert re.search(r"\n +stderr +ModuleNotFoundError: No module named flask", tail), said

    # `logs` has every line of every instance of the release, however short its life:
    # all that each one wrote to its files
    kept = crashing.folder / ".corral" / "logs"

    def written() -> set[tuple[str, str, str]]:
        return {(folder.name, stream, line) for folder in kept.glob("web-v1-*")
                for stream in ("stdout", "stderr") if (folder / f"{stream}.log").exists()
                for line in (folder / f"{stream}.log").read_text().splitlines()}

    def every_line() -> list[dict[str, Any]]:
        found = _logs(crashing, "--release", "v1")
        got = {(f["instance"], f["stream"], f["message"]) for f in found}
        return found if got == written() and len(found) == len(got) else []

    lines = poll(every_line, 15, "every line the v1 instances wrote, in `corral logs`")
    mine = [(line["stream"], line["message"]) for line in lines if line["instance"] == instance]
    assert ("stdout", "starting crashy") in mine
    assert [m for s, m in mine if s == "stderr"] == [
        "the app failed to import its modules:", '  File "/app/server.py", line 1, in <module>',
        "ModuleNotFoundError: No module named flask"]
    text = crashing.corral("logs", "web", "--release", "v1").stdout
    assert "No module named flask" in text

    # one instance in depth: how it ended and what it wrote last
    report = crashing.json("status", "web", "--instance", instance)
    assert report["exit_reason"] == "exited with code 1" and not report["live"]
    assert [v["message"] for v in report["last_lines"]][-1] == \
        "ModuleNotFoundError: No module named flask"
    shown = crashing.corral("status", "web", "--instance", instance).stdout
    assert "last 4 log lines" in shown and "No module named flask" in shown

    # the ledger keeps the reason with the app's words
    ledger = crashing.corral("ledger", "--json").stdout
    assert "No module named flask" in ledger


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.email=dev@example.com",
                           "-c", "user.name=dev", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _tagged(project: CliProject) -> str:
    (image,) = [i for i in project.json("images")["images"] if "web:latest" in i["names"]]
    return str(image["digest"])


def _labels(project: CliProject, digest: str) -> dict[str, str]:
    blobs = project.folder / ".corral" / "images" / "blobs" / "sha256"
    manifest = json.loads((blobs / digest.removeprefix("sha256:")).read_text())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_text())
    return dict(config["config"].get("Labels") or {})


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[CliProject]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    project = _project(tmp_path / "repo", SERVE, replicas=1)
    _git(project.folder, "init", "-q")
    _git(project.folder, "add", "-A")
    _git(project.folder, "commit", "-q", "-m", "first")
    yield project
    project.corral("down", check=False)


def test_plan_in_a_git_repository_converges_after_a_deploy_and_moves_no_tag(
        repository: CliProject) -> None:
    commit = _git(repository.folder, "rev-parse", "HEAD")
    built = repository.json("build")["images"]["web"]
    assert _labels(repository, built)["org.opencontainers.image.revision"] == commit
    repository.corral("up", "-d")
    repository.corral("deploy", "web")

    done = repository.corral("plan", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No changes" in done.stdout
    assert _tagged(repository) == built, "plan moved web:latest"
    assert _labels(repository, _tagged(repository))["dev.corral.git.dirty"] == "false"

    repository.edit(r'APP_VERSION = "1"', 'APP_VERSION = "2"')
    _git(repository.folder, "commit", "-q", "-am", "version 2")
    done = repository.corral("plan", "--json", check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    (change,) = json.loads(done.stdout)["changes"]
    assert change["op"] == "~" and change["reason"].startswith(f"image {built[:19]}")
    planned = change["detail"]["image"]
    assert planned != built
    assert _tagged(repository) == built, "plan moved web:latest"
    assert planned not in {i["digest"] for i in repository.json("images")["images"]}

    # what plan said is exactly what a deploy runs, with its provenance
    repository.corral("deploy", "web")
    live = repository.json("status", "web")["services"][0]
    assert live["live_release"] == 2
    assert _tagged(repository) == planned
    assert _labels(repository, planned)["org.opencontainers.image.revision"] == \
        _git(repository.folder, "rev-parse", "HEAD")
    assert repository.corral("plan", check=False).returncode == 0
