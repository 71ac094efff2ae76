"""`corral build --check-reproducible`: rebuild an image from nothing in a copy of the spec's
folder and compare digests.

It uses a throwaway state folder and leaves the project's layout, cache and tags untouched.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from corral.engine.images.provenance import git_info, git_labels, source_date_epoch
from corral.engine.images.trust import trusted
from corral.engine.workspace import Workspace


@dataclass
class _ScratchWorkspace(Workspace):
    """A workspace whose state lives in a folder of its own (for a rebuild from nothing)."""

    scratch_state: Path = Path()

    @property
    def state_dir(self) -> Path:
        return self.scratch_state

    @property
    def image_dir(self) -> Path:
        return self.scratch_state


def check_reproducible(ws: Workspace, name: str, digest: str,
                       say: Callable[[str], None] | None = None) -> str | None:
    """Rebuild image `name` from nothing in a copy of the spec's folder (empty layout and
    step cache; the machine-wide base cache stays) and compare it with `digest`. Returns
    None when the digests are equal, else the first difference."""
    say = say or (lambda _: None)
    with tempfile.TemporaryDirectory(prefix="corral-repro-") as tmp:
        copy = Path(tmp) / "context"
        shutil.copytree(ws.folder, copy, symlinks=True,
                        ignore=shutil.ignore_patterns(".corral", ".git"))
        other = _ScratchWorkspace(Workspace.open(copy / ws.loaded.path.name).loaded,
                                  scratch_state=Path(tmp) / "state")
        say(f"rebuilding {name} from nothing in {copy}")
        # The copy is outside git: give it the original's commit time and labels.
        with source_date_epoch(git_info(ws.folder).commit_time):
            again = other.images.build(name, other.loaded.spec.images[name], copy,
                                       labels=git_labels(ws.folder), progress=say)
        return trusted(ws.images).difference(digest, other.images, again)
