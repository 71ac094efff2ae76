"""Dockerfiles as people write them, through the CLI: multi-stage builds FROM registry images
(resolved through `[images] default_registry`, pinned in corral.lock), deployed and serving.

A real docker-registry on loopback is filled with bases corral built itself and pushed under
the names people use: `library/python:3.11-slim` (a Debian root with python3) and
`library/busybox:stable` (one static busybox). Two apps in the usual shapes build on them: a
Python API whose dependencies are prepared in a builder stage and copied into a slim stage
(heredocs, a RUN cache mount, USER by name, STOPSIGNAL), and a site generated in a Python
stage and copied into a minimal busybox stage; and the Python Dockerfile `docker init`
writes (a bind mount, a cache mount, adduser, USER, `COPY . .`, a shell-form CMD). All deploy
and answer through the router.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator

import httpx
import pytest

from cli_project import MACHINE_CACHE, CachedProject, write_busybox_root
from loopback import free_port, poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


BASES_SPEC = """[project]
name = "bases"

[images.python]
base = "debian:bookworm"
packages = ["python3"]
env = {{ PYTHON_VERSION = "{version}", LANG = "C.UTF-8" }}

[images.busybox]
base = "scratch"
copy = [{{ src = "rootfs/bin/", dest = "/bin" }}]
cmd = ["/bin/busybox", "sh"]
"""

APP_SPEC = """[project]
name = "stages"

[images]
default_registry = "{registry}"

[images.api]
dockerfile = "api.Dockerfile"

[images.site]
dockerfile = "site.Dockerfile"

[services.api]
image = "api"
replicas = 1
port = 8000
router = {{ listen = "127.0.0.1:{api_port}" }}
health = {{ path = "/healthz", interval = "1s", timeout = "1s", healthy_after = 1 }}

[images.web]
dockerfile = "web.Dockerfile"

[services.web]
image = "web"
replicas = 1
port = 8000
router = {{ listen = "127.0.0.1:{web_port}" }}
health = {{ path = "/", interval = "1s", timeout = "1s", healthy_after = 1 }}

[services.site]
image = "site"
replicas = 1
port = 8080
router = {{ listen = "127.0.0.1:{site_port}" }}
health = {{ path = "/", interval = "1s", timeout = "1s", healthy_after = 1 }}
"""

API_DOCKERFILE = """# syntax=docker/dockerfile:1
FROM python:3.11-slim AS deps
WORKDIR /build
COPY vendor/ ./vendor/
RUN --mount=type=cache,id=stages-build,target=/root/.cache/build <<EOF
set -e
mkdir -p /install
cp -r vendor/greeting /install/
python3 -m compileall -q /install
echo "built once" > /root/.cache/build/marker
EOF

FROM python:3.11-slim
ENV PYTHONPATH=/usr/local/lib/app-deps
COPY --from=deps /install /usr/local/lib/app-deps
COPY app/server.py /app/server.py
COPY <<EOF /app/version.txt
api-$PYTHON_VERSION
EOF
USER nobody
STOPSIGNAL SIGINT
EXPOSE 8000
CMD ["python3", "/app/server.py"]
"""

SITE_DOCKERFILE = """FROM python:3.11-slim AS build
COPY pages/ /pages/
RUN python3 - <<'PY'
import pathlib
out = pathlib.Path("/site")
out.mkdir()
for page in sorted(pathlib.Path("/pages").glob("*.txt")):
    html = "<h1>" + page.read_text().strip() + "</h1>"
    (out / (page.stem + ".html")).write_text(html)
PY

FROM busybox:stable
COPY --from=build /site /www
CMD ["/bin/busybox", "sh", "-c", "exec /bin/busybox httpd -f -p $PORT -h /www"]
"""

# What `docker init` writes for a Python app (Docker Desktop 4.x), as it writes it: `as` in
# lower case, ARG in FROM, adduser with a uid, a cache and a bind mount on the install step
# (which fetches from the network in Docker's default), USER, `COPY . .`, a shell-form CMD.
# Only the install line differs: the stand-in base has no pip, so it "installs" the pinned
# requirements by writing them down, reading them through the bind mount.
WEB_DOCKERFILE = """# syntax=docker/dockerfile:1

# Comments are provided throughout this file to help you get started.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim as base

# Prevents Python from writing pyc files.
ENV PYTHONDONTWRITEBYTECODE=1

# Keeps Python from buffering stdout and stderr.
ENV PYTHONUNBUFFERED=1

WORKDIR /app

