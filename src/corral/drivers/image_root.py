"""Reading an unpacked image root from the host, as a sandbox over it will see it.

Read-only: resolves paths inside the root (its symlinks stay inside it, as they do for the
app), plans which of the root's entries the sandbox binds so that the runtime can add /proc,
/dev, /tmp, /sys, host files and volume mount points the image lacks, and explains a failed
start (argv[0] or workdir missing, an interpreter the image lacks). It never writes to the
root: roots are shared by every instance of a digest, read-only and named by that digest.
"""

from __future__ import annotations

import os
import posixpath
import stat
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_MAX_LINKS = 40  # as the kernel's path walk: more means a loop


@dataclass(frozen=True)
class Entry:
    """One path of the sandbox's `/`: the root's own entry bound read-only (`bind`), a
    symlink copied as such (`symlink`, with its `link`), or an empty folder (`dir`) made on
    the sandbox's own `/` so that something can be mounted below it."""

    path: str
    kind: str
    link: str = ""


def resolve_inside(root: str, path: str, *, follow_last: bool = True) -> str:
    """`path` with the image's symlinks followed as the app would follow them: an absolute
    link starts again at the root, `..` never climbs above it. A loop stops where it is."""
    todo = [p for p in path.split("/") if p]
    done: list[str] = []
    links = 0
    while todo:
        name = todo.pop(0)
        if name == ".":
            continue
        if name == "..":
            done = done[:-1]
            continue
        host = os.path.join(root, *done, name)
        if (todo or follow_last) and links < _MAX_LINKS and os.path.islink(host):
            links += 1
            target = os.readlink(host)
            done = [] if target.startswith("/") else done
            todo = [p for p in target.split("/") if p] + todo
            continue
        done.append(name)
    return "/" + "/".join(done)


def _kind(root: str, path: str) -> str:
    """"dir", "file" (anything else that is not a symlink), "link" or "" (missing)."""
    try:
        mode = os.lstat(root + path).st_mode
    except OSError:
        return ""
    return "dir" if stat.S_ISDIR(mode) else "link" if stat.S_ISLNK(mode) else "file"


