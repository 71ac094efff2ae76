"""Reading a sandboxed process from the host's /proc: argv, env, ids, capabilities, mounts,
namespaces and session.

Read-only. The app is the sandbox init's child; its /proc/PID/{cmdline,environ,status,
mountinfo,ns} tell how it really runs, whatever the instance record says it was given.
"""

from __future__ import annotations

import os

from corral.ports.runtime import Credentials, Mount


def read_nul_list(path: str) -> list[str]:
    """A NUL-separated /proc file (cmdline, environ) as strings."""
    with open(path, "rb") as f:
        raw = f.read()
    return [part.decode("utf-8", "surrogateescape") for part in raw.split(b"\0") if part]


def read_env(pid: int) -> dict[str, str]:
    env = {}
    for item in read_nul_list(f"/proc/{pid}/environ"):
        key, _, value = item.partition("=")
        env[key] = value
    return env


def read_ids(pid: int) -> tuple[int, int]:
    """(effective uid, effective gid) from /proc/PID/status."""
    uid = gid = -1
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("Uid:"):
                uid = int(line.split()[2])
            elif line.startswith("Gid:"):
                gid = int(line.split()[2])
    return uid, gid


def read_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as {field: value}, values stripped."""
    with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
        return {key: value.strip() for key, _, value in
                (line.partition(":") for line in f) if value}


def credentials_of(status: dict[str, str]) -> Credentials:
    """Ids (host view) and held capabilities from a parsed status.

    >>> credentials_of({"Uid": "0\t0\t0\t0", "Gid": "1\t1\t1\t1", "CapInh": "0",
    ...                 "CapPrm": "200000", "CapEff": "200000", "CapAmb": "1"}).capabilities
    2097153
    """
    capabilities = 0
    for key in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        capabilities |= int(status.get(key, "0"), 16)
    return Credentials(uids=tuple(int(i) for i in status["Uid"].split()),
                       gids=tuple(int(i) for i in status["Gid"].split()),
                       capabilities=capabilities)


def session_level(status: dict[str, str], level: int) -> int:
    """The process's session id as seen in the pid namespace `level` deep below the
    reader's (0: the host's); 0 when its session began above that namespace, outside it."""
    ids = status.get("NSsid", "").split()
    return int(ids[level]) if level < len(ids) else 0


def namespace_id(pid: int | str, kind: str) -> int | None:
    """The id (nsfs inode) of a process's namespace of `kind` ("mnt", "pid", "user"); None
    if the process is gone or not ours to look at."""
    try:
        link = os.readlink(f"/proc/{pid}/ns/{kind}")  # "mnt:[4026532178]"
    except OSError:
        return None
    return int(link[link.index("[") + 1 : -1])


def read_mounts(pid: int) -> list[Mount]:
    """Mounts of the process's mount namespace, from /proc/PID/mountinfo.

    A line reads `ID PARENT MAJ:MIN ROOT TARGET OPTIONS [TAGS…] - FSTYPE SOURCE SUPER`;
    for a bind mount ROOT is the host path inside the source file system, which is the
    host path itself when that file system is mounted at the host's /.
    """
    mounts = []
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 6 or len(tail) < 2:
                continue
            root, target, options = (_unescape(fields[3]), _unescape(fields[4]),
                                     fields[5].split(","))
            fstype = tail[0]
            source = root if fstype not in _VIRTUAL else fstype
            mounts.append(Mount(target=target, source=source, fstype=fstype,
                                read_only="ro" in options,
                                options=tuple(o for o in options if o not in ("ro", "rw"))))
    return mounts


_VIRTUAL = {"proc", "tmpfs", "devtmpfs", "devpts", "sysfs", "mqueue", "cgroup", "cgroup2"}


def _unescape(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 …)."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
