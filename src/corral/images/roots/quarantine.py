"""Garbage collection of quarantined image roots (`cache/quarantine/`, see guard.py).

A drifted root is kept there as evidence while the instances that still have it mounted
run; gc deletes an entry only when no process on the machine has it mounted (read from
/proc/*/mountinfo, one read per mount namespace). It never touches `cache/roots/`, where
the roots of live releases are; a spare root (`cache/standby/`) goes with its image's root.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from corral.images.roots.unpack import remove_tree

_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Sweep:
    """Quarantined entries gc deletes (bytes it frees) and those it keeps (mounted)."""

    deleted: dict[Path, int]
    mounted: tuple[Path, ...]

    @property
    def freed(self) -> int:
        return sum(self.deleted.values())


def sweep_quarantine(cache: Path, *, dry_run: bool,
                     mounted: set[str] | None = None) -> Sweep:
    """Delete (unless `dry_run`) every entry of `cache`/quarantine no process has mounted.

    `mounted` (mount sources, as /proc/PID/mountinfo gives them) defaults to this machine's;
    when it cannot be known, nothing is deleted."""
    folder = cache / "quarantine"
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith(".")) \
        if folder.is_dir() else []
    if mounted is None:
        mounted = mount_sources()
    if mounted is None:
        return Sweep({}, tuple(entries))
    busy = tuple(p for p in entries if in_use(p.name, mounted))
    deleted = {p: freed_by(p) for p in entries if p not in busy}
    if not dry_run:
        for path in deleted:
            remove_tree(path)
        for spare in stale_standbys(cache):
            remove_tree(spare)
    return Sweep(deleted, busy)


def stale_standbys(cache: Path) -> list[Path]:
    """Spare roots (`cache/standby/<hex>`, see guard.py) of images with no root any more:
    links only, left behind by a controller that stopped while the image was in use."""
    folder = cache / "standby"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not (cache / "roots" / p.name).is_dir())


def in_use(name: str, mounted: set[str]) -> bool:
    """Whether a mount source lies in (or is) the quarantine entry `name`.

    mountinfo gives sources relative to their file system, so the match is on the
    `quarantine/NAME` path components, not on the absolute path.

    >>> in_use("ab12-7", {"/home/u/p/.corral/cache/quarantine/ab12-7"})
    True
    >>> in_use("ab12-7", {"/p/.corral/cache/quarantine/ab12-70", "/p/cache/roots/ab12"})
    False
    """
    needle = f"/quarantine/{name}/"
    return any(needle in source.rstrip("/") + "/" for source in mounted)


def mount_sources() -> set[str] | None:
    """The source path of every mount of every mount namespace this user can read."""
    proc = Path("/proc")
    if not (proc / "self" / "mountinfo").is_file():
        return None
    seen: set[str] = set()
    sources: set[str] = set()
    for pid in (p for p in os.listdir(proc) if p.isdigit()):
        try:
            namespace = os.readlink(proc / pid / "ns" / "mnt")
            if namespace in seen:
                continue
            text = (proc / pid / "mountinfo").read_text()
        except OSError:
            continue  # gone, or another user's process (it cannot run our images)
        seen.add(namespace)
        for line in text.splitlines():
            fields = line.split(" ")
            if len(fields) > 4:
                sources.add(_OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[3]))
    return sources


def freed_by(path: Path) -> int:
    """Bytes deleting `path` frees: its files not hardlinked elsewhere (a root shares its
    files with the layer cache)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if info.st_nlink == 1:
                total += info.st_size
    return total
