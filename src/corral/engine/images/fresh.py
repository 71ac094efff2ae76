"""`corral build` with nothing changed: the digests of the last build, without building.

What a build gives depends on the invocation (the image named or all, --build-arg values,
--target, --insecure, --env), on the spec and every file of its folder, on the bases
(registry bases pinned in corral.lock, debian bases in the machine cache, layout bases'
tags), on the git commit and whether the work tree is dirty (provenance labels and
SOURCE_DATE_EPOCH), on the SOURCE_DATE_EPOCH variable and the machine cache folder, and on
corral itself. After a build, the invocation and all that cannot be stamped are hashed into
a key, and the rest is stamped (images/fresh.py, through engine/adapters.py) in a record
`.corral/cache/fresh/KEY.json` beside the digests. The next `corral build` with the same key,
whose stamps all hold and whose images are still tagged and whole, prints those digests:
nothing is planned, built or validated (the spec is the one validated then, by the same
corral). A missing or damaged record, or any difference: the build runs as it always does.

The check loads no pydantic, builder or store (test_build_noop.py holds it): it is what makes
a no-change `corral build` cost what a command's start-up costs (bench/dockerfile_stages.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.engine import adapters
from corral.engine.images.provenance import git_info
from corral.engine.workspace import state_dir_of
from corral.errors import CorralError
from corral.spec.load import locate_spec

if TYPE_CHECKING:
    from corral.engine.workspace import Workspace

RECORDS_KEPT = 8  # one per key (a commit, an invocation); the oldest beyond are deleted


@dataclass(frozen=True)
class BuildRequest:
    """One `corral build` invocation, as typed."""

    image: str | None  # None: every image of the spec
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    insecure: bool = False
    env: str | None = None  # --env as given (None: the spec's default environment)


def unchanged_build(spec_file: str | Path, request: BuildRequest) -> dict[str, str] | None:
    """The digests of the last build of `request` if nothing it depends on has changed
    since and its images are still here; None otherwise (then build)."""
    try:
        spec = locate_spec(spec_file)
        records = state_dir_of(spec) / "cache" / "fresh"
        record = json.loads((records / f"{_key(spec, request)}.json").read_text())
        digests = record["digests"]
        if not isinstance(digests, dict) or not adapters.build_inputs_hold(record["inputs"]):
            return None
        state = records.parent.parent
        if not all(adapters.image_intact(state, name, digest) for name, digest in
                   digests.items()):
            return None
        return {str(name): str(digest) for name, digest in digests.items()}
    except (OSError, ValueError, KeyError, TypeError, CorralError):
        return None  # no record, a damaged one, no spec: the build runs (and says why not)


def before_build(spec_file: str | Path) -> dict[str, Any] | None:
    """The spec's folder stamped before a build (before the spec is read), for
    `remember_build` after it."""
    try:
        return adapters.stamp_build_folder(locate_spec(spec_file).parent)
    except (OSError, CorralError):
        return None  # no spec: the build says so


def remember_build(ws: Workspace, request: BuildRequest, digests: dict[str, str],
                   before: dict[str, Any] | None) -> None:
    """Record what the build of `request` that gave `digests` depended on (`before`: from
    `before_build`). A build that read what cannot be stamped, whose inputs changed while
    it ran, or whose image store does not say, records nothing and removes the record it
    would replace. Writes only when the record changes: a build with no change writes
    nothing at all (issue 3)."""
    from corral.ports.images import RecordsBuildOrigins

    records = ws.image_dir / "cache" / "fresh"
    path = records / f"{_key(ws.loaded.path, request)}.json"
    images = ws.images
    origins = [images.build_origins(name) if isinstance(images, RecordsBuildOrigins) else None
               for name in digests]
    inputs = None if any(o is None for o in origins) else adapters.stamp_build_inputs(
        before, frozenset().union(*(o for o in origins if o is not None)))
    if inputs is None:
        path.unlink(missing_ok=True)
        return
    text = json.dumps({"digests": digests, "inputs": inputs}, sort_keys=True,
                      separators=(",", ":"))
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return
    records.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=records, prefix=".tmp-")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.rename(tmp, path)
    for old in sorted(records.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)[
            :-RECORDS_KEPT]:
        old.unlink(missing_ok=True)


def _key(spec: Path, request: BuildRequest) -> str:
    """What a build depends on that no stamp covers, hashed."""
    git = git_info(spec.parent)
    material = {"spec": str(spec), "request": asdict(request), "corral": _corral(),
                "git": [git.commit, git.dirty],
                "source_date_epoch": os.environ.get("SOURCE_DATE_EPOCH"),
                "cache": str(adapters.machine_cache_dir()), "python": sys.version}
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@cache
def _corral() -> str:
    """corral's own code: every module's path, size and mtime (an edited checkout or an
    upgrade gives another key)."""
    package = Path(__file__).resolve().parents[2]
    hasher = hashlib.sha256()
    for folder, folders, files in os.walk(package):
        folders[:] = sorted(f for f in folders if f != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                info = os.stat(os.path.join(folder, name))
                hasher.update(f"{folder}/{name}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return hasher.hexdigest()
