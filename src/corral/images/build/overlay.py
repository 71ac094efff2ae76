"""Run steps over an overlay mount: the image root read-only below, the step's writes above.

When corral runs as root (the kernel lets it mount overlayfs), a run step's root is an
overlay of a read-only root composed of hardlinks into the project's per-layer cache
(roots/compose.py: each layer extracted once, and reused by instances later; a one-layer
base is its extracted folder itself) and an empty upper folder. Nothing is unpacked per
build, and a step's changes are read from the upper folder alone instead of walking the
whole root twice. Anything else (no root, no overlayfs) falls back to run.Sandbox, a full
writable copy. Layers are the same either way: the diff is expressed as the same entries
and whiteouts.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import shutil
import stat
import subprocess
from pathlib import Path

from corral.images.build.layer import Entry, Kind
from corral.images.build.run import MOUNTPOINTS, PathStat, Sandbox
from corral.images.build.run_user import RunAs
from corral.images.roots.compose import LayerRef, compose_root, layer_dir
from corral.images.roots.unpack import WHITEOUT, remove_tree

_OPAQUE_XATTR = "trusted.overlay.opaque"


def make_sandbox(layers: list[LayerRef], scratch: Path, layer_cache: Path,
                 lower: Path | None = None) -> Sandbox:
    """An overlay sandbox when this process may mount one, else a copied root. `lower` is
    where the read-only root is composed (kept by the caller, to share it); by default it
    lives and goes with the sandbox."""
    if os.geteuid() == 0 and shutil.which("mount") and shutil.which("umount"):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            return OverlaySandbox(layers, scratch, layer_cache, lower)
    return Sandbox([blob for blob, _ in layers], scratch)


class OverlaySandbox(Sandbox):
    """A writable root for consecutive run steps of one stage: an overlay mount whose upper
    folder holds everything the steps (and cached layers applied between them) wrote."""

    def __init__(self, layers: list[LayerRef], scratch: Path, layer_cache: Path,
                 lower: Path | None = None) -> None:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            Sandbox.__init__(self, [], scratch)  # raises the "install bubblewrap" error
        self.bwrap = str(bwrap)
        scratch.mkdir(parents=True, exist_ok=True)
        self.work = scratch / f"overlay-{os.getpid()}-{secrets.token_hex(4)}"
        self.lower = lower_root(layers, layer_cache, lower or self.work / "lower")
        self.upper, self.root = self.work / "upper", self.work / "merged"
        for folder in (self.upper, self.work / "scratch", self.root):
            folder.mkdir(parents=True)
        options = f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work / 'scratch'}"
        try:
            _mount_overlay(options, self.root)
        except BaseException:
            remove_tree(self.work)
            raise

    def __exit__(self, *_: object) -> None:
        done = subprocess.run(["umount", str(self.root)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(self.root)], capture_output=True, check=False)
        remove_tree(self.work)

    @property
    def written(self) -> Path:
        """The upper folder: only what the steps wrote, not the whole root."""
        return self.upper

    def changes(self, before: dict[str, PathStat], after: dict[str, PathStat],
                user: RunAs | None) -> list[Entry]:
        # Overlays are mounted as root only, so what the step wrote has its own owners.
        return upper_changes(before, after, self.upper, self.lower)


def _mount_overlay(options: str, target: Path) -> None:
    """Mount the overlay `volatile` where the kernel knows it (Linux 5.10+): the upper
    folder is scratch, removed after the build, so no sync of it is ever needed, and
    without the option the unmount syncs the whole file system below it (every page the
    base's extraction left dirty: ~0.1 s per stage measured, more on a busy disk)."""
    argv = ["mount", "-t", "overlay", "overlay", "-o", f"{options},volatile", str(target)]
    if subprocess.run(argv, capture_output=True, check=False).returncode != 0:
        argv[5] = options
        subprocess.run(argv, check=True, capture_output=True)


def lower_root(layers: list[LayerRef], layer_cache: Path, target: Path) -> Path:
    """The read-only root below the overlay. A single layer's extracted folder in the layer
    cache is that root already, and overlayfs never writes to a lower folder, so it is used
    in place: a one-layer base costs no link pass over its files and nothing to remove after
    the build (gc cannot prune it meanwhile: it waits for builds, Layout.locked). Several
    layers are composed into `target`, whiteouts applied between them."""
    if len(layers) == 1:
        blob, diff_id = layers[0]
        return layer_dir(layer_cache, blob, diff_id) / "root"
    return compose_root(layers, layer_cache, target)


def upper_changes(before: dict[str, PathStat], after: dict[str, PathStat], upper: Path,
                  lower: Path) -> list[Entry]:
    """Layer entries for what one step changed in the overlay's upper folder: new or changed
    paths, a whiteout for each overlay whiteout (a 0/0 device) or deleted upper-only path,
    and an opaque marker for a folder the step replaced."""
    entries: list[Entry] = []
    for rel, now in after.items():
        old = before.get(rel)
        if old == now or (old is None and rel in MOUNTPOINTS):
            continue
        path = upper / rel
        info = path.lstat()
        kind = now.kind
        if kind == "other":
            entries.append(_whiteout(rel))
        elif kind == "dir":
            entries += _folder_entries(rel, path, info, old, lower)
        else:
            file_kind: Kind = "file" if kind == "file" else "symlink"
            entries.append(Entry(rel, file_kind, info.st_mode & 0o7777, info.st_uid,
                                 info.st_gid, source=path if file_kind == "file" else None,
                                 size=info.st_size if file_kind == "file" else 0,
                                 linkname=os.readlink(path) if file_kind == "symlink" else ""))
    for rel in before:
        parent = posixpath.dirname(rel)
        if rel not in after and (not parent or parent in after):
            entries.append(_whiteout(rel))
    return entries


def _whiteout(rel: str) -> Entry:
    parent, name = posixpath.split(rel)
    return Entry(posixpath.join(parent, WHITEOUT + name), "file", 0o644)


def _folder_entries(rel: str, path: Path, info: os.stat_result, old: PathStat | None,
                    lower: Path) -> list[Entry]:
    """A folder in the upper layer: copied up only because something inside changed (no
    entry: its contents have entries of their own), changed itself, or made opaque
    (replaced wholesale: its old contents are hidden)."""
    meta = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    if old is not None:  # already in the upper folder: an entry only if its metadata moved
        changed = meta != (old.mode, old.uid, old.gid)
        return [Entry(rel, "dir", *meta)] if changed else []
    below = lower / rel
    same = below.is_dir() and not below.is_symlink() and \
        (stat.S_IMODE(below.lstat().st_mode), below.lstat().st_uid, below.lstat().st_gid) == meta
    found = [] if same else [Entry(rel, "dir", *meta)]
    if _is_opaque(path) and below.is_dir() and not below.is_symlink():
        # Written as a whiteout per hidden path, as a copied root's diff writes it, so the
        # layer (and the digest) is the same whichever sandbox ran the step.
        found += [_whiteout(hidden) for hidden in _hidden_below(rel, path, below)]
    return found


def _hidden_below(rel: str, upper: Path, lower: Path) -> list[str]:
    """Paths under an opaque folder that the lower root has and the upper one does not
    (the topmost of each), at any depth: an opaque folder hides all of its old content."""
    hidden = []
    with os.scandir(lower) as scan:
        children = sorted(scan, key=lambda e: e.name)
    for child in children:
        name = posixpath.join(rel, child.name)
        above = upper / child.name
        if not os.path.lexists(above):
            hidden.append(name)
        elif above.is_dir() and not above.is_symlink() and child.is_dir(follow_symlinks=False):
            hidden += _hidden_below(name, above, Path(child.path))
    return hidden


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False