# Create a non-privileged user that the app will run under.
ARG UID=10001
RUN adduser \\
    --disabled-password \\
    --gecos "" \\
    --home "/nonexistent" \\
    --shell "/sbin/nologin" \\
    --no-create-home \\
    --uid "${UID}" \\
    appuser

# Download dependencies as a separate step to take advantage of Docker's caching.
RUN --mount=type=cache,target=/root/.cache/pip \\
    --mount=type=bind,source=requirements.txt,target=requirements.txt \\
    cp requirements.txt /usr/local/installed.txt

# Switch to the non-privileged user to run the application.
USER appuser

# Copy the source code into the container.
COPY . .

# Expose the port that the application listens on.
EXPOSE 8000

# Run the application.
CMD python3 web_server.py
"""

WEB_SERVER = """import http.server, os

INSTALLED = open("/usr/local/installed.txt").read().strip()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{INSTALLED} as uid {os.getuid()} in {os.getcwd()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""

SERVER = """import http.server, os, greeting

VERSION = open("/app/version.txt").read().strip()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = greeting.hello(os.getuid()).encode()
        self.send_response(200)
        self.send_header("X-App-Version", VERSION)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


class Project(CachedProject):

    def layer_names(self, digest: str) -> set[str]:
        blobs = self.folder / ".corral" / "images" / "blobs" / "sha256"
        manifest = json.loads((blobs / digest.removeprefix("sha256:")).read_text())
        names: set[str] = set()
        for layer in manifest["layers"]:
            with tarfile.open(blobs / layer["digest"].removeprefix("sha256:")) as tar:
                names |= set(tar.getnames())
        return names

    def config(self, digest: str) -> dict:  # type: ignore[type-arg]
        blobs = self.folder / ".corral" / "images" / "blobs" / "sha256"
        manifest = json.loads((blobs / digest.removeprefix("sha256:")).read_text())
        return dict(json.loads((blobs / manifest["config"]["digest"][7:]).read_text()))


def _needs() -> None:
    for tool in ("docker-registry", "busybox", "bwrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if not (MACHINE_CACHE / "bases").is_dir() and shutil.which("debootstrap") is None:
        pytest.skip("no cached Debian base and no debootstrap to make one")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real docker-registry on loopback; its address."""
    _needs()
    folder = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    (folder / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'storage'}\n"
        f"http:\n  addr: {address}\n")
    with (folder / "registry.log").open("wb") as log:
        process = subprocess.Popen(["docker-registry", "serve", str(folder / "config.yml")],
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


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory, registry: str) -> Project:
    """The registry filled with corral-built bases under the names people use."""
    project = Project(tmp_path_factory.mktemp("bases"))
    write_busybox_root(project.folder, "unused")
    (project.folder / "corral.toml").write_text(BASES_SPEC.format(version="3.11.2"))
    project.corral("build")
    project.corral("push", f"{registry}/library/python:3.11-slim", "--image", "python")
    project.corral("push", f"{registry}/library/busybox:stable", "--image", "busybox")
    return project


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, registry: str,
        bases: Project) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("app"))
    folder = project.folder
    site_port, web_port = free_port(), free_port()
    (folder / "corral.toml").write_text(APP_SPEC.format(
        registry=registry, api_port=project.port, site_port=site_port, web_port=web_port))
    project.site_port = site_port  # type: ignore[attr-defined]
    project.web_port = web_port  # type: ignore[attr-defined]
    (folder / "web.Dockerfile").write_text(WEB_DOCKERFILE)
    (folder / "web_server.py").write_text(WEB_SERVER)
    (folder / "requirements.txt").write_text("flask==3.0.3\n")
    (folder / "api.Dockerfile").write_text(API_DOCKERFILE)
    (folder / "site.Dockerfile").write_text(SITE_DOCKERFILE)
    (folder / "vendor" / "greeting").mkdir(parents=True)
    (folder / "vendor" / "greeting" / "__init__.py").write_text(
        "def hello(uid):\n    return f'hello from uid {uid}'\n")
    (folder / "app").mkdir()
    (folder / "app" / "server.py").write_text(SERVER)
    (folder / "pages").mkdir()
    (folder / "pages" / "index.txt").write_text("built in a python stage\n")
    yield project
    project.corral("down", check=False)


@pytest.fixture(scope="module")
def built(app: Project) -> dict[str, str]:
    done = app.corral("build", "--json")
    digests: dict[str, str] = json.loads(done.stdout)["images"]
    app.build_log = done.stderr  # type: ignore[attr-defined]
    return digests


