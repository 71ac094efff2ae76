"""Stores: where corral's state and ledger live. SqlStore (SQLite) is the real one;
MemoryStore is the in-memory fake that passes the same contract suite."""

from corral.stores.memory import MemoryStore
from corral.stores.rules import GENESIS_HASH
from corral.stores.sql import SqlStore

__all__ = ["GENESIS_HASH", "MemoryStore", "SqlStore"]
