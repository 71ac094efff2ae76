"""What a `copy` step takes from the build context, and a content hash of it.

Maps a CopyStep onto layer entries (folder contents into dest, excludes, .dockerignore rules
of Dockerfile builds, normalised modes, owner) and hashes those inputs: an ignored file is
neither copied nor part of the key. A stat index (path, size, mtime_ns, inode) lets an unchanged
tree skip rehashing. It reads the context; it never writes into it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from corral.errors import ImageError
from corral.images.build.dockerignore import IgnoreRules
from corral.images.build.layer import Entry
from corral.spec.model import CopyStep

# A file changed within this window of its hash being recorded might change again within the
# same mtime tick; such hashes are not remembered (git's "racily clean" problem).
_RACY_NS = 2_000_000_000


def owner_of(step: CopyStep) -> tuple[int, int]:
    if step.owner is None:
        return 0, 0
    uid, _, gid = step.owner.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise ImageError(f"copy {step.src!r}: owner {step.owner!r} is not 'uid:gid'",
                         hint='use numbers, e.g. owner = "1000:1000"') from None


def copy_entries(step: CopyStep, context: Path,
                 ignore: IgnoreRules | None = None) -> list[Entry]:
    """The layer entries of one copy step, sorted by name; `ignore` (a Dockerfile build's
    .dockerignore) leaves out context paths."""
    source = context / step.src
    if ignore and step.src.strip("/") not in ("", ".") and ignore.ignored(step.src):
        raise ImageError(f"copy: {step.src!r} is excluded by .dockerignore",
                         hint="remove it from COPY, or add a '!' exception to .dockerignore")
    if not source.exists():
        raise ImageError(f"copy: {step.src!r} does not exist in {context}",
                         hint="fix `src` of the copy step in corral.toml (relative to its folder)")
    uid, gid = owner_of(step)
    dest = step.dest.strip("/")
    entries: list[Entry] = []
    if source.is_dir():
        if dest:
            entries.append(Entry(dest, "dir", mode=0o755, uid=uid, gid=gid))
        within = "" if step.src.strip("/") in ("", ".") else step.src.strip("/") + "/"
        for path, rel in _walk(source, "", step.exclude, ignore, within):
            entry = _entry(path, f"{dest}/{rel}" if dest else rel, step, uid, gid)
            if entry is not None:
                entries.append(entry)
    else:
        name = f"{dest}/{source.name}" if step.dest.endswith("/") or not dest else dest
        entry = _entry(source, name, step, uid, gid, follow=True)
        if entry is not None:
            entries.append(entry)
    return sorted(entries, key=lambda e: e.name)


def _walk(folder: Path, prefix: str, exclude: tuple[str, ...], ignore: IgnoreRules | None,
          within: str) -> Iterator[tuple[Path, str]]:
    """(path, path relative to the copied folder); `within` is that folder in the context.
    An ignored folder is entered only when an exception may bring back a path inside it,
    and is copied only if one does (as Docker does)."""
    with os.scandir(folder) as scan:
        children = sorted(scan, key=lambda e: e.name)
    for child in children:
        rel = prefix + child.name
        if is_excluded(rel, exclude):
            continue
        dropped = ignore is not None and ignore.ignored(within + rel)
        is_dir = child.is_dir(follow_symlinks=False)
        if dropped and not (is_dir and ignore is not None and ignore.has_exceptions):
            continue
        inside = list(_walk(Path(child.path), rel + "/", exclude, ignore, within)) \
            if is_dir else []
        if not dropped or inside:
            yield Path(child.path), rel
        yield from inside


def is_excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    """gitignore-like: a pattern without '/' matches a name at any depth ("*.pyc",
    "__pycache__"); one with '/' matches the path from the copied folder ("tests/*.py")."""
    name = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if "/" in pattern:
            if fnmatch.fnmatchcase(rel, pattern.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def _entry(path: Path, name: str, step: CopyStep, uid: int, gid: int,
           follow: bool = False) -> Entry | None:
    info = path.stat() if follow else path.lstat()
    if stat.S_ISDIR(info.st_mode):
        return Entry(name, "dir", mode=0o755, uid=uid, gid=gid)
    if stat.S_ISLNK(info.st_mode):
        return Entry(name, "symlink", mode=0o777, uid=uid, gid=gid, linkname=os.readlink(path))
    if not stat.S_ISREG(info.st_mode):
        return None  # sockets and fifos in a working tree are not content
    # Only "executable or not" survives: umask and checkout tools differ between machines.
    mode = step.mode if step.mode is not None else (0o755 if info.st_mode & 0o111 else 0o644)
    return Entry(name, "file", mode=mode, uid=uid, gid=gid, source=path, size=info.st_size)


class StatIndex:
    """Content hashes of files, remembered by (size, mtime_ns, inode), saved as JSON."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.changed = False
        try:
            self.known: dict[str, list[int | str]] = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            self.known = {}

    def file_hash(self, path: Path) -> str:
        info = path.stat()
        key = str(path.absolute())
        stamp: list[int | str] = [info.st_size, info.st_mtime_ns, info.st_ino]
        remembered = self.known.get(key)
        if remembered is not None and remembered[:3] == stamp:
            return str(remembered[3])
        hasher = hashlib.sha256()
        with path.open("rb") as content:
            while chunk := content.read(1 << 20):
                hasher.update(chunk)
        digest = hasher.hexdigest()
        if time.time_ns() - info.st_mtime_ns > _RACY_NS:
            self.known[key] = [*stamp, digest]
            self.changed = True
        return digest

    def save(self) -> None:
        if not self.changed:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as out:
            json.dump(self.known, out, separators=(",", ":"))
        os.rename(tmp, self.path)
        self.changed = False


def inputs_digest(entries: list[Entry], index: StatIndex) -> str:
    """A hash of everything that ends up in the layer: names, kinds, modes, owners, content."""
    hasher = hashlib.sha256()
    for entry in entries:
        content = index.file_hash(entry.source) if entry.source is not None else ""
        row = [entry.name, entry.kind, entry.mode, entry.uid, entry.gid, entry.linkname, content]
        hasher.update(json.dumps(row).encode() + b"\n")
    return hasher.hexdigest()