def _ancestors(path: str) -> list[str]:
    """'/a/b/c' -> ['/a', '/a/b'] (neither '/' nor the path itself)."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def place_mounts(root: str, mount_points: Mapping[str, bool]) -> dict[str, str]:
    """Where each mount point (path inside -> is a folder) lands once the image's symlinks on
    the way to it are followed; its own last component is never followed: a symlink there is
    replaced, as is an entry of the wrong kind."""
    placed = {}
    for path in mount_points:
        parent, name = posixpath.split(posixpath.normpath("/" + path.lstrip("/")))
        placed[path] = posixpath.join(resolve_inside(root, parent), name)
    return placed


def lacking(root: str, mount_points: Mapping[str, bool],
            folders: Iterable[str] = ()) -> dict[str, bool]:
    """What the root lacks for the sandbox, path -> is a folder: the mount points that
    cannot be mounted over where they are (missing, a symlink or of the wrong kind) and the
    `folders` it has no entry for. Paths below another mount point are left out: bwrap
    makes them in that mount.

    `mount_points` are placed paths (see place_mounts) -> whether a folder is mounted there;
    `folders` must exist as folders (the workdir: made empty if the image lacks it, as runc
    does).
    """
    found = {}
    for path, is_dir in mount_points.items():
        if _kind(root, path) != ("dir" if is_dir else "file") \
                and not _is_under_any(path, mount_points):
            found[path] = is_dir
    for folder in (resolve_inside(root, f) for f in folders):
        if not _kind(root, folder) and not _is_under_any(folder, mount_points):
            found[folder] = True
    return found


def plan_root(root: str, mount_points: Mapping[str, bool],
              folders: Iterable[str] = ()) -> list[Entry]:
    """The entries that make the image root the sandbox's `/`, leaving room for mounts.

    Every top-level entry of the root is bound, except mount points; a folder of the root on
    the way to something it lacks (see `lacking`) is not bound but made, and its own entries
    bound one by one, so that no mount needs to write into the root.
    """
    expand: set[str] = set()
    hidden: set[str] = set()
    made: list[str] = []
    for path in lacking(root, mount_points, folders):
        if _kind(root, path):
            hidden.add(path)  # a symlink or an entry of the wrong kind: replaced
        made += _make_room(root, path, mount_points, expand, hidden)
        if path not in mount_points:
            made.append(path)  # a folder the runtime makes (the workdir)
    entries = _walk(root, "/", expand, hidden | set(mount_points))
    seen = {e.path for e in entries}
    for path in sorted(set(made)):
        if path not in seen:
            entries.append(Entry(path, "dir"))
    return entries


def _make_room(root: str, path: str, mount_points: Mapping[str, bool], expand: set[str],
               hidden: set[str]) -> list[str]:
    """Mark the root's folders above `path` for expansion; return the folders to make
    between the last of them and `path` (they are missing from the image)."""
    made: list[str] = []
    for ancestor in _ancestors(path):
        if ancestor in mount_points:
            return made  # below another mount: bwrap makes the rest in it
        kind = _kind(root, ancestor) if not made else ""
        if kind == "dir":
            expand.add(ancestor)
            continue
        if kind:
            hidden.add(ancestor)  # a file where a folder is needed
        made.append(ancestor)
    return made


def _is_under_any(path: str, folders: Iterable[str]) -> bool:
    return any(path.startswith(f.rstrip("/") + "/") for f in folders)


def _walk(root: str, folder: str, expand: set[str], skip: set[str]) -> list[Entry]:
    entries = []
    for name in sorted(os.listdir(root + folder)):
        path = posixpath.join(folder, name)
        if path in skip:
            continue
        if path in expand:
            entries.append(Entry(path, "dir"))
            entries += _walk(root, path, expand, skip)
        elif os.path.islink(root + path):
            entries.append(Entry(path, "symlink", os.readlink(root + path)))
        else:
            entries.append(Entry(path, "bind"))
    return entries


# -- explaining a failed start -----------------------------------------------------------

EXEC_DEFAULT_PATH = "/bin:/usr/bin"  # what execvp searches when the app's env has no PATH


def find_program(root: str, argv0: str, search: str, workdir: str = "/") -> str | None:
    """Where execvp inside the sandbox finds `argv0` (a path inside), None if nowhere:
    a name with a slash is taken as it is, a bare name is looked for in `search` (PATH)."""
    folders = [""] if "/" in argv0 else (search.split(":") or [""])
    for folder in folders:
        path = resolve_inside(root, posixpath.join(workdir, folder or ".", argv0))
        if _kind(root, path) == "file":
            return path
    return None


def explain_exec_failure(root: str, argv0: str, search: str, workdir: str = "/",
                         denied: bool = False) -> str | None:
    """Why `argv0` cannot run in the image, in a user's words; None if it looks runnable.

    Looks for the program (following PATH for a bare name), its execute bits, and what it
    needs to start: the interpreter of a `#!` script, the dynamic loader of an ELF program
    (a dynamically linked binary copied into a scratch image has none)."""
    found = find_program(root, argv0, search, workdir)
    if found is None:
        where = "" if "/" in argv0 else f" (looked in PATH {search})"
        return f"argv[0] {argv0!r} is not in the image{where}"
    mode = os.stat(root + found).st_mode & 0o7777
    if not mode & 0o111 or (denied and not mode & 0o001):
        return (f"argv[0] {found} is not executable by the sandbox's user (mode {mode:04o}; "
                "the app runs as an unprivileged uid, so it needs o+x)")
    interpreter = _interpreter(root + found)
    if interpreter and _kind(root, resolve_inside(root, interpreter.lstrip("#!"))) != "file":
        if interpreter.startswith("#!"):
            return f"argv[0] {found} starts with {interpreter}, which is not in the image"
        return (f"argv[0] {found} is dynamically linked and its loader {interpreter} is not "
                "in the image (copy the libraries it needs into the image, or use a "
                "statically linked build)")
    return None


def explain_workdir(root: str, workdir: str) -> str:
    kind = _kind(root, resolve_inside(root, workdir))
    if kind == "file":
        return f"workdir {workdir} is a file in the image, not a folder"
    return f"workdir {workdir} is not a folder the app can enter"


def _interpreter(path: str) -> str | None:
    """'#!/bin/sh' for a script, the PT_INTERP path for a dynamically linked ELF, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].split()
        return "#!" + words[0].decode(errors="replace") if words else None
    return _elf_interpreter(head)


def _elf_interpreter(head: bytes) -> str | None:
    if head[:4] != b"\x7fELF" or len(head) < 64:
        return None
    wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
    word = "Q" if wide else "I"
    try:
        (table,) = struct.unpack_from(order + word, head, 0x20 if wide else 0x1C)
        size, count = struct.unpack_from(order + "HH", head, 0x36 if wide else 0x2A)
        for n in range(count):
            at = table + n * size
            if struct.unpack_from(order + "I", head, at)[0] == 3:  # PT_INTERP
                offset, length = (struct.unpack_from(order + "QQQQ", head, at + 8)[::3]
                                  if wide else struct.unpack_from(order + "IIII", head,
                                                                  at + 4)[::3])
                return head[offset : offset + length].rstrip(b"\0").decode(errors="replace")
    except struct.error:
        return None  # headers beyond what was read: too unusual to explain
    return None
