"""The contract suites' shared fixture: every store port is run on every store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from corral.ports.store import Store
from corral.stores import MemoryStore, SqlStore
from postgres import PostgresCluster


@pytest.fixture(scope="session")
def postgres_template(postgres: PostgresCluster) -> str:
    """A database migrated once, copied for each test (CREATE DATABASE … TEMPLATE)."""
    url = postgres.create_database()
    SqlStore(url).close()
    return str(make_url(url).database)


@pytest.fixture(params=["memory", "sqlite",
                        pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The in-memory fake, SQLite and PostgreSQL; suites of other ports name their own."""
    made: Store
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "sqlite":
        made = SqlStore(f"sqlite:///{tmp_path / '.corral' / 'state.db'}")
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        made = SqlStore(cluster.create_database(request.getfixturevalue("postgres_template")))
    yield made
    made.close()
