"""Stores: where corral's state and ledger live. SqlStore (SQLite) is the real one;
MemoryStore is the in-memory fake that passes the same contract suites (one per narrow
store port, tests/contracts/)."""

from typing import TYPE_CHECKING

from corral.stores.memory import MemoryStore
from corral.stores.rules import GENESIS_HASH
from corral.stores.sql import SqlStore

if TYPE_CHECKING:  # mypy holds both stores to every narrow store port at once
    from corral.ports.store import Store

    def _both_are_stores(memory: MemoryStore, sql: SqlStore) -> tuple[Store, Store]:
        return memory, sql

__all__ = ["GENESIS_HASH", "MemoryStore", "SqlStore"]
