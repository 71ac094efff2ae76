"""SqliteSecretStore: the SecretStore port over one SQLite file per environment
(`secrets.db` in its state folder, mode 0600). It stores what the engine sealed and never
sees a value in clear."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from corral.ports.secrets import SealFor, SecretVersion

_SCHEMA = """CREATE TABLE IF NOT EXISTS secrets (
    name TEXT NOT NULL, version INTEGER NOT NULL, created_at REAL NOT NULL,
    sealed BLOB NOT NULL, PRIMARY KEY (name, version))"""


class SqliteSecretStore:
    def __init__(self, path: Path) -> None:
        self._path = path

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self._path.exists()
        connection = sqlite3.connect(self._path, timeout=10, isolation_level=None)
        if fresh:
            os.chmod(self._path, 0o600)
        connection.execute(_SCHEMA)
        return connection

    def add_version(self, name: str, sealed_for: SealFor, created_at: float) -> SecretVersion:
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")  # two writers never take the same version
            try:
                (top,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM secrets WHERE "
                                    "name = ?", (name,)).fetchone()
                record = SecretVersion(name, top + 1, created_at, sealed_for(top + 1))
                db.execute("INSERT INTO secrets VALUES (?, ?, ?, ?)",
                           (name, record.version, created_at, record.sealed))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return record

    def get(self, name: str, version: int | None = None) -> SecretVersion | None:
        if not self._path.exists():
            return None
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT name, version, created_at, sealed FROM secrets WHERE name = ? AND "
                "version = COALESCE(?, (SELECT MAX(version) FROM secrets WHERE name = ?))",
                (name, version, name)).fetchone()
        return SecretVersion(row[0], row[1], row[2], bytes(row[3])) if row else None

    def newest(self) -> list[SecretVersion]:
        if not self._path.exists():
            return []
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT name, version, created_at, sealed FROM secrets s WHERE version = "
                "(SELECT MAX(version) FROM secrets WHERE name = s.name) ORDER BY name")
            return [SecretVersion(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    def remove(self, name: str) -> int:
        if not self._path.exists():
            return 0
        with closing(self._connect()) as db:
            return db.execute("DELETE FROM secrets WHERE name = ?", (name,)).rowcount
