"""The release history `corral releases` shows: each release with what became of it and
whether its image was built from uncommitted changes.

Reads the store and the images' provenance labels; changes nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any

from corral.core.release import release_outcome
from corral.engine.workspace import Workspace
from corral.errors import CorralError, NotFound

# Written by engine/images/build.py git_labels (images/build/provenance.py names them).
_DIRTY_LABEL = "dev.corral.git.dirty"


def release_rows(ws: Workspace, service: str) -> list[dict[str, Any]]:
    """Every release of `service`, oldest first, with `outcome`, `bad_reason` and `dirty`
    (true: built from a tree with uncommitted changes; None: unknown, e.g. not in git, or
    the image was garbage-collected)."""
    store = ws.store
    releases = store.list_releases(service)
    if not releases:
        raise NotFound(f"service {service!r} has no releases",
                       hint=f"deploy it: corral deploy {service}")
    live = store.live_release(service)
    bad = store.bad_releases(service)
    deployments = store.list_deployments(service)
    dirty = {d: _is_dirty(ws, d) for d in {r.image_digest for r in releases}}
    return [{"release": r.label, "version": r.version, "image": r.image_digest,
             "config": r.config_digest, "created_at": r.created_at,
             "git_commit": r.git_commit, "live": r.version == live,
             "outcome": release_outcome(r.version, live, bad, deployments),
             "bad_reason": bad.get(r.version), "dirty": dirty[r.image_digest]}
            for r in sorted(releases, key=lambda r: r.version)]


def _is_dirty(ws: Workspace, digest: str) -> bool | None:
    with contextlib.suppress(CorralError):
        value = ws.images.config(digest).labels.get(_DIRTY_LABEL)
        return None if value is None else value == "true"
    return None
