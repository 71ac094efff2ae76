"""The pipeline's git side: the branch's head, a mirror of the source, and a clean work
tree per commit. Runs the git program; decides nothing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from corral.errors import CorralError


class SourceError(CorralError):
    """git could not read the source or check a commit out."""


def _git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        raise SourceError(f"git {' '.join(args[:2])} failed: {done.stderr.strip()}",
                          hint="check [pipeline] source and branch, and that git can reach it")
    return done.stdout.strip()


class Source:
    """The repository `url` (a URL or a path), its `branch`, and a bare mirror kept under
    `folder` from which each commit is checked out into a work tree of its own."""

    def __init__(self, url: str, branch: str, folder: Path) -> None:
        self.url, self.branch, self.folder = url, branch, folder
        self.mirror = folder / "mirror.git"

    def head(self) -> str:
        """The branch's head commit on the source, without fetching (git ls-remote)."""
        out = _git("ls-remote", self.url, f"refs/heads/{self.branch}")
        if not out:
            raise SourceError(f"branch {self.branch!r} is not in {self.url}",
                              hint="push it, or set [pipeline] branch")
        return out.split()[0]

    def fetch(self) -> None:
        if not (self.mirror / "HEAD").exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            _git("init", "--bare", "-q", str(self.mirror))
        _git("fetch", "-q", "--force", self.url,
             f"+refs/heads/{self.branch}:refs/heads/{self.branch}", cwd=self.mirror)

    def resolve(self, commit: str | None) -> str:
        """The full id of `commit` (None: the branch's head), fetched into the mirror."""
        self.fetch()
        return _git("rev-parse", "--verify", f"{commit or self.branch}^{{commit}}",
                    cwd=self.mirror)

    def checkout(self, commit: str, tree: Path) -> Path:
        """A clean work tree of `commit` at `tree` (replaced if it exists)."""
        shutil.rmtree(tree, ignore_errors=True)
        tree.parent.mkdir(parents=True, exist_ok=True)
        _git("clone", "-q", "--shared", "--no-checkout", str(self.mirror), str(tree))
        _git("checkout", "-q", "--detach", commit, cwd=tree)
        return tree

    def is_ancestor(self, older: str, newer: str) -> bool:
        """True if `older` is an ancestor of `newer` (both in the mirror)."""
        done = subprocess.run(["git", "merge-base", "--is-ancestor", older, newer],
                              cwd=self.mirror, capture_output=True, timeout=60, check=False)
        return done.returncode == 0

    def commit_time(self, commit: str) -> float:
        return float(_git("show", "-s", "--format=%ct", commit, cwd=self.mirror))
