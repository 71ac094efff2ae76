"""Versioned migrations of the state database, applied in order inside one transaction.

`migrate` brings a database up to LATEST and refuses one written by a newer corral. It must
not hold queries for the running store (sql.py does that). Step 1 creates the tables as
tables.py declares them at schema 1: when a later step changes a table, first copy that
table's schema-1 definition into step 1, so a new database still walks through every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, inspect, select

from corral.errors import StoreError
from corral.stores import delivery_tables, tables, usage_tables


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_schema_1(conn: Connection) -> None:
    schema = [tables.releases, tables.services, tables.instances, tables.deployments,
              tables.deployment_steps, tables.events, tables.locks]
    tables.metadata.create_all(conn, tables=schema, checkfirst=False)
    if conn.dialect.name == "sqlite":
        # Releases are the audit trail of what ran; the database itself refuses edits, so
        # a bug or a hand-written UPDATE cannot rewrite history. (PostgreSQL: step 3.)
        for verb in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER releases_no_{verb.lower()} BEFORE {verb} ON releases "
                f"BEGIN SELECT RAISE(ABORT, 'releases are insert-only'); END")


def _create_delivery_tables(conn: Connection) -> None:
    d = delivery_tables
    tables.metadata.create_all(conn, tables=[d.deployment_progress, d.service_traffic,
                                             d.release_marks], checkfirst=False)


_INSERT_ONLY = {"releases": "releases are insert-only", "events": "the ledger is insert-only"}


def _refuse_edits_of_history(conn: Connection) -> None:
    """Releases and the ledger insert-only in the database itself, on both stores: on
    PostgreSQL by triggers (UPDATE, DELETE and TRUNCATE); on SQLite the ledger joins the
    releases that step 1 protects. A hand-written edit then needs a dropped trigger first,
    and `ledger verify` still catches it through the hash chain."""
    if conn.dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER events_no_{verb.lower()} BEFORE {verb} ON events "
                f"BEGIN SELECT RAISE(ABORT, '{_INSERT_ONLY['events']}'); END")
        return
    conn.exec_driver_sql(
        "CREATE FUNCTION corral_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION USING MESSAGE = TG_ARGV[0], ERRCODE = 'restrict_violation'; "
        "END $$")
    for table, message in _INSERT_ONLY.items():
        conn.exec_driver_sql(
            f"CREATE TRIGGER {table}_insert_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION corral_insert_only('{message}')")
        conn.exec_driver_sql(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION corral_insert_only('{message}')")


def _create_leases(conn: Connection) -> None:
    tables.leases.create(conn, checkfirst=False)


def _create_usage(conn: Connection) -> None:
    usage_tables.instance_usage.create(conn, checkfirst=False)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "releases, services, instances, deployments, steps, ledger, locks",
              _create_schema_1),
    Migration(2, "progressive delivery: deployment progress, service traffic, release marks",
              _create_delivery_tables),
    Migration(3, "releases and the ledger insert-only in the database, on both stores",
              _refuse_edits_of_history),
    Migration(4, "the controller lease with its fencing epoch", _create_leases),
    Migration(5, "sampled usage per instance and hour, for corral cost", _create_usage),
)
LATEST = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    """The schema version recorded in the database, 0 for a new one."""
    if not inspect(conn).has_table(tables.schema_version.name):
        return 0
    version = conn.scalar(select(func.max(tables.schema_version.c.version)))
    return int(version or 0)


def is_current(conn: Connection, where: str) -> bool:
    """Whether the database needs no migration; raises StoreError if it is too new.

    A read: opening an up-to-date database (every CLI command) takes no write lock.
    """
    current = current_version(conn)
    if current > LATEST:
        raise StoreError(
            f"the state database {where} has schema version {current}, but this corral "
            f"only knows versions up to {LATEST}",
            hint="a newer corral wrote it: upgrade corral, or point it at another state "
                 "database")
    return current == LATEST


def migrate(conn: Connection, where: str) -> int:
    """Apply every step newer than the database's version; return the version reached.

    Call inside a write transaction: two processes opening the same new file then migrate
    one after the other, and the second finds nothing to do.
    """
    if is_current(conn, where):
        return LATEST
    current = current_version(conn)
    tables.schema_version.create(conn, checkfirst=True)
    for step in MIGRATIONS:
        if step.version > current:
            step.apply(conn)
            conn.execute(insert(tables.schema_version).values(
                version=step.version, description=step.description))
    return LATEST
