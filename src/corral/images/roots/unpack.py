"""Safe extraction of image layers into a root folder, once per image, atomically.

Every entry is checked before anything is written: no absolute paths, no '..', no writing
through a symlink, no link escaping the root, no device nodes or fifos, no setuid/setgid
files. A rejected layer raises UnsafeLayerError and leaves nothing behind, inside or out.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from corral.errors import ImageError, UnsafeLayerError

_BUFFER = 1 << 20
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass
class _Meta:
    """Directory metadata applied after all layers, so read-only folders can still be filled."""

    dirs: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    # When set, whiteouts are recorded here (as written in the layer) instead of applied:
    # a layer extracted alone keeps them for composing roots later (see compose.py).
    whiteouts: list[str] | None = None
    # When set, each entry's tar header offset (a hardlink: its target's), for repair.py.
    offsets: dict[str, int] | None = None


def unpack_image(layers: list[Path], target: Path) -> Path:
    """Extract `layers` in order into `target` unless it exists; the rename makes it visible
    only when complete, so a crash never leaves a half root under the final name."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(target)
    tmp.mkdir(mode=0o700)
    try:
        meta = _Meta()
        for path in layers:
            apply_layer(path, tmp, meta)
        _apply_dir_meta(tmp, meta)
        os.chmod(tmp, 0o755)
        rename_or_drop(tmp, target)
    except BaseException:
        remove_tree(tmp)
        raise
    return target


def apply_layer(path: Path, root: Path, meta: _Meta | None = None) -> None:
    """Apply one layer (tar, optionally gzip) over `root`, whiteouts included. Folder modes
    wait for the end of the image when `meta` is given, else for the end of this layer."""
    own_meta = meta is None
    meta = meta if meta is not None else _Meta()
    created: set[str] = set()
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                _apply_member(tar, member, root, meta, created)
    except tarfile.ReadError as exc:
        raise ImageError(f"layer {path.name[:12]} is not a readable tar or tar+gzip: {exc}",
                         hint="zstd layers are not supported; rebuild the base with gzip") from None
    if own_meta:
        _apply_dir_meta(root, meta)


def extract_layer(path: Path, root: Path) -> tuple[list[str], list[str], dict[str, int]]:
    """Extract one layer alone into the empty folder `root` (made safe as in unpack_image);
    return its whiteout entries, unapplied, its explicit folders, for compose.py, and where
    each entry's header is in the tar, for repair.py."""
    meta = _Meta(whiteouts=[], offsets={})
    apply_layer(path, root, meta)
    _apply_dir_meta(root, meta)
    return list(meta.whiteouts or []), sorted(meta.dirs), dict(meta.offsets or {})


def apply_whiteout(root: Path, name: str) -> None:
    """Apply the whiteout entry `name` (`DIR/.wh.NAME` or `DIR/.wh..wh..opq`) over `root`,
    refusing to go through a symlink."""
    parent, base = posixpath.split(name)
    if base == OPAQUE:
        _make_opaque(root, parent, name, set())
    else:
        _remove(root, posixpath.join(parent, base[len(WHITEOUT):]), name, set(), _Meta())


def _apply_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, meta: _Meta,
                  created: set[str]) -> None:
    name = safe_name(member.name)
    if name is None:
        return
    parent, base = posixpath.split(name)
    if meta.whiteouts is not None and base.startswith(WHITEOUT):
        meta.whiteouts.append(name)
        return
    if base == OPAQUE:
        _make_opaque(root, parent, member.name, created)
        return
    if base.startswith(WHITEOUT):
        _remove(root, posixpath.join(parent, base[len(WHITEOUT):]), member.name, created, meta)
        return
    _check_member(member, name)
    if meta.offsets is not None:
        meta.offsets[name] = meta.offsets.get(safe_link(member), member.offset) \
            if member.islnk() else member.offset
    target = _prepare(root, name, member, created)
    if member.isdir():
        if not target.is_dir():
            target.mkdir(mode=0o700)
        meta.dirs[name] = (member.mode & 0o1777, member.uid, member.gid, int(member.mtime))
    elif member.issym():
        os.symlink(member.linkname, target)
        _own(target, member)
    elif member.islnk():
        source = _existing(root, safe_link(member), member.name)
        os.link(source, target, follow_symlinks=False)
    else:
        _write_file(tar, member, target)
    created.add(name)


