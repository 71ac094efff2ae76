"""Watching unpacked roots for changes: inotify (stdlib ctypes), or polling where it fails.

A watcher reports which paths of which root changed; it never judges whether a change is
drift (a verifier does) and never touches the root. inotify watches inodes: every folder of
a root (entries added, removed, renamed) and every regular file (writes, mode changes),
so a write through any other link of a file (the layer cache, another root) is seen too;
roots sharing an inode share its watch. A root that cannot be watched whole (the watches
ran out) is polled instead, with a log line saying so.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import stat
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

ALL = "*"  # in a report: the watcher lost track, verify the whole root

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x4000, 0x8000, 0x40000000
IN_DONT_FOLLOW = 0x02000000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
FILE_MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF
MASK = FILE_MASK | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE  # folders
_HEADER = struct.Struct("iIII")
LIMIT_FILE = Path("/proc/sys/fs/inotify/max_user_watches")

Report = dict[str, set[str]]  # root key -> relative paths that changed (or {ALL})


class Watcher(Protocol):
    def add(self, key: str, root: Path, files: bool = True) -> None: ...

    def remove(self, key: str) -> None: ...

    def poll(self, timeout: float) -> Report: ...

    def close(self) -> None: ...


def make_watcher() -> Watcher:
    """inotify when the kernel and libc give it, else polling."""
    try:
        return InotifyWatcher()
    except OSError as exc:
        log.warning("inotify is not available (%s): image roots are polled every poll "
                    "instead (stat snapshots of every file)", exc)
        return PollingWatcher()


def watch_limit() -> int | None:
    """The kernel's limit on one user's inotify watches (all processes together)."""
    try:
        return int(LIMIT_FILE.read_text())
    except (OSError, ValueError):
        return None


class _OutOfWatches(Exception):
    def __init__(self, why: str, hint: str = "") -> None:
        super().__init__(why)
        self.hint = hint


class InotifyWatcher:
    """Every folder and file of each root under one inotify descriptor; a watch stands for
    every (root, path) that has its inode. `budget` caps the watches this watcher places
    (the kernel's own limit applies as well); a root beyond either is polled, every
    `fallback_period` seconds."""

    kind = "inotify"

    def __init__(self, budget: int | None = None, fallback_period: float = 1.0) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._fd: int = fd
        self._budget = budget
        self._wds: dict[int, set[tuple[str, str]]] = {}  # watch -> (root key, relative path)
        self._folders: set[int] = set()  # watches of folders (events name a child)
        self._keys: dict[str, set[int]] = {}  # root key -> its watches
        self._roots: dict[str, Path] = {}
        self._fallback = PollingWatcher()
        self._fallback_period = fallback_period
        self._next_fallback = 0.0

    @property
    def watches(self) -> int:
        return len(self._wds)

    @property
    def polled(self) -> set[str]:
        """Keys of the roots polled because they could not be watched whole."""
        return set(self._fallback.keys())

    def add(self, key: str, root: Path, files: bool = True) -> None:
        """Watch `root` under `key`: its folders, and its files' inodes unless `files` is
        False (a tree whose files are watched through another root: only its entries)."""
        self._roots[key] = root
        self._keys.setdefault(key, set())
        try:
            for rel, is_folder in _entries(root):
                if is_folder or files:
                    self._watch(key, rel, is_folder)
        except _OutOfWatches as exc:
            self._unwatch(key)
            self._fallback.add(key, root, files)
            log.warning("image root %s cannot be watched with inotify (%s): its files are "
                        "polled every %gs instead (periodic verification)%s", key[:19], exc,
                        self._fallback_period, exc.hint)

    def remove(self, key: str) -> None:
        self._roots.pop(key, None)
        self._fallback.remove(key)
        self._unwatch(key)

    def poll(self, timeout: float) -> Report:
        report: Report = {}
        if self._fallback.keys():
            timeout = min(timeout, max(0.0, self._next_fallback - time.monotonic()))
        ready, _, _ = select.select([self._fd], [], [], timeout)
        while ready:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                break
            self._parse(data, report)
            ready, _, _ = select.select([self._fd], [], [], 0)
        if self._fallback.keys() and time.monotonic() >= self._next_fallback:
            self._next_fallback = time.monotonic() + self._fallback_period
            for key, paths in self._fallback.poll(0).items():
                report.setdefault(key, set()).update(paths)
        return report

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._fallback.close()

    def _watch(self, key: str, rel: str, is_folder: bool) -> None:
        path = self._roots[key] / rel if rel else self._roots[key]
        if self._budget is not None and len(self._wds) >= self._budget:
            raise _OutOfWatches(f"its budget of {self._budget} watches is used")
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path),
                                          (MASK if is_folder else FILE_MASK) | IN_DONT_FOLLOW)
        if wd < 0:
            code = ctypes.get_errno()
            if code == errno.ENOENT:
                return  # gone since the walk: its folder's watch reports that
            if code == errno.ENOSPC:
                raise _OutOfWatches(
                    f"the watches ran out: fs.inotify.max_user_watches is {watch_limit()}",
                    "; raise it (sysctl fs.inotify.max_user_watches=N) to watch every root")
            raise _OutOfWatches(f"cannot watch /{rel}: {os.strerror(code)}")
        self._wds.setdefault(wd, set()).add((key, rel))
        self._keys[key].add(wd)
        if is_folder:
            self._folders.add(wd)

    def _unwatch(self, key: str) -> None:
        for wd in self._keys.pop(key, set()):
            users = self._wds.get(wd, set())
            users.difference_update({u for u in users if u[0] == key})
            if not users:
                self._libc.inotify_rm_watch(self._fd, wd)
                self._wds.pop(wd, None)
                self._folders.discard(wd)

    def _parse(self, data: bytes, report: Report) -> None:
        offset = 0
        while offset + _HEADER.size <= len(data):
            wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
            raw = data[offset + _HEADER.size: offset + _HEADER.size + length]
            offset += _HEADER.size + length
            name = raw.rstrip(b"\0").decode("utf-8", "surrogateescape")
            if mask & IN_Q_OVERFLOW:
                for key in self._roots:
                    report.setdefault(key, set()).add(ALL)
                continue
            users = self._wds.get(wd)
            if mask & IN_IGNORED:  # the inode is gone (or unwatched): forget the watch
                for key, _ in self._wds.pop(wd, set()):
                    self._keys.get(key, set()).discard(wd)
                self._folders.discard(wd)
                continue
            for key, folder in list(users or ()):
                rel = f"{folder}/{name}" if folder and name else (name or folder)
                report.setdefault(key, set()).add(rel)
                if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                    self._watch_new_folder(key, rel, report)

    def _watch_new_folder(self, key: str, rel: str, report: Report) -> None:
        if key not in self._roots:
            return
        try:
            for sub, is_folder in _entries(self._roots[key] / rel):
                self._watch(key, f"{rel}/{sub}" if sub else rel, is_folder)
                report[key].add(f"{rel}/{sub}" if sub else rel)
        except _OutOfWatches:
            report[key].add(ALL)  # cannot watch it: the verifier looks at everything


class PollingWatcher:
    """Compares stat snapshots of each root every poll: slower, works everywhere. stat reads
    the inode, so a write through another link of a file is seen as well."""

    kind = "polling"

    def __init__(self) -> None:
        self._roots: dict[str, tuple[Path, bool]] = {}
        self._snapshots: dict[str, dict[str, tuple[int, ...]]] = {}

    def keys(self) -> list[str]:
        return list(self._roots)

    def add(self, key: str, root: Path, files: bool = True) -> None:
        self._roots[key] = (root, files)
        self._snapshots[key] = _snapshot(root, files)

    def remove(self, key: str) -> None:
        self._roots.pop(key, None)
        self._snapshots.pop(key, None)

    def poll(self, timeout: float) -> Report:
        time.sleep(timeout)
        report: Report = {}
        for key, (root, files) in list(self._roots.items()):
            now, before = _snapshot(root, files), self._snapshots.get(key, {})
            changed = {p for p in now.keys() | before.keys() if now.get(p) != before.get(p)}
            if changed:
                report[key] = changed
            self._snapshots[key] = now
        return report

    def close(self) -> None:
        self._roots.clear()


def _entries(root: Path) -> Iterator[tuple[str, bool]]:
    """(relative path, is a folder) of `root` ("" for itself), every folder and regular
    file below it; symlinks are left out (their target is their folder's business)."""
    stack = [""]
    while stack:
        rel = stack.pop()
        yield rel, True
        try:
            with os.scandir(root / rel if rel else root) as scan:
                for entry in scan:
                    name = f"{rel}/{entry.name}" if rel else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(name)
                    elif entry.is_file(follow_symlinks=False):
                        yield name, False
        except OSError:
            continue


def _folders(root: Path) -> Iterator[str]:
    """Relative paths of `root` and every folder below it ("" for the root itself)."""
    return (rel for rel, is_folder in _entries(root) if is_folder)


def _snapshot(root: Path, files: bool = True) -> dict[str, tuple[int, ...]]:
    """Each entry's stat; only which inode a non-folder entry is, unless `files`."""
    found: dict[str, tuple[int, ...]] = {}
    for rel in _folders(root):
        folder = root / rel if rel else root
        try:
            with os.scandir(folder) as scan:
                for entry in scan:
                    info = entry.stat(follow_symlinks=False)
                    whole = files or stat.S_ISDIR(info.st_mode)
                    found[f"{rel}/{entry.name}" if rel else entry.name] = (
                        info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns,
                        stat.S_IMODE(info.st_mode)) if whole else (info.st_ino,)
        except OSError:
            continue
    return found
