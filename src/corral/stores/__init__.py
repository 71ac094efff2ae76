"""Stores: where corral's state and ledger live. SqlStore (SQLite or PostgreSQL) is the
real one; MemoryStore is the in-memory fake that passes the same contract suites (one per
narrow store port, tests/contracts/)."""

from typing import TYPE_CHECKING

from corral.stores.memory import MemoryStore
from corral.stores.rules import GENESIS_HASH
from corral.stores.sql import SqlStore

if TYPE_CHECKING:  # mypy holds both stores to every narrow store port at once
    from corral.ports.lease import LeaseStore
    from corral.ports.snapshot import SnapshotStore
    from corral.ports.store import Store

    def _both_are_stores(memory: MemoryStore, sql: SqlStore) -> tuple[Store, Store]:
        return memory, sql

    def _both_hold_leases(memory: MemoryStore, sql: SqlStore) -> tuple[LeaseStore, LeaseStore]:
        return memory, sql

    def _sql_takes_snapshots(sql: SqlStore) -> SnapshotStore:
        return sql

__all__ = ["GENESIS_HASH", "MemoryStore", "SqlStore"]
