"""SqliteLogStore: the LogStore port on its own SQLite file (.corral/logs.db), built for ingest.

A separate database from state.db, so a chatty app never slows the ledger's writes: WAL,
synchronous=NORMAL, one transaction per batch, sources (instance → service, release,
digest, commit) kept once, lines indexed by (service, at) and (source, at). It stores and
answers; it never decides what to collect or when to prune.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from corral.errors import StoreError
from corral.ports.logs import Cursor, LogLine, LogQuery, LogSource, RetentionResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY, instance TEXT NOT NULL UNIQUE, service TEXT NOT NULL,
    release INTEGER NOT NULL, image_digest TEXT NOT NULL, git_commit TEXT);
CREATE TABLE IF NOT EXISTS lines (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, source INTEGER NOT NULL, service TEXT NOT NULL,
    release INTEGER NOT NULL, stream TEXT NOT NULL, message TEXT NOT NULL, fields TEXT);
CREATE INDEX IF NOT EXISTS lines_service_at ON lines (service, at);
CREATE INDEX IF NOT EXISTS lines_source_at ON lines (source, at);
CREATE TABLE IF NOT EXISTS cursors (
    instance TEXT NOT NULL, stream TEXT NOT NULL, offset INTEGER NOT NULL,
    done INTEGER NOT NULL, PRIMARY KEY (instance, stream));
"""

_COLUMNS = ("SELECT l.id, l.at, l.stream, l.message, l.fields, s.instance, s.service, "
            "s.release, s.image_digest, s.git_commit FROM lines l JOIN sources s "
            "ON s.id = l.source")


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: str, value: str | None) -> bool:
    return value is not None and _compiled(pattern).search(value) is not None


class SqliteLogStore:
    """Lines in the SQLite file at `path`; one connection per thread, shared file."""

    def __init__(self, path: Path | str, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._timeout = busy_timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._source_ids: dict[str, int] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes on a new file
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"the log database {self.path} cannot be opened: {exc}",
                             hint="check the folder's permissions and free disk space") from exc

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: index pages stay in memory
            conn.create_function("regexp", 2, _regexp, deterministic=True)
            self._local.conn = conn
            with self._guard:
                self._all.append(conn)
        return conn

    # -- writing -----------------------------------------------------------------------
    def append(self, lines: Sequence[LogLine], cursors: Sequence[Cursor] = ()) -> int:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = [(line.at, self._source_id(conn, line.source), line.source.service,
                         line.source.release, line.stream, line.message,
                         json.dumps(line.fields) if line.fields is not None else None)
                        for line in lines]
                conn.executemany("INSERT INTO lines (at, source, service, release, stream, "
                                 "message, fields) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                conn.executemany(
                    "INSERT INTO cursors (instance, stream, offset, done) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (instance, stream) DO UPDATE SET offset = excluded.offset, "
                    "done = excluded.done",
                    [(c.instance, c.stream, c.offset, int(c.done)) for c in cursors])
                last = conn.execute("SELECT max(id) FROM lines").fetchone()[0]
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                with self._guard:
                    self._source_ids.clear()  # ids given inside the rolled-back transaction
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the log database {self.path}: {exc}",
                             hint="check free disk space") from exc
        return int(last or 0)

    def _source_id(self, conn: sqlite3.Connection, source: LogSource) -> int:
        known = self._source_ids.get(source.instance)
        if known is not None:
            return known
        conn.execute("INSERT OR IGNORE INTO sources (instance, service, release, image_digest, "
                     "git_commit) VALUES (?, ?, ?, ?, ?)",
                     (source.instance, source.service, source.release, source.image_digest,
                      source.git_commit))
        found = int(conn.execute("SELECT id FROM sources WHERE instance = ?",
                                 (source.instance,)).fetchone()[0])
        with self._guard:
            self._source_ids[source.instance] = found
        return found

    def cursor(self, instance: str, stream: str) -> Cursor | None:
        row = self._conn().execute(
            "SELECT offset, done FROM cursors WHERE instance = ? AND stream = ?",
            (instance, stream)).fetchone()
        return Cursor(instance, stream, int(row[0]), bool(row[1])) if row else None

    # -- reading -----------------------------------------------------------------------
    def query(self, query: LogQuery) -> list[LogLine]:
        where, args = _where(query)
        if query.after_id:
            # Following: the next lines in arrival order.
            sql = f"{_COLUMNS} {where} ORDER BY l.id LIMIT ?"
            rows = self._conn().execute(sql, (*args, query.limit)).fetchall()
        else:
            sql = f"{_COLUMNS} {where} ORDER BY l.at DESC, l.id DESC LIMIT ?"
            rows = self._conn().execute(sql, (*args, query.limit)).fetchall()[::-1]
        return [_line(row) for row in rows]

    def last_id(self) -> int:
        return int(self._conn().execute("SELECT max(id) FROM lines").fetchone()[0] or 0)

    def count(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM lines").fetchone()[0])

    # -- retention ---------------------------------------------------------------------
    def prune(self, older_than: float | None, max_lines: int | None = None,
              max_bytes: int | None = None) -> RetentionResult:
        conn = self._conn()
        deleted = 0
        if older_than is not None:
            deleted += conn.execute("DELETE FROM lines WHERE at < ?", (older_than,)).rowcount
        if max_lines is not None:
            deleted += _keep_newest(conn, max_lines)
        if max_bytes is not None:
            size = self._bytes(conn)
            if size > max_bytes:
                kept = self.count()
                deleted += _keep_newest(conn, int(kept * max_bytes / size * 0.9))
        if deleted:
            conn.execute("DELETE FROM sources WHERE id NOT IN (SELECT DISTINCT source FROM lines)"
                         " AND instance IN (SELECT instance FROM cursors WHERE done = 1)")
            conn.execute("PRAGMA incremental_vacuum")
            with self._guard:
                self._source_ids.clear()
        return RetentionResult(deleted=deleted, kept=self.count())

    @staticmethod
    def _bytes(conn: sqlite3.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def close(self) -> None:
        with self._guard:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


def _keep_newest(conn: sqlite3.Connection, count: int) -> int:
    row = conn.execute("SELECT id FROM lines ORDER BY id DESC LIMIT 1 OFFSET ?",
                       (max(count, 0),)).fetchone()
    if row is None:
        return 0
    return int(conn.execute("DELETE FROM lines WHERE id <= ?", (row[0],)).rowcount)


def _where(query: LogQuery) -> tuple[str, list[Any]]:
    terms: list[str] = []
    args: list[Any] = []
    if query.instance is not None:
        terms.append("l.source = (SELECT id FROM sources WHERE instance = ?)")
        args.append(query.instance)
    for column, value in (("l.service", query.service), ("l.release", query.release),
                          ("l.stream", query.stream)):
        if value is not None:
            terms.append(f"{column} = ?")
            args.append(value)
    if query.since is not None:
        terms.append("l.at >= ?")
        args.append(query.since)
    if query.until is not None:
        terms.append("l.at < ?")
        args.append(query.until)
    if query.after_id:
        terms.append("l.id > ?")
        args.append(query.after_id)
    if query.grep:
        terms.append("l.message REGEXP ?")
        args.append(query.grep)
    return ("WHERE " + " AND ".join(terms)) if terms else "", args


def _line(row: tuple[Any, ...]) -> LogLine:
    source = LogSource(instance=row[5], service=row[6], release=row[7], image_digest=row[8],
                       git_commit=row[9])
    return LogLine(at=row[1], source=source, stream=row[2], message=row[3],
                   fields=json.loads(row[4]) if row[4] is not None else None, id=row[0])
