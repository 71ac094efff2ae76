"""Shared fixtures. Integration fixtures build real things once per machine and cache them."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
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


def pytest_configure(config: pytest.Config) -> None:
    """The CLI wraps its output only where COLUMNS (or a terminal) gives a width, and tests
    read it as a pipe does. pytest-xdist's workers run with COLUMNS=80 and LINES=24 set:
    drop them, so a test sees the same output on a worker as in a single process (tests
    that want a width pass one)."""
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
