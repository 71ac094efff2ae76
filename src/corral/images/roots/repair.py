"""Repairing one extracted layer of the layer cache, member by member, from its blob.

A drifted file of a root is an inode the root shares with `layers/<hex>/root` (compose.py).
Each drifted path of the cache is given back what the layer blob says, as a NEW inode
renamed over it: the old, tampered inode then lives on only in the quarantined root and
the instances still running on it, and the next composed root links the fresh one. Only
the layer cache is repaired, never a root (roots are replaced). What cannot be restored
member by member (a folder turned into a file) raises NeedsExtraction: the caller drops
the layer and extracts it whole again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import secrets
import stat
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from corral.images.roots.compose import INDEX
from corral.images.roots.unpack import WHITEOUT, real_parent, remove_tree, safe_link, safe_name


class NeedsExtraction(Exception):
    """The layer cannot be repaired member by member; extract it whole again."""


def repair_layer(blob: Path, folder: Path, paths: Iterable[str]) -> list[str]:
    """Make each of `paths` (relative, "usr/bin/x") in the extracted layer `folder`/root what
    the layer `blob` holds there (or absent, when it holds nothing); return the paths changed.
    Members are found through `folder`/index.json (header offsets), made by one scan of the
    blob when missing."""
    root = folder / "root"
    fixed = []
    with tarfile.open(blob, "r:*") as tar:
        index = _index(tar, folder)
        for path in sorted({p for p in paths if p}):
            member = _member_at(tar, index, path)
            implicit = member is None and any(k.startswith(f"{path}/") for k in index)
            if not _holds(tar, member, root / path, implicit):
                _restore(tar, member, root, path)
                fixed.append(path)
    return fixed


def _index(tar: tarfile.TarFile, folder: Path) -> dict[str, int]:
    path = folder / INDEX
    with contextlib.suppress(OSError, ValueError):
        index = json.loads(path.read_text())
        if isinstance(index, dict):
            return index
    index = {}
    for member in tar:
        name = safe_name(member.name)
        if name is None or posixpath.basename(name).startswith(WHITEOUT):
            continue
        index[name] = index.get(safe_link(member), member.offset) if member.islnk() \
            else member.offset
    fresh = folder / f".{INDEX}.{secrets.token_hex(4)}"
    fresh.write_text(json.dumps(index))
    os.replace(fresh, path)
    return index


def _member_at(tar: tarfile.TarFile, index: dict[str, int], path: str
               ) -> tarfile.TarInfo | None:
    """The member the index places at `path`; checked to be that path (the index lives in
    the writable cache: a wrong offset must not restore another file's bytes)."""
    offset = index.get(path)
    if offset is None:
        return None
    assert tar.fileobj is not None
    tar.fileobj.seek(offset)
    member = tarfile.TarInfo.fromtarfile(tar)
    name = safe_name(member.name)
    # A hardlink is indexed at its target's entry, which the index gives that name too.
    if member.islnk() or (name != path and (name is None or index.get(name) != offset)):
        raise NeedsExtraction(f"the layer index places /{path} at another entry ({name})")
    return member


def _holds(tar: tarfile.TarFile, member: tarfile.TarInfo | None, path: Path,
           implicit: bool) -> bool:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return member is None
    if member is None:
        return implicit and stat.S_ISDIR(info.st_mode)
    if member.isdir():
        return stat.S_ISDIR(info.st_mode) and \
            stat.S_IMODE(info.st_mode) & 0o1777 == member.mode & 0o1777
    if member.issym():
        return stat.S_ISLNK(info.st_mode) and os.readlink(path) == member.linkname
    if not member.isreg() or not stat.S_ISREG(info.st_mode):
        return False
    if stat.S_IMODE(info.st_mode) & 0o777 != member.mode & 0o777 or info.st_size != member.size:
        return False
    content = tar.extractfile(member)
    assert content is not None
    with open(path, "rb") as there:
        return _digest(content) == _digest(there)


def _digest(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _restore(tar: tarfile.TarFile, member: tarfile.TarInfo | None, root: Path,
             path: str) -> None:
    parent = real_parent(root, path, path, create=set())
    assert parent is not None
    target = parent / posixpath.basename(path)
    with _open_folder(parent):
        if member is None:
            if target.is_dir() and not target.is_symlink():
                remove_tree(target)
            else:
                target.unlink()
            return
        if member.isdir():
            if not target.is_dir() or target.is_symlink():
                raise NeedsExtraction(f"/{path} is no longer a folder")
            os.chmod(target, member.mode & 0o1777)
            return
        if target.is_dir() and not target.is_symlink():
            remove_tree(target)
        fresh = parent / f".corral-repair-{secrets.token_hex(6)}"
        try:
            _write(tar, member, fresh)
            os.rename(fresh, target)  # a new inode; the tampered one keeps its other links
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                fresh.unlink()
            raise


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, fresh: Path) -> None:
    if member.issym():
        os.symlink(member.linkname, fresh)
        if os.geteuid() == 0:
            os.lchown(fresh, member.uid, member.gid)
        os.utime(fresh, (member.mtime, member.mtime), follow_symlinks=False)
        return
    content = tar.extractfile(member)
    if content is None:
        raise NeedsExtraction(f"/{member.name} has a kind repair does not restore")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        for block in iter(lambda: content.read(1 << 20), b""):
            out.write(block)
        if os.geteuid() == 0:
            os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode & 0o777)
        os.utime(fd, (member.mtime, member.mtime))


@contextlib.contextmanager
def _open_folder(folder: Path) -> Iterator[None]:
    """Write into `folder` even where its mode forbids it (as the owner); mode and mtime
    are put back afterwards, so the cache's folders stay as extracted."""
    before = folder.lstat()
    if os.geteuid() != 0 and not os.access(folder, os.W_OK):
        os.chmod(folder, stat.S_IMODE(before.st_mode) | 0o700)
    try:
        yield
    finally:
        os.chmod(folder, stat.S_IMODE(before.st_mode))
        os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))


__all__ = ["NeedsExtraction", "repair_layer"]
