"""SqlStore on a real PostgreSQL: history refused edits in the database itself, one ledger
chain however many stores write at once, migrations applied once, clear errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from corral.errors import StoreError
from corral.ports.records import Event
from corral.stores import SqlStore
from corral.stores.migrations import LATEST
from ledger_chain import assert_unbroken_chain
from postgres import PostgresCluster

pytestmark = pytest.mark.integration


def event(action: str = "note", at: float = 100.0) -> Event:
    return Event(at=at, actor="tester", action=action, subject="web")


@pytest.fixture
def url(postgres: PostgresCluster) -> str:
    return postgres.create_database()


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    opened = SqlStore(url)
    yield opened
    opened.close()


def raw(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


@pytest.mark.parametrize("statement", [
    "UPDATE releases SET image_digest = 'sha256:evil'", "DELETE FROM releases",
    "TRUNCATE releases CASCADE", "UPDATE events SET actor = 'mallory'",
    "DELETE FROM events", "TRUNCATE events"])
def test_the_database_refuses_to_edit_releases_or_the_ledger(store: SqlStore, url: str,
                                                             statement: str) -> None:
    store.add_release("web", "sha256:aaa", "sha256:c1", {}, 100.0, event("release.created"))
    with raw(url) as conn, pytest.raises(psycopg.errors.RestrictViolation,
                                         match="insert-only"):
        conn.execute(statement)  # type: ignore[arg-type]
    kept = store.get_release("web", 1)
    assert kept is not None and kept.image_digest == "sha256:aaa"
    assert [e.actor for e in store.events()] == ["tester"]


def test_stores_writing_at_once_append_to_one_chain_and_number_releases_once(
        url: str) -> None:
    stores = [SqlStore(url) for _ in range(4)]
    try:
        def write(store: SqlStore, n: int) -> None:
            for k in range(10):
                store.append_event(event(f"note {n}.{k}"))
                store.add_release("web", f"sha256:{n}{k}", "sha256:c1", {}, 1.0, event())
        threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(stores[0].events()) == 80
        assert_unbroken_chain(stores[0].events())
        assert [r.version for r in stores[1].list_releases("web")] == list(range(1, 41))
    finally:
        for store in stores:
            store.close()


def test_stores_opening_a_new_database_at_once_migrate_it_once(url: str) -> None:
    opened: list[SqlStore] = []
    threads = [threading.Thread(target=lambda: opened.append(SqlStore(url))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in opened:
        store.close()
    assert len(opened) == 3
    with raw(url) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == list(range(1, LATEST + 1))


def test_an_unreachable_server_is_a_store_error_with_a_hint(postgres: PostgresCluster) -> None:
    with pytest.raises(StoreError, match="cannot be used") as caught:
        SqlStore(f"postgresql://corral@/absent?host={postgres.folder}", busy_timeout=1)
    assert "PostgreSQL server is running" in str(caught.value.hint)


def test_an_unsupported_database_url_names_the_supported_ones() -> None:
    with pytest.raises(StoreError, match="'mysql'") as caught:
        SqlStore("mysql://corral@localhost/corral")
    assert "postgresql://" in str(caught.value.hint)
