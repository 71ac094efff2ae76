"""Reading a sandboxed process from the host's /proc: argv, env, ids, capabilities, mounts,
namespaces and session.

Read-only. The app is the sandbox init's child; its /proc/PID/{cmdline,environ,status,
mountinfo,ns} tell how it really runs, whatever the instance record says it was given.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Iterable
from typing import TextIO

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
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="replace") as f:
        return parse_mounts(f)


def parse_mounts(lines: Iterable[str]) -> list[Mount]:
    """The mounts of mountinfo's lines (see `read_mounts`)."""
    mounts = []
    for line in lines:
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


class MountTables:
    """Each sandbox's mount table, read again only when it changed.

    The kernel marks an open /proc/PID/mountinfo with POLLPRI (and POLLERR) once its mount
    namespace's table changed since the last poll, so a drift pass over many unchanged
    sandboxes polls one descriptor each instead of reading and parsing each table. Tables
    are kept by a key (an instance id) with the process they were read from, (pid, start
    ticks): another process under the same key is read afresh. An open table holds its
    namespace alive: `forget` a key when its sandbox stops. Past `limit` tables (open
    descriptors are finite) the others are read each time, as before.
    """

    def __init__(self, limit: int = 256) -> None:
        self._open: dict[str, tuple[tuple[int, int], TextIO, select.poll,
                                    tuple[Mount, ...]]] = {}
        self._limit = limit
        self._lock = threading.Lock()  # a drift pass reads while a stop forgets

    def of(self, key: str, pid: int, ticks: int) -> tuple[Mount, ...]:
        """The mounts of process `pid` started at `ticks`; OSError if it is gone."""
        with self._lock:
            return self._read(key, pid, ticks)

    def forget(self, key: str) -> None:
        with self._lock:
            self._forget(key)

    def close(self) -> None:
        with self._lock:
            for key in list(self._open):
                self._forget(key)

    def _read(self, key: str, pid: int, ticks: int) -> tuple[Mount, ...]:
        known = self._open.get(key)
        if known is not None and known[0] != (pid, ticks):
            self._forget(key)
            known = None
        if known is not None:
            _, file, poller, mounts = known
            if not poller.poll(0):
                return mounts
            file.seek(0)  # changed: read it again through the same descriptor
        elif len(self._open) >= self._limit:  # descriptors are finite: read, keep none
            return tuple(read_mounts(pid))
        else:
            # kept open across passes (closed by `forget`): no context manager
            file = open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="replace")  # noqa: SIM115
            poller = select.poll()
            poller.register(file, select.POLLPRI | select.POLLERR)
        try:
            mounts = tuple(parse_mounts(file))
        except OSError:
            file.close()
            self._open.pop(key, None)
            raise
        self._open[key] = ((pid, ticks), file, poller, mounts)
        return mounts

    def _forget(self, key: str) -> None:
        known = self._open.pop(key, None)
        if known is not None:
            known[1].close()


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
