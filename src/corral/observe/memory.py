"""MemoryLogStore: the in-memory fake of the LogStore port, and a recording LogSink.

Same answers as SqliteLogStore (the contract suite runs on both); nothing persists and
nothing is shared between processes. Size retention estimates bytes from message lengths.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

from corral.ports.logs import Cursor, LogLine, LogQuery, RetentionResult

_ROW_OVERHEAD = 64  # bytes a stored line costs beyond its text, for the size estimate


class MemoryLogStore:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._lines: list[LogLine] = []
        self._cursors: dict[tuple[str, str], Cursor] = {}
        self._next_id = 1

    def append(self, lines: Sequence[LogLine], cursors: Sequence[Cursor] = ()) -> int:
        with self._guard:
            for line in lines:
                self._lines.append(line._replace(
                    id=self._next_id, fields=dict(line.fields) if line.fields else line.fields))
                self._next_id += 1
            for cursor in cursors:
                self._cursors[(cursor.instance, cursor.stream)] = cursor
            return self._lines[-1].id if self._lines else 0

    def cursor(self, instance: str, stream: str) -> Cursor | None:
        with self._guard:
            return self._cursors.get((instance, stream))

    def query(self, query: LogQuery) -> list[LogLine]:
        pattern = re.compile(query.grep) if query.grep else None
        with self._guard:
            found = [line for line in self._lines if _matches(line, query, pattern)]
        if query.after_id:
            return sorted(found, key=lambda line: line.id)[:query.limit]
        newest = sorted(found, key=lambda line: (line.at, line.id), reverse=True)[:query.limit]
        return newest[::-1]

    def last_id(self) -> int:
        with self._guard:
            return self._lines[-1].id if self._lines else 0

    def count(self) -> int:
        with self._guard:
            return len(self._lines)

    def prune(self, older_than: float | None, max_lines: int | None = None,
              max_bytes: int | None = None) -> RetentionResult:
        with self._guard:
            before = len(self._lines)
            if older_than is not None:
                self._lines = [line for line in self._lines if line.at >= older_than]
            if max_lines is not None:
                self._lines = self._lines[max(0, len(self._lines) - max_lines):]
            if max_bytes is not None:
                while self._lines and sum(len(line.message) + _ROW_OVERHEAD
                                          for line in self._lines) > max_bytes:
                    self._lines = self._lines[max(1, len(self._lines) // 10):]
            return RetentionResult(deleted=before - len(self._lines), kept=len(self._lines))

    def close(self) -> None:
        pass


def _matches(line: LogLine, query: LogQuery, pattern: re.Pattern[str] | None) -> bool:
    source = line.source
    return ((query.service is None or source.service == query.service)
            and (query.release is None or source.release == query.release)
            and (query.instance is None or source.instance == query.instance)
            and (query.stream is None or line.stream == query.stream)
            and (query.since is None or line.at >= query.since)
            and (query.until is None or line.at < query.until)
            and line.id > query.after_id
            and (pattern is None or pattern.search(line.message) is not None))


class RecordingSink:
    """A LogSink that keeps what it was sent; `fail` makes the next ships raise."""

    def __init__(self) -> None:
        self.shipped: list[LogLine] = []
        self.fail = False

    def ship(self, lines: Sequence[LogLine]) -> None:
        if self.fail:
            raise OSError("sink unavailable")
        self.shipped.extend(lines)
