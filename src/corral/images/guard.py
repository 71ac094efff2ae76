"""Guarding unpacked image roots: their file lists, verifiers and quarantine.

A drifted root is never repaired: it is renamed into `cache/quarantine/` (running
instances keep their mount, as evidence) and the layer cache entries holding a drifted
path are dropped, since a root's files are hardlinks into that cache and a file changed
in one is changed in both. The next unpack then builds a clean root from the blobs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from corral.images.layout import Layout, hex_of
from corral.images.unpack import remove_tree
from corral.images.verify import (
    Change,
    FileList,
    RootVerifier,
    file_list_from_layers,
    load_file_list,
    save_file_list,
)


class RootGuard:
    """File lists and verifiers for the roots of one project's image store."""

    def __init__(self, layout: Layout, roots: Path, layer_cache: Path, state: Path) -> None:
        self.layout = layout
        self.roots = roots
        self.layer_cache = layer_cache
        self.lists = state / "filelists"
        self.quarantine_dir = state / "quarantine"

    @classmethod
    def for_store(cls, store: Any) -> RootGuard:
        """The guard of a LocalImageStore (its layout, roots and layer cache)."""
        cache = Path(store.roots).parent
        return cls(store.layout, Path(store.roots),
                   Path(getattr(store, "layer_cache", cache / "layers")), cache)

    def root_of(self, digest: str) -> Path | None:
        """The unpacked root of `digest`, if it is unpacked now."""
        path = self.roots / hex_of(digest)
        return path if path.is_dir() else None

    def file_list(self, digest: str) -> FileList:
        """The image's file list, computed from its layer blobs once, then read back."""
        path = self.lists / f"{hex_of(digest)}.json"
        if path.is_file():
            return load_file_list(path)
        entries = file_list_from_layers(self.layout.blob_path(b) for b in self._layers(digest))
        save_file_list(path, entries)
        return entries

    def verifier(self, digest: str) -> RootVerifier | None:
        root = self.root_of(digest)
        return RootVerifier(root, self.file_list(digest)) if root is not None else None

    def quarantine(self, digest: str, changes: list[Change]) -> Path | None:
        """Move the root away and drop the layer cache entries sharing a drifted file.

        Returns where the root went (None if it was not unpacked)."""
        root = self.root_of(digest)
        if root is None:
            return None
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / f"{hex_of(digest)}-{time.time_ns()}"
        os.rename(root, target)
        self.drop_layers(digest, [path for path, _ in changes])
        return target

    def drop_layers(self, digest: str, paths: list[str]) -> list[Path]:
        """Remove the extracted layers of `digest` that hold any of `paths`."""
        dropped = []
        for diff_id in self._diff_ids(digest):
            folder = self.layer_cache / hex_of(diff_id)
            holds = any(os.path.lexists(folder / "root" / p.lstrip("/")) for p in paths)
            if folder.is_dir() and (holds or not paths):
                remove_tree(folder)
                dropped.append(folder)
        return dropped

    def _layers(self, digest: str) -> list[str]:
        manifest = self.layout.read_json(digest)
        return [str(layer["digest"]) for layer in manifest.get("layers", [])]

    def _diff_ids(self, digest: str) -> list[str]:
        manifest = self.layout.read_json(digest)
        config = self.layout.read_json(manifest["config"]["digest"])
        return [str(d) for d in config.get("rootfs", {}).get("diff_ids", [])]
