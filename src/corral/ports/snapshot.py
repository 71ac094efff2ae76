"""The snapshot ability of a store: its whole state as plain rows, read in one consistent
transaction while others write, and loaded into an empty store of any kind. What `corral
backup` and `corral restore` need from a store, and nothing else.

A snapshot is data (table name → rows of JSON-able values), so a backup taken from SQLite
restores into PostgreSQL and back; the ledger's rows keep their hashes, so the restored
chain verifies and continues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class StoreSnapshot:
    schema_version: int
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.tables.get(table, [])


@runtime_checkable
class SnapshotStore(Protocol):
    def snapshot(self) -> StoreSnapshot:
        """Every table's rows (locks excluded: they belong to running processes), read in
        one transaction: a consistent point in time while the controller writes."""
        ...

    def load_snapshot(self, snapshot: StoreSnapshot) -> None:
        """Write `snapshot` into this store, which must hold no release and no ledger entry
        (StoreError otherwise); refuses a snapshot of another schema version."""
        ...
