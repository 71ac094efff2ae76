"""Facts about host processes read from /proc: liveness with pid-reuse protection, parents.

Read-only: nothing here sends signals or changes a process. A process is identified by
(pid, start time in clock ticks since boot, field 22 of /proc/PID/stat), so a recycled pid
is never mistaken for the instance that once had it.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass

from corral.ports.records import Capacity


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    start_ticks: int

    @property
    def is_running(self) -> bool:
        return self.state not in ("Z", "X", "x")  # a zombie has exited, only not yet reaped


def read_stat(pid: int) -> ProcStat | None:
    """The process's stat line, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            line = f.read()
    except OSError:  # gone, or vanished while being read
        return None
    # comm may hold spaces and parentheses; the fields after its last ')' are fixed
    comm = line[line.index("(") + 1 : line.rindex(")")]
    rest = line[line.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state), so field N is rest[N - 3]
    return ProcStat(pid=pid, comm=comm, state=rest[0], ppid=int(rest[1]), pgrp=int(rest[2]),
                    start_ticks=int(rest[19]))


def start_ticks(pid: int) -> int | None:
    stat = read_stat(pid)
    return stat.start_ticks if stat else None


def is_alive(pid: int, ticks: int) -> bool:
    """True if `pid` runs and is the same process that had `ticks` as its start time."""
    stat = read_stat(pid)
    return stat is not None and stat.start_ticks == ticks and stat.is_running


def children_of(pid: int) -> list[ProcStat]:
    """Running processes whose parent is `pid` (a /proc scan: the kernel here lacks
    /proc/PID/task/TID/children)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None and stat.ppid == pid and stat.is_running:
                found.append(stat)
    return found


class ChildMemo:
    """The child `pick` chose among a parent's children, remembered by the parent's (pid,
    start time): a later ask reads that child's stat file instead of scanning all of /proc,
    as long as it still runs under the same parent (a drift pass asks for every instance)."""

    def __init__(self, limit: int = 4096) -> None:
        self._known: dict[tuple[int, int], tuple[int, int]] = {}
        self._limit = limit

    def child(self, parent: ProcStat,
              pick: Callable[[list[ProcStat]], ProcStat | None]) -> ProcStat | None:
        key = (parent.pid, parent.start_ticks)
        known = self._known.get(key)
        if known is not None:
            stat = read_stat(known[0])
            if (stat is not None and stat.start_ticks == known[1] and stat.ppid == parent.pid
                    and stat.is_running):
                return stat
        chosen = pick(children_of(parent.pid))
        if chosen is None:
            self._known.pop(key, None)
            return None
        if len(self._known) >= self._limit:  # parents long gone: start over
            self._known.clear()
        self._known[key] = (chosen.pid, chosen.start_ticks)
        return chosen


class Pidfds:
    """`is_alive` through pidfds kept per process: once a process is known alive, whether
    it still runs is one poll of its pidfd (readable once it exited), not a read of its
    /proc stat file; the controller asks for every instance each second. Past `limit`
    pidfds (descriptors are finite), or where pidfd_open is missing, /proc is read.

    `on_exit` turns the same pidfds into a notice: one thread waits in epoll on all of them
    (no timeout, so it costs nothing at rest) and calls the hooks the moment a watched
    process exits, so a crash is acted on at once, not at the next once-a-second listing."""

    def __init__(self, limit: int = 256) -> None:
        self._fds: dict[tuple[int, int], tuple[int, select.poll]] = {}  # poll: any fd number
        self._limit = limit
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []
        self._epoll: select.epoll | None = None
        self._stop_fd = -1  # an eventfd: written to end the watching thread
        self._watcher: threading.Thread | None = None

    def is_alive(self, pid: int, ticks: int) -> bool:
        key = (pid, ticks)
        with self._lock:
            known = self._fds.get(key)
            if known is not None:
                if not known[1].poll(0):
                    return True
                self._close(key)  # it exited (a zombie too): its pidfd is readable
                return False
            if not is_alive(pid, ticks):
                return False
            if len(self._fds) < self._limit and hasattr(os, "pidfd_open"):
                self._open(key)
            return True

    def forget(self, pid: int, ticks: int) -> None:
        with self._lock:
            self._close((pid, ticks))

    def on_exit(self, hook: Callable[[], None]) -> None:
        """Call `hook` (on the watching thread, so it must be quick) soon after a process
        known through `is_alive` exits. Processes first seen before the first hook are
        watched too."""
        with self._lock:
            self._hooks.append(hook)
            if self._epoll is not None or not hasattr(os, "pidfd_open"):
                return
            self._epoll = select.epoll()
            self._stop_fd = os.eventfd(0)
            self._epoll.register(self._stop_fd, select.EPOLLIN)
            for fd, _ in self._fds.values():
                self._epoll.register(fd, select.EPOLLIN | select.EPOLLONESHOT)
            self._watcher = threading.Thread(target=self._watch, args=(self._epoll,),
                                             name="pidfd-exits", daemon=True)
            self._watcher.start()

    def close(self) -> None:
        with self._lock:
            for key in list(self._fds):
                self._close(key)
            watcher, self._watcher = self._watcher, None
            if watcher is not None:
                os.eventfd_write(self._stop_fd, 1)
        if watcher is not None:
            watcher.join(timeout=5)
            with self._lock:
                if self._epoll is not None:
                    self._epoll.close()
                    os.close(self._stop_fd)
                self._epoll, self._stop_fd = None, -1

    def _watch(self, epoll: select.epoll) -> None:
        """Wait for exits until stopped; each pidfd fires once (EPOLLONESHOT) and stays
        readable until `is_alive` sees it and closes it (which also unregisters it)."""
        while True:
            try:
                events = epoll.poll()
            except InterruptedError:  # pragma: no cover - retried by Python since 3.5
                continue
            if any(fd == self._stop_fd for fd, _ in events):
                return
            for hook in list(self._hooks):
                try:
                    hook()
                except Exception:  # a hook's bug must not end the watching
                    logging.getLogger(__name__).exception("exit hook failed")

    def _open(self, key: tuple[int, int]) -> None:
        try:
            fd = os.pidfd_open(key[0])
        except OSError:  # gone meanwhile, or not allowed: /proc it is
            return
        if is_alive(*key):  # still the same process after the open: the pidfd is its
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            self._fds[key] = (fd, poller)
            if self._epoll is not None:
                self._epoll.register(fd, select.EPOLLIN | select.EPOLLONESHOT)
        else:
            os.close(fd)

    def _close(self, key: tuple[int, int]) -> None:
        known = self._fds.pop(key, None)
        if known is not None:
            os.close(known[0])  # closing also takes it out of the epoll


def machine_capacity(meminfo: str = "/proc/meminfo") -> Capacity:
    """Memory in all and free now (MemTotal, MemAvailable), and the cores this process may
    run on (its affinity: a container given 2 of 64 cores has 2)."""
    found: dict[str, int] = {}
    with open(meminfo) as lines:
        for line in lines:
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                found[key] = int(rest.split()[0]) * 1024
    total = found.get("MemTotal", 0)
    return Capacity(memory=total, memory_available=found.get("MemAvailable", total),
                    cpus=float(len(os.sched_getaffinity(0))))
