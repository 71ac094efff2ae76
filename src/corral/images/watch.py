"""Watching unpacked roots for changes: inotify (stdlib ctypes), or polling where it fails.

A watcher reports which paths of which root changed; it never judges whether a change is
drift (a verifier does) and never touches the root. inotify watches folders, so a write
through another hardlink of a file (the layer cache) is not seen here: the periodic
verification catches that one.
"""

from __future__ import annotations

import ctypes
import os
import select
import stat
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

ALL = "*"  # in a report: the watcher lost track, verify the whole root

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x4000, 0x8000, 0x40000000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
        | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)
_HEADER = struct.Struct("iIII")

Report = dict[str, set[str]]  # root key -> relative paths that changed (or {ALL})


class Watcher(Protocol):
    def add(self, key: str, root: Path) -> None: ...

    def remove(self, key: str) -> None: ...

    def poll(self, timeout: float) -> Report: ...

    def close(self) -> None: ...


def make_watcher() -> Watcher:
    """inotify when the kernel and libc give it, else polling."""
    try:
        return InotifyWatcher()
    except OSError:
        return PollingWatcher()


class InotifyWatcher:
    """Every folder of each root under one inotify descriptor."""

    kind = "inotify"

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._fd: int = fd
        self._wds: dict[int, tuple[str, str]] = {}  # watch -> (root key, relative folder)
        self._roots: dict[str, Path] = {}

    def add(self, key: str, root: Path) -> None:
        self._roots[key] = root
        for rel in _folders(root):
            self._watch(key, rel)

    def remove(self, key: str) -> None:
        self._roots.pop(key, None)
        for wd in [w for w, (k, _) in self._wds.items() if k == key]:
            self._libc.inotify_rm_watch(self._fd, wd)
            del self._wds[wd]

    def poll(self, timeout: float) -> Report:
        report: Report = {}
        ready, _, _ = select.select([self._fd], [], [], timeout)
        while ready:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                break
            self._parse(data, report)
            ready, _, _ = select.select([self._fd], [], [], 0)
        return report

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _watch(self, key: str, rel: str) -> None:
        path = self._roots[key] / rel if rel else self._roots[key]
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), MASK)
        if wd >= 0:
            self._wds[wd] = (key, rel)

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
            if mask & IN_IGNORED:
                self._wds.pop(wd, None)
                continue
            found = self._wds.get(wd)
            if found is None:
                continue
            key, folder = found
            rel = f"{folder}/{name}" if folder and name else (name or folder)
            report.setdefault(key, set()).add(rel)
            if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO) and key in self._roots:
                for sub in _folders(self._roots[key] / rel):  # a new folder: watch it too
                    self._watch(key, f"{rel}/{sub}" if sub else rel)
                    report[key].add(f"{rel}/{sub}" if sub else rel)


class PollingWatcher:
    """Compares stat snapshots of each root every poll: slower, works everywhere."""

    kind = "polling"

    def __init__(self) -> None:
        self._roots: dict[str, Path] = {}
        self._snapshots: dict[str, dict[str, tuple[int, ...]]] = {}

    def add(self, key: str, root: Path) -> None:
        self._roots[key] = root
        self._snapshots[key] = _snapshot(root)

    def remove(self, key: str) -> None:
        self._roots.pop(key, None)
        self._snapshots.pop(key, None)

    def poll(self, timeout: float) -> Report:
        time.sleep(timeout)
        report: Report = {}
        for key, root in list(self._roots.items()):
            now, before = _snapshot(root), self._snapshots.get(key, {})
            changed = {p for p in now.keys() | before.keys() if now.get(p) != before.get(p)}
            if changed:
                report[key] = changed
            self._snapshots[key] = now
        return report

    def close(self) -> None:
        self._roots.clear()


def _folders(root: Path) -> Iterator[str]:
    """Relative paths of `root` and every folder below it ("" for the root itself)."""
    stack = [""]
    while stack:
        rel = stack.pop()
        yield rel
        try:
            with os.scandir(root / rel if rel else root) as scan:
                for entry in scan:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(f"{rel}/{entry.name}" if rel else entry.name)
        except OSError:
            continue


def _snapshot(root: Path) -> dict[str, tuple[int, ...]]:
    found: dict[str, tuple[int, ...]] = {}
    for rel in _folders(root):
        folder = root / rel if rel else root
        try:
            with os.scandir(folder) as scan:
                for entry in scan:
                    info = entry.stat(follow_symlinks=False)
                    found[f"{rel}/{entry.name}" if rel else entry.name] = (
                        info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns,
                        stat.S_IMODE(info.st_mode))
        except OSError:
            continue
    return found
