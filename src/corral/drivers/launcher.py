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
used instead of "args" if the overlay could be mounted). With "secrets": true, stdin holds
{"env": {…}, "files": [value, …]}: the env is bwrap's whole environment (its args then carry
no --clearenv), each file value is put in a memfd on descriptor FIRST_SECRET_FD + n for
bwrap's --ro-bind-data, and a redactor process between the sandbox and its log files
replaces every value in what the app prints. Secret values never go into argv or a file.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import select
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
FIRST_SECRET_FD = 5  # sandbox.py names the same descriptors in bwrap's --ro-bind-data
REDACTED = b"[redacted]"
MAX_LINE = 1 << 20  # a longer line is redacted and written without waiting for its end


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


def exec_sandbox(cfg: dict[str, Any], out: int, err: int, status: int,
                 secret_fds: list[int], env: dict[str, str] | None) -> None:
    """In the detached child: new session, join the instance's cgroups (while still root,
    so bwrap and all it starts are counted and limited), files on 0-3, the seccomp filter
    on its descriptor and secret files after it, drop privileges, exec bwrap (which applies
    the filter; with exactly `env` when secrets give one)."""
    os.setsid()
    for procs in cfg.get("cgroups") or ():
        with open(procs, "w") as joining:
            joining.write(str(os.getpid()))
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 256) for fd in secret_fds]  # out of the way
    moves = [(os.open(os.devnull, os.O_RDONLY), 0), (out, 1), (err, 2), (status, STATUS_FD)]
    if cfg.get("seccomp"):
        source = fcntl.fcntl(os.open(cfg["seccomp"], os.O_RDONLY), fcntl.F_DUPFD, 256)
        moves.append((source, cfg["seccomp_fd"]))
    for source, target in moves:
        os.dup2(source, target)
    for n, fd in enumerate(high):
        os.dup2(fd, FIRST_SECRET_FD + n, inheritable=True)
    os.closerange(FIRST_SECRET_FD + len(high), 1 << 16)
    if cfg["uid"] is not None:
        os.setgroups([])
        os.setgid(cfg["gid"])
        os.setuid(cfg["uid"])
    if env is None:
        os.execv(cfg["bwrap"], [cfg["bwrap"], *cfg["args"]])
    os.execve(cfg["bwrap"], [cfg["bwrap"], *cfg["args"]], env)


def secret_files(values: list[str]) -> list[int]:
    """One memfd per secret file value, rewound: bwrap copies it into the sandbox's tmpfs."""
    fds = []
    for n, value in enumerate(values):
        fd = os.memfd_create(f"corral-secret-{n}", 0)
        os.write(fd, value.encode())
        os.lseek(fd, 0, os.SEEK_SET)
        fds.append(fd)
    return fds


def redact(line: bytes, values: list[bytes]) -> bytes:
    for value in values:
        line = line.replace(value, REDACTED)
    return line


def start_redactor(out: int, err: int, values: list[bytes]) -> tuple[int, int]:
    """Fork a process that copies the app's stdout and stderr into `out` and `err` line by
    line with every secret value replaced; the pipe ends the sandbox writes to. It ends when
    the sandbox (every writer) has closed them."""
    pipes = [os.pipe(), os.pipe()]
    if os.fork() == 0:
        try:
            os.setsid()
            keep_only({pipes[0][0], pipes[1][0], out, err})
            pump({pipes[0][0]: out, pipes[1][0]: err}, values)
        finally:
            os._exit(0)
    for read, _ in pipes:
        os.close(read)
    return pipes[0][1], pipes[1][1]


def keep_only(keep: set[int]) -> None:
    """Close every descriptor but `keep`, with /dev/null on 0-2: the redactor must hold
    neither the caller's stdout (the driver reads it to its end) nor a secret file."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd not in keep:
            os.dup2(devnull, fd)
    low = 3
    for fd in sorted(keep | {1 << 16}):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1


def pump(sources: dict[int, int], values: list[bytes]) -> None:
    pending = dict.fromkeys(sources, b"")
    ordered = sorted(values, key=len, reverse=True)  # a value inside another goes after it
    while sources:
        ready, _, _ = select.select(list(sources), [], [])
        for fd in ready:
            chunk = os.read(fd, 65536)
            text = pending[fd] + chunk
            if not chunk:  # EOF: the last, unterminated line too
                lines, text = [text] if text else [], b""
                target = sources.pop(fd)
            else:
                target = sources[fd]
                *lines, text = text.split(b"\n")
                lines = [line + b"\n" for line in lines]
                if len(text) > MAX_LINE:
                    lines, text = [*lines, text], b""
            pending[fd] = text
            if lines:
                os.write(target, redact(b"".join(lines), ordered))


def main(raw: str) -> int:
    cfg = json.loads(raw)
    secrets = json.loads(sys.stdin.read()) if cfg.get("secrets") else None
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    out = os.open(cfg["stdout"], flags, 0o640)
    err = os.open(cfg["stderr"], flags, 0o640)
    status = os.open(cfg["status"], flags, 0o640)
    fds: list[int] = []
    env: dict[str, str] | None = None
    if secrets is not None:
        fds = secret_files(secrets["files"])
        env = secrets["env"]
        values = [v.encode() for v in (*secrets["env"].values(), *secrets["files"]) if v]
        if values:
            out, err = start_redactor(out, err, values)
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
        exec_sandbox(cfg, out, err, status, fds, env)
    except BaseException as exc:  # the child must never return into the parent's code path
        os.write(err, f"corral launcher: cannot exec bwrap: {exc}\n".encode())
    os._exit(127)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except Exception as exc:
        sys.stderr.write(f"corral launcher: {exc}\n")
        sys.exit(1)