def test_from_without_a_host_resolves_through_the_default_registry_and_is_pinned(
        app: Project, built: dict[str, str], registry: str) -> None:
    log = app.build_log  # type: ignore[attr-defined]
    assert f"python:3.11-slim: pulled from {registry}/library/python:3.11-slim" in log
    assert "# syntax=docker/dockerfile:1 is ignored" in log
    pins = json.loads((app.folder / "corral.lock").read_text())["bases"]
    assert set(pins) == {f"oci:{registry}/library/python:3.11-slim",
                         f"oci:{registry}/library/busybox:stable"}
    assert all(digest.startswith("sha256:") for digest in pins.values())


def test_the_final_stage_has_only_what_it_copied_and_its_metadata(
        app: Project, built: dict[str, str]) -> None:
    config = app.config(built["api"])["config"]
    assert config["User"] == "65534:65534"  # USER nobody, from the image's /etc/passwd
    assert config["StopSignal"] == "SIGINT"
    assert config["Cmd"] == ["python3", "/app/server.py"]
    assert "PYTHON_VERSION=3.11.2" in config["Env"]  # the base's env carries over
    manifest_layers = len(app.config(built["api"])["rootfs"]["diff_ids"])
    assert manifest_layers == 4  # the base, the deps, the server, the heredoc file
    cache = MACHINE_CACHE / "run-cache"
    assert any((folder / "marker").is_file() for folder in cache.iterdir())


def test_both_multi_stage_images_deploy_and_serve(app: Project, built: dict[str, str]) -> None:
    app.corral("up", "-d")
    app.corral("deploy", "api")
    app.corral("deploy", "site")
    response = httpx.get(f"http://127.0.0.1:{app.port}/", timeout=5)
    assert response.status_code == 200
    assert response.text == "hello from uid 65534"
    assert response.headers["X-App-Version"] == "api-3.11.2"
    site = httpx.get(f"http://127.0.0.1:{app.site_port}/index.html",  # type: ignore[attr-defined]
                     timeout=5)
    assert (site.status_code, site.text) == (200, "<h1>built in a python stage</h1>")


def test_the_python_dockerfile_docker_init_writes_builds_deploys_and_serves(
        app: Project, built: dict[str, str]) -> None:
    config = app.config(built["web"])["config"]
    assert config["User"] == "10001:10001"  # appuser, as adduser made it
    assert config["Cmd"] == ["/bin/sh", "-c", "python3 web_server.py"]
    assert config["WorkingDir"] == "/app"
    app.corral("up", "-d")
    app.corral("deploy", "web")
    response = httpx.get(f"http://127.0.0.1:{app.web_port}/", timeout=5)  # type: ignore
    # The process driver runs every instance as 65534, whatever the image's user (its
    # sandbox's rule, docs/drivers.md); the image records appuser for other engines.
    assert (response.status_code, response.text) == (
        200, "flask==3.0.3 as uid 65534 in /app")


def test_a_rebuild_is_all_cached_and_a_moved_tag_changes_nothing_until_update_bases(
        app: Project, built: dict[str, str], bases: Project, registry: str) -> None:
    again = app.corral("build", "--json")
    assert json.loads(again.stdout)["images"] == built
    assert "running in bubblewrap" not in again.stderr
    (bases.folder / "corral.toml").write_text(BASES_SPEC.format(version="3.11.9"))
    bases.corral("build", "python")
    bases.corral("push", f"{registry}/library/python:3.11-slim", "--image", "python")
    pinned = app.corral("build", "api", "--json")
    assert json.loads(pinned.stdout)["images"]["api"] == built["api"]
    moved = app.corral("build", "api", "--update-bases", "--json")
    assert json.loads(moved.stdout)["images"]["api"] != built["api"]
    assert "(was sha256:" in moved.stderr
    config = app.config(json.loads(moved.stdout)["images"]["api"])["config"]
    assert "PYTHON_VERSION=3.11.9" in config["Env"]


def test_target_builds_an_earlier_stage_alone(app: Project, built: dict[str, str]) -> None:
    done = app.corral("build", "api", "--target", "deps", "--json")
    deps = json.loads(done.stdout)["images"]["api"]
    assert deps != built["api"]
    assert app.config(deps)["config"].get("WorkingDir") == "/build"
    names = app.layer_names(deps)  # what the RUN wrote into its cache mount stayed out
    assert "install/greeting/__init__.py" in names
    assert not [name for name in names if name.startswith("root/.cache/build/")]
