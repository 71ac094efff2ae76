"""The shape of a base image's own Dockerfile, through the CLI: `FROM scratch`, `ADD` of a
root file system archive, a CMD; here a static busybox serving a page. It builds (the
archive unpacked, its modes kept), deploys and answers through the router."""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterator

import httpx
import pytest

from cli_project import CliProject, write_busybox_root

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SPEC = """[project]
name = "rootfs"

[images.web]
dockerfile = "Dockerfile"

[services.web]
image = "web"
replicas = 1
router = {{ listen = "127.0.0.1:{port}" }}
health = {{ path = "/", interval = "1s", timeout = "1s", healthy_after = 1 }}
"""

DOCKERFILE = """FROM scratch
ADD rootfs.tar.gz /
CMD ["/bin/busybox", "sh", "-c", "exec /bin/busybox httpd -f -p $PORT -h /www"]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliProject]:
    project = CliProject(tmp_path_factory.mktemp("rootfs"))
    rootfs = write_busybox_root(project.folder / "unpacked", "served from an ADDed root\n")
    with tarfile.open(project.folder / "rootfs.tar.gz", "w:gz") as tar:
        tar.add(rootfs, arcname=".")
    shutil.rmtree(project.folder / "unpacked")
    (project.folder / "Dockerfile").write_text(DOCKERFILE)
    (project.folder / "corral.toml").write_text(SPEC.format(port=project.port))
    yield project
    project.corral("down", check=False)


def test_a_root_file_system_added_from_an_archive_builds_deploys_and_serves(
        project: CliProject) -> None:
    built = project.corral("build")
    assert "layer add rootfs.tar.gz → / (unpacked)" in built.stderr
    project.corral("up", "-d")
    project.corral("deploy", "web")
    response = httpx.get(f"http://127.0.0.1:{project.port}/", timeout=5)
    assert (response.status_code, response.text) == (200, "served from an ADDed root\n")
