"""File lists of images and the verification of unpacked roots against them.

The file list (path -> kind, mode, sha256 or link target) is computed from the image's
layer blobs, never from a root, so a root changed before its first check cannot poison
its own reference; it is kept in `cache/filelists/<hex>.json`. A verifier compares a root
with it; unchanged files (same inode, size, mtime and ctime as when last found clean) are
not hashed again. It reads roots; it never repairs one (drift is answered by replacement).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from corral.images.roots.unpack import OPAQUE, WHITEOUT, safe_name

Change = tuple[str, str]  # ("/etc/passwd", "modified")
_Fingerprint = tuple[int, int, int, int]


@dataclass(frozen=True)
class Entry:
    kind: str  # "file" | "dir" | "symlink"
    mode: int  # permission bits (0o777 for files, 0o1777 for folders), 0 for symlinks
    digest: str = ""  # sha256 hex of a file's content
    link: str = ""  # a symlink's target


FileList = dict[str, Entry]  # relative path ("etc/passwd") -> entry


def file_list_from_layers(layers: Iterable[Path]) -> FileList:
    """What a root unpacked from `layers` (lowest first) must contain, whiteouts applied."""
    entries: FileList = {}
    for layer in layers:
        created: set[str] = set()
        with tarfile.open(layer, "r:*") as tar:
            for member in tar:
                _apply(tar, member, entries, created)
    return entries


def _apply(tar: tarfile.TarFile, member: tarfile.TarInfo, entries: FileList,
           created: set[str]) -> None:
    name = safe_name(member.name)
    if name is None:
        return
    parent, base = posixpath.split(name)
    if base == OPAQUE:
        for key in [k for k in _below(entries, parent) if k not in created]:
            del entries[key]
        return
    if base.startswith(WHITEOUT):
        victim = posixpath.join(parent, base[len(WHITEOUT):])
        if victim not in created:
            for key in [victim, *_below(entries, victim)]:
                entries.pop(key, None)
        return
    _ensure_parents(entries, name, created)
    existing = entries.get(name)
    if existing is not None and existing.kind == "dir" and not member.isdir():
        for key in list(_below(entries, name)):
            del entries[key]
    if member.isdir():
        entries[name] = Entry("dir", member.mode & 0o1777)
    elif member.issym():
        entries[name] = Entry("symlink", 0, link=member.linkname)
    elif member.islnk():
        target = safe_name(member.linkname)
        if target is not None and target in entries:
            entries[name] = entries[target]
    elif member.isreg():
        digest = hashlib.sha256()
        content = tar.extractfile(member)
        if content is not None:
            for block in iter(lambda: content.read(1 << 20), b""):
                digest.update(block)
        entries[name] = Entry("file", member.mode & 0o777, digest.hexdigest())
    created.add(name)


def _ensure_parents(entries: FileList, name: str, created: set[str]) -> None:
    parts = name.split("/")[:-1]
    for n in range(1, len(parts) + 1):
        folder = "/".join(parts[:n])
        if entries.get(folder, Entry("", 0)).kind != "dir":
            entries[folder] = Entry("dir", 0o755)
            created.add(folder)


def _below(entries: FileList, folder: str) -> Iterator[str]:
    prefix = folder + "/" if folder else ""
    return (k for k in list(entries) if k.startswith(prefix) and k != folder)


def save_file_list(path: Path, entries: FileList) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({k: [e.kind, e.mode, e.digest, e.link]
                               for k, e in sorted(entries.items())}))
    os.replace(tmp, path)


def load_file_list(path: Path) -> FileList:
    raw = json.loads(path.read_text())
    return {k: Entry(kind, mode, digest, link) for k, (kind, mode, digest, link) in raw.items()}


class RootVerifier:
    """Checks one unpacked root against its file list; remembers files found clean."""

    def __init__(self, root: Path, expected: FileList) -> None:
        self.root = root
        self.expected = expected
        self._clean: dict[str, _Fingerprint] = {}

    def verify(self, paths: Iterable[str] | None = None) -> list[Change]:
        """Every difference, as ("/path", change); only `paths` (relative) when given."""
        if paths is None:
            seen = set(self._walk())
            changes = [(f"/{p}", "removed") for p in sorted(set(self.expected) - seen)]
            return changes + [c for p in sorted(seen) if (c := self._check(p)) is not None]
        found: list[Change] = []
        for path in sorted(set(paths) - {""}):  # "": the root folder itself, not in lists
            change = self._check(path)
            if change is not None:
                found.append(change)
        return found

    def _walk(self) -> Iterator[str]:
        stack = [""]
        while stack:
            rel = stack.pop()
            with os.scandir(self.root / rel if rel else self.root) as scan:
                for entry in scan:
                    name = f"{rel}/{entry.name}" if rel else entry.name
                    yield name
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(name)

    def _check(self, rel: str) -> Change | None:
        path = self.root / rel
        want = self.expected.get(rel)
        try:
            info = path.lstat()
        except FileNotFoundError:
            return None if want is None else (f"/{rel}", "removed")
        if want is None:
            return (f"/{rel}", "added")
        kind = _kind(info.st_mode)
        if kind != want.kind:
            return (f"/{rel}", f"changed from {want.kind} to {kind}")
        if kind == "symlink":
            return None if os.readlink(path) == want.link else (f"/{rel}", "relinked")
        bits = stat.S_IMODE(info.st_mode) & (0o1777 if kind == "dir" else 0o777)
        if bits != want.mode:
            return (f"/{rel}", f"mode changed from {want.mode:o} to {bits:o}")
        if kind == "file":
            return self._check_content(rel, path, info, want)
        return None

    def _check_content(self, rel: str, path: Path, info: os.stat_result,
                       want: Entry) -> Change | None:
        fingerprint = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        if self._clean.get(rel) == fingerprint:
            return None
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            return (f"/{rel}", "unreadable")
        if digest.hexdigest() != want.digest:
            self._clean.pop(rel, None)
            return (f"/{rel}", "modified")
        self._clean[rel] = fingerprint
        return None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "file" if stat.S_ISREG(mode) else "special"
