"""Provenance of a build: the git commit a spec's folder is at, the labels it gives an image,
and SOURCE_DATE_EPOCH from the commit time, so the same commit builds the same digest.

It asks git (once per folder per process) and sets one environment variable for the length
of a build; it builds nothing and reads no spec.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class GitInfo:
    commit: str | None
    commit_time: float | None
    dirty: bool


def git_info(folder: Path) -> GitInfo:
    """The commit the spec's folder is at, if it is in a git work tree (asked once per
    folder per process: a build asks for labels and for SOURCE_DATE_EPOCH)."""
    return _git_info(folder.resolve())


@lru_cache(maxsize=8)
def _git_info(folder: Path) -> GitInfo:
    done = _git(folder, "log", "-1", "--format=%H %ct")
    if not done:
        return GitInfo(None, None, False)
    commit, _, when = done.partition(" ")
    dirty = bool(_git(folder, "status", "--porcelain", "--untracked-files=no"))
    return GitInfo(commit, float(when) if when else None, dirty)


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_labels(folder: Path) -> dict[str, str]:
    """Provenance labels from git (the image store adds spec digest and builder version):
    the same commit in a clean tree gives the same labels, so digests stay reproducible."""
    git = git_info(folder)
    if git.commit is None:
        return {}
    return {"org.opencontainers.image.revision": git.commit,
            "dev.corral.git.dirty": "true" if git.dirty else "false"}


@contextmanager
def source_date_epoch(commit_time: float | None) -> Iterator[None]:
    """SOURCE_DATE_EPOCH for a build: the caller's if set, else the git commit time (the
    reproducible-builds convention), else unset (the builder then uses 0)."""
    if "SOURCE_DATE_EPOCH" in os.environ or commit_time is None:
        yield
        return
    os.environ["SOURCE_DATE_EPOCH"] = str(int(commit_time))
    try:
        yield
    finally:
        os.environ.pop("SOURCE_DATE_EPOCH", None)
