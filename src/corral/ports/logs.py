"""Log ports: where instance output lines are kept (LogStore) and shipped (LogSink).

A LogStore keeps lines tagged with where they came from and, in the same write, how far
each source file has been read (its cursor), so a collector restarted at any point
neither loses nor repeats a line. Plain data and Protocols only; no I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol


@dataclass(frozen=True)
class LogSource:
    """What produced a line: one stream of one instance, and what that instance ran."""

    instance: str
    service: str
    release: int
    image_digest: str
    git_commit: str | None = None


class LogLine(NamedTuple):
    """One line of an instance's stdout or stderr, as collected. A NamedTuple, not a
    dataclass: the collector makes one per line, and tuples are several times cheaper."""

    at: float  # Unix seconds when the collector read it (the app's own time may be in fields)
    source: LogSource
    stream: str  # "stdout" | "stderr"
    message: str  # the line without its newline
    fields: dict[str, Any] | None = None  # the line parsed, when it is a JSON object
    id: int = 0  # the store's number for it, increasing in arrival order; 0 before storing


@dataclass(frozen=True)
class LogQuery:
    """Which lines to read. Every filter is optional; `grep` is a Python regular expression."""

    service: str | None = None
    release: int | None = None
    instance: str | None = None
    stream: str | None = None
    since: float | None = None  # at >= since
    until: float | None = None  # at < until
    grep: str | None = None
    after_id: int = 0  # only lines stored after this one (for following)
    limit: int = 1000  # the newest `limit` matching lines are returned, oldest first


@dataclass(frozen=True)
class Cursor:
    """How far the collector has read one stream of one instance, in bytes."""

    instance: str
    stream: str
    offset: int
    done: bool = False  # the instance ended and its file was read to the end


@dataclass(frozen=True)
class RetentionResult:
    deleted: int = 0  # lines removed by this pass
    kept: int = 0  # lines left


class LogStore(Protocol):
    def append(self, lines: Sequence[LogLine], cursors: Sequence[Cursor] = ()) -> int:
        """Store `lines` and move `cursors`, all or nothing; returns the last id given."""
        ...

    def cursor(self, instance: str, stream: str) -> Cursor | None:
        """Where the collector stopped reading this stream, if it ever read it."""
        ...

    def query(self, query: LogQuery) -> list[LogLine]:
        """Matching lines, oldest first (at most query.limit, the newest ones)."""
        ...

    def last_id(self) -> int:
        """The id of the newest stored line, 0 when empty."""
        ...

    def prune(self, older_than: float | None, max_lines: int | None = None,
              max_bytes: int | None = None) -> RetentionResult:
        """Delete lines older than `older_than`, then the oldest beyond `max_lines`, then the
        oldest until the store takes about `max_bytes` (an estimate for the fake)."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...


class LogSink(Protocol):
    """Somewhere lines are sent after they are stored (e.g. Loki). May fail: the store is
    the record, a sink is a copy."""

    def ship(self, lines: Sequence[LogLine]) -> None:
        """Send lines; raises on failure so the caller can retry or count the loss."""
        ...
