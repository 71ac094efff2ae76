"""The contract suites' shared fixture: every store port is run on every store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


StoreFactory = Callable[[str], SqlStore]


@pytest.fixture
def sql_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Makes new empty SQL stores: "sqlite" (a file) or "postgresql" (a database)."""
    made: list[SqlStore] = []

    def make(kind: str) -> SqlStore:
        if kind == "sqlite":
            store = SqlStore(f"sqlite:///{tmp_path / f'state{len(made)}.db'}")
        else:
            cluster: PostgresCluster = request.getfixturevalue("postgres")
            store = SqlStore(cluster.create_database(
                request.getfixturevalue("postgres_template")))
        made.append(store)
        return store
    yield make
    for store in made:
        store.close()


@pytest.fixture(params=["memory", "sqlite",
                        pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, sql_stores: StoreFactory) -> Store:
    """The in-memory fake, SQLite and PostgreSQL; suites of other ports name their own."""
    return MemoryStore() if request.param == "memory" else sql_stores(request.param)
