"""Guarding unpacked image roots: their file lists, verifiers, quarantine and fresh roots.

A drifted root is never repaired: it is renamed into `cache/quarantine/` (running
instances keep their mount, as evidence). A root's files are hardlinks into the layer
cache, so a file changed in one is changed in both: the cache (not the root) is repaired,
each drifted path given back from its layer blob as a new inode (repair.py), and a fresh
root is composed from it and checked at the drifted paths. Where that cannot be done, the
layers holding a drifted path are dropped and extracted whole again (ADR 0010).
"""

from __future__ import annotations

import logging
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.errors import ImageError
from corral.images.oci.layout import Layout, hex_of
from corral.images.roots.compose import compose_root
from corral.images.roots.repair import NeedsExtraction, repair_layer
from corral.images.roots.unpack import remove_tree
from corral.images.roots.verify import (
    Change,
    Entry,
    FileList,
    RootVerifier,
    file_list_from_layers,
    load_file_list,
    save_file_list,
)

log = logging.getLogger(__name__)


@dataclass
class Replacement:
    """What answering one drifted root did."""

    quarantined: Path | None = None  # where the drifted root went
    repaired: dict[str, list[str]] = field(default_factory=dict)  # layer hex -> paths
    extracted: list[str] = field(default_factory=list)  # layer hex dropped, made again whole
    fresh: Path | None = None  # the new root, checked clean at the drifted paths


