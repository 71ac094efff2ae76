"""Issue 3 builder gaps through the CLI: --build-arg, healthcheck in the config (read by
skopeo), the image's healthcheck as a service's readiness check, and gc of quarantined
roots (kept while a real bubblewrap sandbox still has one mounted)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_project import CliProject

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SPEC = """
[project]
name = "extras"

[images.app]
dockerfile = "Dockerfile"
build_args = { FLAVOUR = "plain" }

[images.keys]
copy = [{ src = "app/", dest = "/app" }]
[images.keys.healthcheck]
command = ["test", "-e", "/app/ok"]
interval = "5s"
timeout = "2s"
start_grace = "1s"
retries = 3

[services.web]
image = "keys"
"""

DOCKERFILE = """FROM scratch
ARG FLAVOUR
ARG VERSION=1
ENV APP_VERSION=$VERSION APP_FLAVOUR=$FLAVOUR
COPY app/ /app/
HEALTHCHECK --interval=3s --retries=2 CMD test -e /app/ok
"""


@pytest.fixture
def project(tmp_path: Path) -> CliProject:
    project = CliProject(tmp_path)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "ok").write_text("")
    (tmp_path / "corral.toml").write_text(SPEC)
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    return project


def _config(project: CliProject, digest: str) -> dict:  # type: ignore[type-arg]
    blobs = project.folder / ".corral" / "images" / "blobs" / "sha256"
    manifest = json.loads((blobs / digest.removeprefix("sha256:")).read_text())
    return dict(json.loads((blobs / manifest["config"]["digest"][7:]).read_text()))


def test_build_args_change_the_digest_and_unknown_ones_warn(project: CliProject) -> None:
    plain = project.json("build", "app")["images"]["app"]
    assert _config(project, plain)["config"]["Env"][-2:] == ["APP_VERSION=1",
                                                             "APP_FLAVOUR=plain"]
    again = project.corral("build", "app", "--build-arg", "VERSION=2", "--build-arg",
                           "NOPE=1", "--json")
    two = json.loads(again.stdout)["images"]["app"]
    assert two != plain
    assert "NOPE" in again.stderr + again.stdout and "not consumed" in again.stderr
    assert "APP_VERSION=2" in _config(project, two)["config"]["Env"]
    assert project.json("build", "app", "--build-arg", "VERSION=2")["images"]["app"] == two
    bad = project.corral("build", "keys", "--build-arg", "A=1", check=False)
    assert bad.returncode != 0 and "has no dockerfile" in bad.stderr


def test_skopeo_shows_the_healthcheck_of_both_kinds_of_image(project: CliProject) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    project.corral("build")
    layout = project.folder / ".corral" / "images"
    found = {}
    for name in ("app", "keys"):
        # --raw: skopeo's parsed view follows the OCI image-spec, which has no Healthcheck
        done = subprocess.run(["skopeo", "inspect", "--config", "--raw",
                               f"oci:{layout}:{name}:latest"],
                              capture_output=True, text=True, timeout=60, check=True)
        found[name] = json.loads(done.stdout)["config"]["Healthcheck"]
    assert found["app"] == {"Test": ["CMD-SHELL", "test -e /app/ok"],
                            "Interval": 3_000_000_000, "Timeout": 30_000_000_000,
                            "Retries": 2}
    assert found["keys"]["Test"] == ["CMD", "test", "-e", "/app/ok"]
    assert found["keys"]["StartPeriod"] == 1_000_000_000


def test_a_service_without_health_is_planned_with_the_images_healthcheck(
        project: CliProject) -> None:
    from corral.engine.operate.changes import wanted_services
    from corral.engine.workspace import Workspace

    ws = Workspace.open(project.folder / "corral.toml")
    health = wanted_services(ws)["web"].config["health"]
    assert (health["kind"], health["command"], health["interval"], health["timeout"],
            health["unhealthy_after"]) == ("exec", ["test", "-e", "/app/ok"], 5.0, 2.0, 3)
    project.edit(r'image = "keys"\n', 'image = "keys"\nhealth = { path = "/up" }\n')
    ws = Workspace.open(project.folder / "corral.toml")
    assert wanted_services(ws)["web"].config["health"]["kind"] == "http"


def _quarantine(project: CliProject, name: str) -> Path:
    entry = project.folder / ".corral" / "cache" / "quarantine" / name
    entry.mkdir(parents=True)
    for folder in ("usr", "bin", "lib", "lib64", "proc", "dev", "tmp", "app"):
        host = Path(f"/{folder}")
        if host.is_symlink():  # as in a Debian root: bin -> usr/bin
            (entry / folder).symlink_to(host.readlink())
        else:
            (entry / folder).mkdir()
    (entry / "app" / "evidence.bin").write_bytes(b"x" * 4096)
    entry.chmod(0o555)  # as read-only as an unpacked root
    return entry


@pytest.fixture
def sandbox_on() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:  # its own session: the group id is the pid the test started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        found += _descendants(int(child))
    return found


def _mounts(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return ""


def test_gc_deletes_quarantined_roots_but_not_one_a_sandbox_still_runs_on(
        project: CliProject, sandbox_on: list[subprocess.Popen[bytes]]) -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    project.corral("build")
    idle = _quarantine(project, "a" * 64 + "-1")
    busy = _quarantine(project, "b" * 64 + "-2")
    binds = []
    for name in ("usr", "bin", "lib", "lib64"):
        host = Path(f"/{name}")
        if host.is_dir() and not host.is_symlink():
            binds += ["--ro-bind", str(host), f"/{name}"]
    sandbox_on.append(subprocess.Popen(
        ["bwrap", "--die-with-parent", "--ro-bind", str(busy), "/", *binds, "--proc", "/proc",
         "--dev", "/dev", "--unshare-pid", "sleep", "120"], start_new_session=True))
    deadline = time.monotonic() + 30
    while not any(busy.name in _mounts(pid) for pid in _descendants(sandbox_on[0].pid)):
        assert time.monotonic() < deadline and sandbox_on[0].poll() is None
        time.sleep(0.1)
    dry = project.json("gc", "--dry-run")
    assert list(dry["quarantined"]) == [str(idle)]
    assert 4096 <= dry["quarantined"][str(idle)] < 8192  # the file and the root's symlinks
    assert dry["still_mounted"] == [str(busy)] and idle.is_dir()
    human = " ".join(project.corral("gc", "--dry-run").stdout.split())
    assert "1 quarantined root(s)" in human and "still runs on it" in human
    done = project.json("gc")
    assert list(done["quarantined"]) == [str(idle)] and not idle.exists() and busy.is_dir()
    assert done["freed"] >= 4096
    live = project.folder / ".corral" / "images" / "index.json"
    assert json.loads(live.read_text())["manifests"], "tagged images are kept"
    os.killpg(sandbox_on[0].pid, signal.SIGKILL)
    sandbox_on[0].wait(timeout=10)
    deadline = time.monotonic() + 30  # the sandbox's inner processes die just after bwrap
    while busy.exists():
        assert time.monotonic() < deadline, "a root nobody mounts any more is collected"
        project.corral("gc")
        time.sleep(0.2)