def safe_name(raw: str) -> str | None:
    """`raw` as a clean relative path, None for the root itself; raises if it escapes."""
    name = raw
    while name.startswith("./"):
        name = name[2:]
    if name.startswith("/"):
        raise _unsafe(raw, "is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _unsafe(raw, "climbs out of the root with '..'")
    return "/".join(parts) or None


def safe_link(member: tarfile.TarInfo) -> str:
    target = safe_name(member.linkname)
    if target is None:
        raise _unsafe(member.name, f"is a hardlink to the root itself ({member.linkname!r})")
    return target


def _check_member(member: tarfile.TarInfo, name: str) -> None:
    if member.ischr() or member.isblk():
        raise _unsafe(member.name, "is a device node")
    if member.isfifo():
        raise _unsafe(member.name, "is a fifo")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise _unsafe(member.name, f"has an unsupported tar type {member.type!r}")
    if member.mode & stat.S_ISUID or (member.mode & stat.S_ISGID and not member.isdir()):
        raise _unsafe(member.name, f"has the setuid or setgid bit (mode {member.mode:o})")
    if member.issym() and not member.linkname.startswith("/"):
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
        if resolved == ".." or resolved.startswith("../"):
            raise _unsafe(member.name, f"is a symlink escaping the root ({member.linkname!r})")
    if member.islnk():
        safe_link(member)


def real_parent(root: Path, name: str, raw: str, *, create: set[str] | None) -> Path | None:
    """The folder holding `name`, checked to be a real folder at every level (never a symlink).
    Missing folders are made when `create` is given (and recorded in it), else None."""
    current, walked = root, ""
    for part in name.split("/")[:-1]:
        current, walked = current / part, posixpath.join(walked, part)
        try:
            mode = current.lstat().st_mode
        except FileNotFoundError:
            if create is None:
                return None
            current.mkdir(mode=0o755)
            create.add(walked)
            continue
        if stat.S_ISLNK(mode):
            raise _unsafe(raw, f"goes through the symlink {walked!r}")
        if not stat.S_ISDIR(mode):
            if create is None:
                return None
            current.unlink()  # an upper layer's folder replaces a lower layer's file
            current.mkdir(mode=0o755)
            create.add(walked)
    return current


def _prepare(root: Path, name: str, member: tarfile.TarInfo, created: set[str]) -> Path:
    parent = real_parent(root, name, member.name, create=created)
    assert parent is not None
    target = parent / posixpath.basename(name)
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        return target
    if stat.S_ISDIR(mode) and member.isdir():
        return target
    if stat.S_ISDIR(mode):
        remove_tree(target)
    else:
        target.unlink()
    return target


def _existing(root: Path, name: str, raw: str) -> Path:
    parent = real_parent(root, name, raw, create=None)
    source = parent / posixpath.basename(name) if parent else None
    if source is None or (not source.exists() and not source.is_symlink()):
        raise _unsafe(raw, f"is a hardlink to {name!r}, which is not in the image")
    if source.is_dir() and not source.is_symlink():
        raise _unsafe(raw, f"is a hardlink to the folder {name!r}")
    return source


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    content = tar.extractfile(member)
    assert content is not None
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(content, out, _BUFFER)
        os.fchmod(fd, member.mode & 0o777)
        if os.geteuid() == 0:
            os.fchown(fd, member.uid, member.gid)
        os.utime(fd, (member.mtime, member.mtime))


def _own(target: Path, member: tarfile.TarInfo) -> None:
    if os.geteuid() == 0:
        os.lchown(target, member.uid, member.gid)
    os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


def _remove(root: Path, name: str, raw: str, created: set[str], meta: _Meta) -> None:
    """A whiteout hides what lower layers put at `name`; this layer's own files stay."""
    if not name or name in created:
        return
    parent = real_parent(root, name, raw, create=None)
    if parent is None:
        return
    victim = parent / posixpath.basename(name)
    with contextlib.suppress(FileNotFoundError):
        if victim.is_dir() and not victim.is_symlink():
            remove_tree(victim)
        else:
            victim.unlink()
    for key in [k for k in meta.dirs if k == name or k.startswith(name + "/")]:
        del meta.dirs[key]


def _make_opaque(root: Path, folder: str, raw: str, created: set[str]) -> None:
    """`.wh..wh..opq`: the folder shows only what this layer puts in it."""
    if folder:
        parent = real_parent(root, folder + "/x", raw, create=None)
        if parent is None:
            return
    else:
        parent = root
    for child in list(parent.iterdir()):
        name = posixpath.join(folder, child.name)
        if name in created:
            continue
        if child.is_dir() and not child.is_symlink():
            remove_tree(child)
        else:
            child.unlink()


def _apply_dir_meta(root: Path, meta: _Meta) -> None:
    # Deepest first: setting a folder's mode or mtime must come after its children change.
    for name in sorted(meta.dirs, reverse=True):
        mode, uid, gid, mtime = meta.dirs[name]
        path = root / name
        if not path.is_dir() or path.is_symlink():
            continue
        if os.geteuid() == 0:
            os.lchown(path, uid, gid)
        os.chmod(path, mode)
        os.utime(path, (mtime, mtime))


def temp_beside(target: Path) -> Path:
    """A fresh name in `target`'s folder to build it under before `rename_or_drop`; the
    `.tmp-` prefix tells `compose.prune` that another process may be building it now."""
    return target.parent / f".tmp-{target.name[:12]}-{os.getpid()}-{secrets.token_hex(4)}"


def rename_or_drop(tmp: Path, target: Path) -> None:
    """Move the finished folder `tmp` to `target`; if another process made `target` first,
    keep theirs (same content, same name) and remove `tmp`."""
    try:
        os.rename(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
        remove_tree(tmp)


def remove_tree(path: Path) -> None:
    """Remove a folder even where modes forbid it (an unpacked root has read-only folders)."""
    def _unlock(function: object, failed: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(failed), 0o700)
            os.chmod(failed, 0o700) if os.path.isdir(failed) else None
        with contextlib.suppress(FileNotFoundError):
            if os.path.isdir(failed) and not os.path.islink(failed):
                shutil.rmtree(failed)
            else:
                os.unlink(failed)

    if path.exists() or path.is_symlink():
        shutil.rmtree(path, onerror=_unlock)


def _unsafe(raw: str, why: str) -> UnsafeLayerError:
    return UnsafeLayerError(
        f"layer entry {raw!r} {why}; nothing was unpacked",
        hint="the image is unsafe to run: rebuild it from a base you trust")
