"""Shared fixtures. Integration fixtures build real things once per machine and cache them."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from postgres import PostgresCluster, is_installed

CACHE = Path(os.environ.get("CORRAL_TEST_CACHE", Path.home() / ".cache" / "corral-tests"))


def _debootstrap_root(target: Path) -> Path:
    """A Debian bookworm minbase root with python3, made once per machine. Test workers
    run in parallel (pytest-xdist): a lock beside the root makes the first one build it and
    the others wait for it instead of building into the same folder."""
    done = target / ".complete"
    if done.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _debootstrap_root_locked(target)


def _debootstrap_root_locked(target: Path) -> Path:
    done = target / ".complete"
    if done.exists():
        return target
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed (make test installs it)")
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(work),
         "http://deb.debian.org/debian"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    (work / ".complete").write_text("ok\n")
    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)
    return target


@pytest.fixture(scope="session")
def debian_rootfs() -> Path:
    """A read-only-by-convention Debian root with python3 (tests must not write into it)."""
    return _debootstrap_root(CACHE / "bookworm-python3")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A real PostgreSQL 15 cluster for the session, in a temporary folder, stopped by pid."""
    if not is_installed():
        pytest.skip("PostgreSQL is not installed (make setup installs it)")
    cluster = PostgresCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


# -- Docker engines (the container and Swarm drivers) ------------------------------------
@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(OCI layout, manifest digest) of a scratch image holding a static busybox and
    /www/index.html: small, so loading it into an engine costs little."""
    from corral.images.store import LocalImageStore
    from corral.spec.model import ImageSpec
    from docker_engines import BUSYBOX_HTTPD

    folder = tmp_path_factory.mktemp("busybox-image")
    rootfs = folder / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
    (rootfs / "www").mkdir()
    (rootfs / "www" / "index.html").write_text("busybox\n")
    store = LocalImageStore(folder / ".corral")
    spec = ImageSpec.model_validate({"base": "scratch", "copy": [{"src": "rootfs/", "dest": "/"}],
                                     "entrypoint": list(BUSYBOX_HTTPD)})
    return folder / ".corral" / "images", store.build("busybox", spec, folder)


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A private dockerd for the whole session (host network, no bridge), stopped by pid."""
    from docker_engines import local_dockerd

    engine = local_dockerd(Path(tempfile.mkdtemp(prefix="corral-dockerd-")))
    yield engine
    engine.stop()
    shutil.rmtree(engine.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """podman's Docker-compatible service on a private socket and storage, stopped by pid."""
    from docker_engines import start_podman

    engine = start_podman(Path(tempfile.mkdtemp(prefix="corral-podman-")))
    yield engine
    engine.stop()
    shutil.rmtree(engine.folder, ignore_errors=True)
def pytest_configure(config: pytest.Config) -> None:
    """The CLI wraps its output only where COLUMNS (or a terminal) gives a width, and tests
    read it as a pipe does. pytest-xdist's workers run with COLUMNS=80 and LINES=24 set:
    drop them, so a test sees the same output on a worker as in a single process (tests
    that want a width pass one)."""
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)


SLOW_FIRST = ("tests/e2e/", "tests/integration/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow folders (real controllers, routers, clusters) first, each module's tests in
    their order: pytest-xdist hands whole files to free workers in this order, so the many
    quick unit, core and contract tests fill the end of the run instead of one long e2e
    file starting last and running alone."""
    items.sort(key=lambda item: not item.nodeid.startswith(SLOW_FIRST))
