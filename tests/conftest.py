"""Shared fixtures. Integration fixtures build real things once per machine and cache them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from postgres import PostgresCluster, is_installed

CACHE = Path(os.environ.get("CORRAL_TEST_CACHE", Path.home() / ".cache" / "corral-tests"))


def _debootstrap_root(target: Path) -> Path:
    """A Debian bookworm minbase root with python3, made once per machine."""
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
