"""RUN --mount=type=bind as BuildKit runs it (the shape `docker init` writes:
`--mount=type=bind,source=requirements.txt,target=requirements.txt`): context files
(.dockerignore applied), a stage's files (`from=`), read-only by default, writable with `rw`
(writes thrown away), keyed by their content, and no mount point left in the layer; and
type=tmpfs. Also: RUN has the network unless `--network=none` (Docker's default), and
MAINTAINER is the config's author. Built for real: a Debian base from the machine cache,
bubblewrap."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from corral.images import LocalImageStore
from corral.spec.model import ImageSpec

pytestmark = pytest.mark.integration

MACHINE_CACHE = Path(os.environ.get("CORRAL_TEST_CACHE",
                                    Path.home() / ".cache" / "corral-tests")) / "corral-cache"

DOCKERFILE = """# syntax=docker/dockerfile:1
FROM debian:bookworm AS deps
RUN mkdir -p /out && echo from-a-stage > /out/dep.txt

FROM debian:bookworm
MAINTAINER Jane Doe <jane@example.com>
WORKDIR /app
RUN --mount=type=bind,source=requirements.txt,target=requirements.txt \\
    cat requirements.txt > /srv/installed
RUN --mount=type=bind,source=conf,target=/mnt/conf ls /mnt/conf > /srv/listing
RUN --mount=type=bind,from=deps,source=/out,target=/deps cat /deps/dep.txt > /srv/dep
RUN --mount=type=bind,source=requirements.txt,target=/opt/rw/r.txt,rw \\
    echo changed > /opt/rw/r.txt && cat /opt/rw/r.txt > /srv/rw
RUN --mount=type=bind,source=requirements.txt,target=/opt/ro/r.txt \\
    (echo x > /opt/ro/r.txt) 2>/dev/null && echo writable > /srv/ro || echo read-only > /srv/ro
RUN --mount=type=tmpfs,target=/scratch,size=1m \\
    echo in-memory > /scratch/x && cat /scratch/x > /srv/tmpfs
RUN tail -n +3 /proc/net/dev | wc -l > /srv/interfaces
RUN --network=none tail -n +3 /proc/net/dev | wc -l > /srv/interfaces-none
"""


def _project(folder: Path) -> Path:
    (folder / "conf").mkdir(parents=True)
    (folder / "conf" / "app.ini").write_text("[app]\n")
    (folder / "conf" / "secret.txt").write_text("left out by .dockerignore\n")
    (folder / ".dockerignore").write_text("conf/secret.txt\n")
    (folder / "requirements.txt").write_text("flask==3.0\n")
    (folder / "Dockerfile").write_text(DOCKERFILE)
    return folder


def _build(folder: Path, said: list[str] | None = None) -> tuple[LocalImageStore, str]:
    if os.geteuid() != 0 or shutil.which("bwrap") is None:
        pytest.skip("run steps need bubblewrap (and root for the overlay)")
    if not (MACHINE_CACHE / "bases").is_dir() and shutil.which("debootstrap") is None:
        pytest.skip("no cached Debian base and no debootstrap to make one")
    store = LocalImageStore(folder / ".corral", cache_dir=MACHINE_CACHE)
    return store, store.build("app", ImageSpec(dockerfile="Dockerfile"), folder,
                              progress=None if said is None else said.append)


def _files(store: LocalImageStore, digest: str) -> dict[str, str]:
    """Every entry above the base, by name, with the content of files."""
    found: dict[str, str] = {}
    for layer in store.layout.read_json(digest)["layers"][1:]:
        with tarfile.open(store.layout.blob_path(layer["digest"])) as tar:
            for member in tar:
                data = tar.extractfile(member) if member.isfile() else None
                found[member.name] = data.read().decode() if data else ""
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LocalImageStore, str]:
    folder = _project(tmp_path_factory.mktemp("mounts"))
    store, digest = _build(folder)
    return folder, store, digest


def test_bind_mounts_give_context_and_stage_files_and_leave_no_mount_point(
        built: tuple[Path, LocalImageStore, str]) -> None:
    _, store, digest = built
    files = _files(store, digest)
    assert files["srv/installed"] == "flask==3.0\n"
    assert files["srv/listing"] == "app.ini\n", ".dockerignore applies to bind mounts"
    assert files["srv/dep"] == "from-a-stage\n"
    assert "app" in files  # WORKDIR made, as Docker does
    assert files["srv/tmpfs"] == "in-memory\n"
    for stub in ("app/requirements.txt", "mnt", "mnt/conf", "deps", "opt/rw", "opt/ro",
                 "scratch", "scratch/x"):
        assert stub not in files, f"the mount point {stub} reached a layer"


def test_a_bind_mount_is_read_only_unless_rw_and_rw_writes_are_thrown_away(
        built: tuple[Path, LocalImageStore, str]) -> None:
    folder, store, digest = built
    files = _files(store, digest)
    assert files["srv/ro"] == "read-only\n"
    assert files["srv/rw"] == "changed\n"
    assert (folder / "requirements.txt").read_text() == "flask==3.0\n"


def test_run_has_the_network_unless_none_and_maintainer_is_the_author(
        built: tuple[Path, LocalImageStore, str]) -> None:
    _, store, digest = built
    files = _files(store, digest)
    assert int(files["srv/interfaces-none"]) == 1  # lo alone
    assert int(files["srv/interfaces"]) > 1, "Docker's default: the host's network"
    manifest = store.layout.read_json(digest)
    config = json.loads(store.layout.blob_path(manifest["config"]["digest"]).read_text())
    assert config["author"] == "Jane Doe <jane@example.com>"


def test_a_bound_file_is_part_of_its_steps_key(built: tuple[Path, LocalImageStore, str]) -> None:
    folder, store, digest = built
    again: list[str] = []
    assert _build(folder, again)[1] == digest
    assert not [line for line in again if "running in bubblewrap" in line]
    (folder / "conf" / "secret.txt").write_text("still left out\n")  # ignored: no rebuild
    ignored: list[str] = []
    assert _build(folder, ignored)[1] == digest
    assert not [line for line in ignored if "running in bubblewrap" in line]
    (folder / "requirements.txt").write_text("flask==3.1\n")
    changed: list[str] = []
    _, other = _build(folder, changed)
    ran = [line for line in changed if "running in bubblewrap" in line]
    assert ran and "cat requirements.txt" in ran[0]
    assert _files(store, other)["srv/installed"] == "flask==3.1\n"