class RootGuard:
    """File lists and verifiers for the roots of one project's image store."""

    def __init__(self, layout: Layout, roots: Path, layer_cache: Path, state: Path,
                 unpack: Callable[[str], Path] | None = None) -> None:
        self.layout = layout
        self.roots = roots
        self.layer_cache = layer_cache
        self.lists = state / "filelists"
        self.quarantine_dir = state / "quarantine"
        self.standby_dir = state / "standby"
        self.unpack = unpack
        self._lists: dict[str, FileList] = {}  # digest -> its file list, read once

    @classmethod
    def for_store(cls, store: Any) -> RootGuard:
        """The guard of a LocalImageStore (its layout, roots, layer cache and unpack)."""
        cache = Path(store.roots).parent
        return cls(store.layout, Path(store.roots),
                   Path(getattr(store, "layer_cache", cache / "layers")), cache,
                   getattr(store, "unpack", None))

    def root_of(self, digest: str) -> Path | None:
        """The unpacked root of `digest`, if it is unpacked now."""
        path = self.roots / hex_of(digest)
        return path if path.is_dir() else None

    def file_list(self, digest: str) -> FileList:
        """The image's file list, computed from its layer blobs once, then read back."""
        if digest in self._lists:
            return self._lists[digest]
        path = self.lists / f"{hex_of(digest)}.json"
        if path.is_file():
            entries = load_file_list(path)
        else:
            entries = file_list_from_layers(self.layout.blob_path(b)
                                            for b in self._layers(digest))
            save_file_list(path, entries)
        self._lists[digest] = entries
        while len(self._lists) > 16:  # the images in use, give or take: bounded memory
            del self._lists[next(iter(self._lists))]
        return entries

    def verifier(self, digest: str) -> RootVerifier | None:
        root = self.root_of(digest)
        return RootVerifier(root, self.file_list(digest)) if root is not None else None

    def replace_root(self, digest: str, changes: list[Change]) -> Replacement:
        """Quarantine the drifted root, repair the layer cache at the drifted paths, and
        compose a fresh root (when the store can), checked clean at those paths; if it is
        not, it goes to quarantine too and the layers are extracted whole again."""
        done = self.quarantine(digest, changes)
        if self.unpack is None or done.quarantined is None:
            return done
        paths = [p.lstrip("/") for p, _ in changes]
        fresh = self._promote_standby(digest, paths) or self.unpack(digest)
        left = RootVerifier(fresh, self.file_list(digest)).verify(paths)
        if left:
            log.warning("image %s: a root composed from the repaired layer cache still "
                        "differs (%s); extracting its layers whole", digest[:19], left[:3])
            self._move_to_quarantine(fresh, digest)
            done.extracted += [p.name for p in self.drop_layers(digest, paths)]
            fresh = self.unpack(digest)
        done.fresh = fresh
        return done

    def quarantine(self, digest: str, changes: list[Change]) -> Replacement:
        """Move the root away and repair the layer cache entries at its drifted paths."""
        root = self.root_of(digest)
        if root is None:
            return Replacement()
        done = Replacement(quarantined=self._move_to_quarantine(root, digest))
        paths = [p.lstrip("/") for p, _ in changes]
        for blob, diff_id in self._layer_files(digest):
            folder = self.layer_cache / hex_of(diff_id)
            if not (folder / "meta.json").is_file():
                continue
            try:
                fixed = repair_layer(blob, folder, paths)
            except (NeedsExtraction, OSError, tarfile.TarError, ImageError) as exc:
                log.warning("layer %s cannot be repaired member by member (%s): it is "
                            "extracted whole again", folder.name[:12], exc)
                remove_tree(folder)
                done.extracted.append(folder.name)
                continue
            if fixed:
                done.repaired[folder.name] = fixed
        return done

    def standby_of(self, digest: str) -> Path:
        """Where the spare root of `digest` is kept (see make_standby)."""
        return self.standby_dir / hex_of(digest)

    def make_standby(self, digest: str) -> Path:
        """A spare root of `digest`, composed afresh now (one made earlier may have been
        changed while nobody watched it), so that a drifted root is replaced by a rename
        and a few links instead of a compose. The caller watches its folders; its files
        are the served root's inodes, watched there."""
        self.discard_standby(digest)
        return compose_root(self._layer_files(digest), self.layer_cache,
                            self.standby_of(digest))

    def discard_standby(self, digest: str) -> None:
        remove_tree(self.standby_of(digest))

    def _promote_standby(self, digest: str, paths: list[str]) -> Path | None:
        """The standby, its drifted paths linked afresh from the repaired cache, renamed to
        be the root of `digest`; None when there is none or a path cannot be linked."""
        standby = self.standby_of(digest)
        if not standby.is_dir():
            return None
        expected = self.file_list(digest)
        layers = [self.layer_cache / hex_of(d) / "root" for d in reversed(self._diff_ids(digest))]
        try:
            for path in sorted(set(paths) - {""}):
                _relink(standby, path, expected.get(path), layers)
            target = self.roots / hex_of(digest)
            os.rename(standby, target)
        except OSError as exc:
            log.warning("image %s: the standby root could not take the repaired files (%s); "
                        "composing a root instead", digest[:19], exc)
            self.discard_standby(digest)
            return None
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

    def _move_to_quarantine(self, root: Path, digest: str) -> Path:
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / f"{hex_of(digest)}-{time.time_ns()}"
        os.rename(root, target)
        return target

    def _layer_files(self, digest: str) -> list[tuple[Path, str]]:
        return [(self.layout.blob_path(blob), diff_id) for blob, diff_id
                in zip(self._layers(digest), self._diff_ids(digest), strict=False)]

    def _layers(self, digest: str) -> list[str]:
        manifest = self.layout.read_json(digest)
        return [str(layer["digest"]) for layer in manifest.get("layers", [])]

    def _diff_ids(self, digest: str) -> list[str]:
        manifest = self.layout.read_json(digest)
        config = self.layout.read_json(manifest["config"]["digest"])
        return [str(d) for d in config.get("rootfs", {}).get("diff_ids", [])]


def _relink(root: Path, path: str, want: Entry | None, layers: list[Path]) -> None:
    """Make `path` of the unserved tree `root` what a fresh compose would give: absent, a
    folder of the listed mode, or a link to the topmost layer's (repaired) cache entry."""
    there = root / path
    if os.path.lexists(there) and not (want and want.kind == "dir" and there.is_dir()
                                       and not there.is_symlink()):
        remove_tree(there) if there.is_dir() and not there.is_symlink() else there.unlink()
    if want is None:
        return
    if want.kind == "dir":
        there.mkdir(exist_ok=True)
        os.chmod(there, want.mode)
        return
    source = next((layer / path for layer in layers if os.path.lexists(layer / path)), None)
    if source is None:
        raise FileNotFoundError(f"no layer of the cache holds /{path}")
    os.link(source, there, follow_symlinks=False)
