"""Reading and writing a whole state database as a StoreSnapshot, table by table in
dependency order, for backup and restore. Rows are copied exactly (JSON text stays text),
so ledger hashes survive. It must not decide what to restore: the engine does.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, insert, select

from corral.errors import StoreError
from corral.ports.snapshot import StoreSnapshot
from corral.stores import delivery_tables as d
from corral.stores import tables as t
from corral.stores import usage_tables as u
from corral.stores.migrations import LATEST, current_version

# Parents before children (foreign keys); locks are left out: a lock belongs to a process.
TABLES = (t.releases, t.services, t.instances, t.deployments, t.deployment_steps, t.events,
          d.deployment_progress, d.service_traffic, d.release_marks, u.instance_usage)


def read_snapshot(conn: Connection) -> StoreSnapshot:
    """Every table's rows, in primary-key order, inside the caller's transaction."""
    rows = {}
    for table in TABLES:
        query = select(table).order_by(*table.primary_key.columns)
        rows[table.name] = [dict(r._mapping) for r in conn.execute(query)]
    return StoreSnapshot(schema_version=current_version(conn), tables=rows)


def write_snapshot(conn: Connection, snapshot: StoreSnapshot, where: str) -> None:
    """`snapshot` inserted into the empty database behind `conn`."""
    if snapshot.schema_version != LATEST:
        raise StoreError(f"the snapshot has schema version {snapshot.schema_version}; "
                         f"this corral writes version {LATEST}",
                         hint="restore it with the corral version that took it")
    for table in (t.releases, t.events):
        if conn.scalar(select(func.count()).select_from(table)):
            raise StoreError(f"the state database {where} is not empty: it holds {table.name}",
                             hint="restore into a new project folder or an empty database")
    for table in TABLES:
        rows = snapshot.rows(table.name)
        if rows:
            conn.execute(insert(table), rows)
    if conn.dialect.name == "postgresql":
        # Ids were copied, not drawn: move the sequence past them for the next deployment.
        conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('deployments', 'id'), "
                             "COALESCE((SELECT max(id) FROM deployments), 0) + 1, false)")
