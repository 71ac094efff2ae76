"""Opening a PostgreSQL state database (psycopg 3 through SQLAlchemy) so that it behaves
like the SQLite one: every write transaction first takes one transaction-scoped advisory
lock, so a read-then-insert (next release version, next ledger seq) never interleaves with
another writer's, on this machine or another. It must not know the schema or any query.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy import event as sa_event
from sqlalchemy.engine import URL

from corral.stores.sqlite import WRITE_OPTION

WRITE_LOCK_KEY = 0x636F7272616C  # "corral": the advisory lock every writer queues on
"""The advisory lock serializing writers; the lease (stores/lease.py) uses its own key."""


def postgresql_engine(url: URL, busy_timeout: float) -> Engine:
    """An engine for a postgresql:// URL, always through psycopg 3."""
    engine = create_engine(url.set(drivername="postgresql+psycopg"), pool_pre_ping=True,
                           connect_args={"connect_timeout": max(1, int(busy_timeout))})
    sa_event.listen(engine, "begin", _begin(busy_timeout))
    return engine


def _begin(busy_timeout: float) -> Any:
    def begin(conn: Connection) -> None:
        if not conn.get_execution_options().get(WRITE_OPTION, False):
            return
        # psycopg opens the transaction with the first statement: the lock is then held
        # until COMMIT or ROLLBACK, as SQLite's BEGIN IMMEDIATE holds its write lock.
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(busy_timeout * 1000)}")
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
    return begin
