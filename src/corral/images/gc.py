"""Garbage collection of a local layout: keep what the given roots reach, delete the rest.

Roots are manifest digests (tags, retained releases: the caller decides). Reachable: each
root's manifest, config and layers, and its referrers (SBOM, signatures), recursively.
Everything else goes: blobs, index entries, unpacked roots, extracted layers, step-cache
entries of deleted layers, partial blobs of interrupted writes (older than an hour).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.errors import ImageError, NotFound
from corral.images.oci.layout import Layout, hex_of
from corral.images.oci.referrers import referrers_of
from corral.images.roots.compose import prune
from corral.images.roots.unpack import remove_tree

STALE_TMP = 3600.0  # a partial file this old belongs to no running build


@dataclass
class Collection:
    """What gc removes (or would remove, on a dry run)."""

    blobs: dict[str, int] = field(default_factory=dict)  # digest -> bytes
    images: list[str] = field(default_factory=list)  # image manifests dropped from the index
    unlisted: set[str] = field(default_factory=set)  # every index entry dropped (+ referrers)
    roots: list[Path] = field(default_factory=list)
    layer_dirs: list[Path] = field(default_factory=list)
    partial: dict[Path, int] = field(default_factory=dict)  # leftovers of crashed writes

    @property
    def freed(self) -> int:
        return sum(self.blobs.values()) + sum(self.partial.values())


def reachable(layout: Layout, roots: set[str]) -> tuple[set[str], set[str]]:
    """(every blob digest the roots reach, the diff_ids of their layers)."""
    keep: set[str] = set()
    diff_ids: set[str] = set()
    pending = list(roots)
    while pending:
        digest = pending.pop()
        if digest in keep:
            continue
        try:
            manifest = layout.read_json(digest)
        except (NotFound, ImageError):
            continue  # a root that is gone already keeps nothing
        keep.add(digest)
        keep.update(str(x["digest"]) for x in [manifest.get("config") or {},
                                                *(manifest.get("layers") or [])] if x)
        if not manifest.get("artifactType"):
            diff_ids.update(_diff_ids(layout, manifest))
        pending.extend(str(r["digest"]) for r in referrers_of(layout, digest))
    return keep, diff_ids


def _diff_ids(layout: Layout, manifest: dict[str, Any]) -> list[str]:
    try:
        config = layout.read_json(manifest["config"]["digest"])
    except (NotFound, ImageError, KeyError):
        return []
    return [str(d) for d in config.get("rootfs", {}).get("diff_ids", [])]


def collect(layout: Layout, roots: set[str], cache: Path, *, dry_run: bool) -> Collection:
    """Delete (unless `dry_run`) what `roots` do not reach in `layout` and in `cache`
    (the project's .corral/cache: roots/, layers/, steps/)."""
    gone = Collection()
    with layout.locked():
        keep, diff_ids = reachable(layout, roots)
        now = time.time()
        for path in sorted(layout.blobs.iterdir()) if layout.blobs.is_dir() else []:
            if path.name.startswith((".tmp-", ".layer-")):
                if now - path.stat().st_mtime > STALE_TMP:
                    gone.partial[path] = _size(path)
                continue
            digest = f"sha256:{path.name}"
            if digest not in keep:
                gone.blobs[digest] = path.stat().st_size
        listed = {str(d["digest"]): bool(d.get("artifactType")) for d in layout.descriptors()}
        gone.images = sorted(d for d, artifact in listed.items() if d not in keep and not artifact)
        gone.unlisted = {d for d in listed if d not in keep}
        gone.roots = [p for p in _children(cache / "roots")
                      if not p.name.startswith(".") and f"sha256:{p.name}" not in keep]
        gone.layer_dirs = [p for p in _children(cache / "layers")
                           if not p.name.startswith(".") and f"sha256:{p.name}" not in diff_ids]
        if not dry_run:
            _delete(layout, gone, cache, diff_ids)
    return gone


def _delete(layout: Layout, gone: Collection, cache: Path, diff_ids: set[str]) -> None:
    # Index first: a crash midway leaves unlisted blobs (collected next time), never a tag
    # pointing at a missing blob.
    if gone.unlisted:
        layout.drop_descriptors_unlocked(gone.unlisted)
    for root in gone.roots:
        remove_tree(root)
    prune(cache / "layers", diff_ids)
    for digest in gone.blobs:
        layout.blob_path(digest).unlink(missing_ok=True)
    for path in gone.partial:
        path.unlink(missing_ok=True)
    _prune_steps(cache / "steps", layout)


def _prune_steps(steps: Path, layout: Layout) -> None:
    """Step-cache entries whose layer blob is gone would only miss; drop them."""
    for entry in _children(steps):
        if entry.suffix != ".json" or entry.name == "stat-index.json":
            continue
        try:
            digest = json.loads(entry.read_text())["digest"]
            hex_of(digest)
        except (ValueError, KeyError, TypeError, ImageError, OSError):
            continue
        if not layout.has_blob(digest):
            entry.unlink(missing_ok=True)


def _children(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except FileNotFoundError:
        return 0
