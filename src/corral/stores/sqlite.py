"""Opening a SQLite state database the way several processes can share it: WAL journal,
a busy timeout, foreign keys on, and BEGIN IMMEDIATE for writes so a read-then-insert
(next release version, next ledger seq) cannot interleave with another writer's.
It must not know the schema or any query.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy import event as sa_event
from sqlalchemy.engine import URL

from corral.errors import StoreError

WRITE_OPTION = "corral_write"
"""Execution option: transactions on an engine carrying it start with BEGIN IMMEDIATE."""


def sqlite_engine(parsed: URL, busy_timeout: float) -> Engine:
    """An engine for `parsed` ("sqlite:////abs/path/state.db", checked by
    engines.parse_store_url), its folder created if missing."""
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of the state database {database}: "
                             f"{exc.strerror}", hint="check the path and its permissions") from exc
    engine = create_engine(parsed, connect_args={"timeout": busy_timeout})
    sa_event.listen(engine, "connect", _configure_connection(busy_timeout))
    sa_event.listen(engine, "begin", _begin)
    return engine


def _configure_connection(busy_timeout: float) -> Any:
    def configure(dbapi_connection: Any, _record: Any) -> None:
        # Stop pysqlite from issuing its own (deferred) BEGIN; _begin issues ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            # WAL: readers (CLI status) never block the controller's writes, nor the reverse.
            cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()
    return configure


def _begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
