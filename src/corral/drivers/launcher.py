"""Starts one bwrap sandbox detached from its caller; run as `python -I -S launcher.py CONFIG`.

Stdlib only and self-contained (it runs without corral on sys.path). It opens the log and
status files, stages source paths where the unprivileged user can reach them, forks, and the
child calls setsid, drops to the sandbox uid and execs bwrap. The parent prints the child's pid
and exits at once, so bwrap is reparented to init: the caller never has to reap it and may die
at any time. It must not wait for, watch or signal the sandbox.

CONFIG is JSON: {"bwrap", "args", "stdout", "stderr", "status", "stage_dir",
"stage": {name: source path}, "uid", "gid", "overlay", "cgroups": [cgroup.procs files to
join], "seccomp": compiled filter or null, "seccomp_fd"} (uid/gid null: keep the caller's;
overlay null, or {"skeleton": [[path, is_dir]…], "args"}: bwrap's args over the overlay,
used instead of "args" if the overlay could be mounted).
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
STATUS_FD = 3


def _call(libc: Any, name: str, *args: Any) -> None:
    if getattr(libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}{args[:2]!r}: {os.strerror(errno)}")


def stage_sources(stage_dir: str, stage: dict[str, str]) -> None:
    """Bind each source (a folder or a file) under `stage_dir`, in a private mount
    namespace of this process.

    Why: bwrap runs as an unprivileged uid that may not traverse the folders holding the
    image root or volumes (e.g. /root is 0700). Root opens them here and re-exposes them on a
    fresh tmpfs; the mounts vanish with the sandbox and never touch the host's namespace.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    _call(libc, "unshare", CLONE_NEWNS)
    _call(libc, "mount", b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    # opened after unshare (a bind source must be in this namespace) and before the tmpfs
    # (which may hide them: a source can live under stage_dir)
    fds = {name: os.open(path, os.O_PATH) for name, path in stage.items()}
    _call(libc, "mount", b"corral", stage_dir.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
          b"mode=0755")
    for name, fd in fds.items():
        target = os.path.join(stage_dir, name)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.mkdir(target)
        else:  # a file (the host's resolv.conf): bound over an empty one
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        _call(libc, "mount", f"/proc/self/fd/{fd}".encode(), target.encode(), None,
              MS_BIND | MS_REC, None)
        os.close(fd)


def overlay_root(stage_dir: str, skeleton: list[tuple[str, bool]]) -> bool:
    """Mount `stage_dir/merged`: a read-only overlay of a skeleton holding what the staged
    root lacks (folders and empty files, the mount points the sandbox needs) on that root.

    Why: bwrap can then bind the root whole, in one mount, where binding its entries one by
    one (what works without privilege) costs a mount per entry. The root is never written;
    the skeleton lives on the staging tmpfs and vanishes with the sandbox. False if the
    kernel refuses overlayfs: the caller then uses the entry-by-entry layout.
    """
    skel, root = os.path.join(stage_dir, "skel"), os.path.join(stage_dir, "root")
    merged = os.path.join(stage_dir, "merged")
    umask = os.umask(0o022)  # the caller's may be 077: the sandbox's uid must traverse these
    try:
        os.mkdir(skel)
        os.mkdir(merged)
        for path, is_dir in skeleton:
            target = skel + path
            os.makedirs(target if is_dir else os.path.dirname(target), exist_ok=True)
            if not is_dir:
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
    finally:
        os.umask(umask)
    for folder, _, _ in os.walk(skel):  # a folder the root has keeps its mode and owner
        lower = root + folder[len(skel):]
        if os.path.isdir(lower) and not os.path.islink(lower):
            found = os.stat(lower)
            os.chmod(folder, stat.S_IMODE(found.st_mode))
            os.chown(folder, found.st_uid, found.st_gid)
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"lowerdir={skel}:{root}".encode()
    mounted: int = libc.mount(b"corral", merged.encode(), b"overlay", MS_RDONLY, options)
    return mounted == 0


def exec_sandbox(cfg: dict[str, Any], out: int, err: int, status: int) -> None:
    """In the detached child: new session, join the instance's cgroups (while still root,
    so bwrap and all it starts are counted and limited), files on 0-3 and the seccomp
    filter on its descriptor, drop privileges, exec bwrap (which applies the filter)."""
    os.setsid()
    for procs in cfg.get("cgroups") or ():
        with open(procs, "w") as joining:
            joining.write(str(os.getpid()))
    moves = [(os.open(os.devnull, os.O_RDONLY), 0), (out, 1), (err, 2), (status, STATUS_FD)]
    last = STATUS_FD
    if cfg.get("seccomp"):
        last = cfg["seccomp_fd"]
        moves.append((os.open(cfg["seccomp"], os.O_RDONLY), last))
    for source, target in moves:
        os.dup2(source, target)
    os.closerange(last + 1, 1 << 16)
    if cfg["uid"] is not None:
        os.setgroups([])
        os.setgid(cfg["gid"])
        os.setuid(cfg["uid"])
    os.execv(cfg["bwrap"], [cfg["bwrap"], *cfg["args"]])


def main(raw: str) -> int:
    cfg = json.loads(raw)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    out = os.open(cfg["stdout"], flags, 0o640)
    err = os.open(cfg["stderr"], flags, 0o640)
    status = os.open(cfg["status"], flags, 0o640)
    if cfg["stage"]:
        stage_sources(cfg["stage_dir"], cfg["stage"])
    overlay = cfg.get("overlay")
    if overlay and overlay_root(cfg["stage_dir"], overlay["skeleton"]):
        cfg["args"] = overlay["args"]
    pid = os.fork()
    if pid:
        os.write(1, f"{pid}\n".encode())
        return 0
    try:
        exec_sandbox(cfg, out, err, status)
    except BaseException as exc:  # the child must never return into the parent's code path
        os.write(err, f"corral launcher: cannot exec bwrap: {exc}\n".encode())
    os._exit(127)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except Exception as exc:
        sys.stderr.write(f"corral launcher: {exc}\n")
        sys.exit(1)
