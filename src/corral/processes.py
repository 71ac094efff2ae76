"""A host process's state and parent, read from /proc/PID/stat: the one reading for the
routers, the API server and the standby controller (the process driver's procfs reads
more of it). Read-only: nothing here signals a process."""

from __future__ import annotations

from pathlib import Path

GONE = ("Z", "X")  # exited: a zombie not yet reaped by its parent, or dead


def _fields(pid: int) -> list[str] | None:
    """The stat fields after the command name (which may hold spaces and parentheses):
    [state, ppid, pgrp, …]; None when there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields if len(fields) > 1 else None


def process_state(pid: int) -> str | None:
    """Its state letter (R, S, D, Z…), or None when there is no such process."""
    fields = _fields(pid)
    return fields[0] if fields else None


def is_running(pid: int) -> bool:
    """The process exists and has not exited (a zombie has)."""
    return process_state(pid) not in (None, *GONE)


def parent_of(pid: int) -> int | None:
    fields = _fields(pid)
    return int(fields[1]) if fields else None
