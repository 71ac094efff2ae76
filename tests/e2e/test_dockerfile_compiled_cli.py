"""The most common multi-stage shape, through the CLI: a program compiled in a `gcc:12`
stage and copied alone into a `scratch` stage, deployed and serving through the router.

A real docker-registry on loopback is filled with a `library/gcc:12` that corral built from
a Debian root with gcc and libc6-dev (the debootstrap root is made once per machine, in the
machine-wide test cache) and pushed. The Dockerfile is written as people write it, its FROM
resolved through `[images] default_registry`; server.c (tests/data/compiled-server) is a
small static HTTP server that reads $PORT and stops on SIGTERM.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli_project import MACHINE_CACHE, CachedProject
from loopback import free_port
from registry_process import RegistryProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SERVER_C = Path(__file__).resolve().parents[1] / "data" / "compiled-server" / "server.c"

BASES_SPEC = """[project]
name = "bases"

[images.gcc]
base = "debian:bookworm"
packages = ["gcc", "libc6-dev"]
"""

APP_SPEC = """[project]
name = "compiled"

[images]
default_registry = "{registry}"

[images.server]
dockerfile = "Dockerfile"

[services.server]
image = "server"
replicas = 1
port = 8080
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ path = "/healthz", interval = "1s", timeout = "1s", healthy_after = 1 }}
"""

DOCKERFILE = """FROM gcc:12 AS build
WORKDIR /src
COPY server.c .
RUN mkdir -p /out && gcc -O2 -static -o /out/server server.c

FROM scratch
COPY --from=build /out/server /server
USER 65534
EXPOSE 8080
ENTRYPOINT ["/server"]
"""


class Project(CachedProject):

    def blob(self, digest: str) -> Path:
        return self.folder / ".corral" / "images" / "blobs" / "sha256" / digest[len("sha256:"):]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real docker-registry on loopback holding `library/gcc:12`, built by corral."""
    for tool in ("docker-registry", "bwrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if shutil.which("debootstrap") is None and not (MACHINE_CACHE / "bases").is_dir():
        pytest.skip("no cached Debian base and no debootstrap to make one")
    served = RegistryProcess(tmp_path_factory.mktemp("registry"))
    try:
        bases = Project(tmp_path_factory.mktemp("bases"))
        (bases.folder / "corral.toml").write_text(BASES_SPEC)
        bases.corral("build")
        bases.corral("push", f"{served.address}/library/gcc:12", "--image", "gcc")
        yield served.address
    finally:
        served.stop()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, registry: str) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("compiled"))
    (project.folder / "corral.toml").write_text(APP_SPEC.format(registry=registry,
                                                                port=project.port))
    (project.folder / "Dockerfile").write_text(DOCKERFILE)
    shutil.copy(SERVER_C, project.folder / "server.c")
    yield project
    project.corral("down", check=False)


@pytest.fixture(scope="module")
def built(app: Project) -> tuple[str, str]:
    """(the image digest, the build's progress)."""
    done = app.corral("build", "--json")
    return json.loads(done.stdout)["images"]["server"], done.stderr


def test_the_gcc_stage_compiles_and_only_the_program_reaches_the_scratch_stage(
        app: Project, built: tuple[str, str], registry: str) -> None:
    digest, log = built
    assert f"gcc:12: pulled from {registry}/library/gcc:12" in log
    assert "layer copy --from=build /out/server → /server" in log  # the stage by its name
    manifest = json.loads(app.blob(digest).read_text())
    (layer,) = manifest["layers"]
    with tarfile.open(app.blob(layer["digest"])) as tar:
        members = tar.getmembers()
    assert [(m.name, m.isfile(), m.mode & 0o111 != 0) for m in members] == [
        ("server", True, True)]
    config = json.loads(app.blob(manifest["config"]["digest"]).read_text())["config"]
    assert config["User"] == "65534"
    assert config["Entrypoint"] == ["/server"]
    assert list(config["ExposedPorts"]) == ["8080/tcp"]


def test_the_compiled_program_deploys_and_serves_through_the_router(
        app: Project, built: tuple[str, str]) -> None:
    app.corral("up", "-d")
    app.corral("deploy", "server")
    response = httpx.get(f"http://127.0.0.1:{app.port}/", timeout=5)
    assert (response.status_code, response.text) == (
        200, "hello from a static C server, uid 65534\n")
    health = httpx.get(f"http://127.0.0.1:{app.port}/healthz", timeout=5)
    assert (health.status_code, health.text) == (200, "ok\n")


def test_the_program_stops_cleanly_on_sigterm(app: Project, built: tuple[str, str],
                                              tmp_path: Path) -> None:
    """The image's own /server, run as a plain process: it serves on $PORT, and SIGTERM
    (what a driver sends first when STOPSIGNAL is unset) ends it with exit 0."""
    manifest = json.loads(app.blob(built[0]).read_text())
    with tarfile.open(app.blob(manifest["layers"][0]["digest"])) as tar:
        program = tar.extractfile("server")
        assert program is not None
        (tmp_path / "server").write_bytes(program.read())
    (tmp_path / "server").chmod(0o755)
    port = free_port()
    server = subprocess.Popen([str(tmp_path / "server")], env={"PORT": str(port)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == f"listening on {port}\n"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).text == "ok\n"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        assert server.stdout.read() == "stopping on SIGTERM\n"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
