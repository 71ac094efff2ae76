"""SqlStore on a real SQLite file: shared by store objects and processes, reopened,
migrated, and refusing what it must refuse."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from corral.errors import StoreError
from corral.ports.records import DeploymentOutcome, Event, Instance, InstanceState
from corral.stores import SqlStore, tables
from corral.stores.migrations import LATEST
from ledger_chain import assert_unbroken_chain

pytestmark = pytest.mark.integration


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / ".corral" / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqlStore]:
    opened = SqlStore(url(db_path))
    yield opened
    opened.close()


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def event(action: str = "note", at: float = 100.0) -> Event:
    return Event(at=at, actor="tester", action=action, subject="web")




# -- insert-only releases ------------------------------------------------------------
def test_the_database_refuses_to_update_or_delete_a_release(store: SqlStore,
                                                             db_path: Path) -> None:
    store.add_release("web", "sha256:aaa", "sha256:c1", {}, 100.0, event("release.created"))
    raw = sqlite3.connect(db_path)
    try:
        for statement in ("UPDATE releases SET image_digest = 'sha256:evil'",
                          "DELETE FROM releases"):
            with pytest.raises(sqlite3.IntegrityError, match="insert-only"):
                raw.execute(statement)
    finally:
        raw.close()
    kept = store.get_release("web", 1)
    assert kept is not None and kept.image_digest == "sha256:aaa"


# -- sharing ---------------------------------------------------------------------------
def test_two_stores_on_one_file_append_to_one_chain(db_path: Path) -> None:
    first, second = SqlStore(url(db_path)), SqlStore(url(db_path))
    try:
        for n in range(20):
            (first if n % 2 else second).append_event(event(f"note {n}"))
        first.add_release("web", "sha256:aaa", "sha256:c1", {}, 1.0, event())
        assert second.add_release("web", "sha256:bbb", "sha256:c1", {}, 2.0, event()).version == 2
        assert first.events() == second.events()
        assert_unbroken_chain(first.events())
        assert len(first.events()) == 22
    finally:
        first.close()
        second.close()


APPENDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from corral.ports.records import Event
    from corral.stores import SqlStore

    url, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    deadline = time.monotonic() + 30
    while not go.exists():  # start together, so the writers really overlap
        if time.monotonic() > deadline:
            sys.exit("never told to start")
        time.sleep(0.005)
    store = SqlStore(url)  # opened together too: a new file is migrated exactly once
    for n in range(count):
        event = Event(at=float(n), actor=name, action="note", subject="web")
        if n % 5 == 0:
            store.add_release("web", f"sha256:{name}{n}", "sha256:c", {}, float(n), event)
        else:
            store.append_event(event)
    store.close()
""")


def test_processes_appending_at_once_keep_one_unbroken_chain(tmp_path: Path,
                                                             db_path: Path) -> None:
    go = tmp_path / "go"
    count = 100
    writers = [subprocess.Popen([sys.executable, "-c", APPENDER, url(db_path), name,
                                 str(count), str(go)], stderr=subprocess.PIPE)
               for name in ("alpha", "beta", "gamma")]
    try:
        go.touch()
        for writer in writers:
            _, err = writer.communicate(timeout=120)
            assert writer.returncode == 0, err.decode()
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    store = SqlStore(url(db_path))
    try:
        entries = store.events()
        assert len(entries) == 3 * count
        assert_unbroken_chain(entries)
        assert {e.actor for e in entries} == {"alpha", "beta", "gamma"}
        versions = [r.version for r in store.list_releases("web")]
        assert versions == list(range(1, 3 * count // 5 + 1))
    finally:
        store.close()
    assert applied_migrations(db_path) == list(range(1, LATEST + 1))


def test_a_writer_holding_the_database_past_the_busy_timeout_is_a_store_error(
        db_path: Path) -> None:
    store = SqlStore(url(db_path), busy_timeout=0.2)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="cannot be used"):
            store.append_event(event())
        # WAL: readers are not blocked by a writer.
        assert store.events() == []
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        store.close()


# -- reopening and migrations -----------------------------------------------------------
def test_reopening_the_database_keeps_everything(db_path: Path) -> None:
    first = SqlStore(url(db_path))
    release = first.add_release("web", "sha256:aaa", "sha256:c1", {"env": {"A": "1"}}, 1.0,
                                event(), git_commit="abc", git_commit_time=0.5)
    first.set_live_release("web", 1, event())
    ready = Instance(id="i-1", service="web", release=1, image_digest="sha256:aaa",
                     address="127.0.0.1:9000", state=InstanceState.READY, created_at=2.0, pid=7)
    first.put_instance(ready, event())
    made = first.create_deployment("web", "canary", None, 1, 2, 3.0, event())
    step = first.add_step(made.id, "Analyse", {"error_rate": 0.0}, 4.0)
    done = first.finish_deployment(made.id, DeploymentOutcome.SUCCEEDED, 5.0, None, event())
    first.acquire_lock("deploy:web", "a", 10.0, 60.0)
    entries = first.events()
    first.close()

    again = SqlStore(url(db_path))
    try:
        assert again.list_releases("web") == [release]
        assert again.live_release("web") == 1
        assert again.list_instances() == [ready]
        assert again.list_deployments() == [done]
        assert again.list_steps(made.id) == [step]
        assert again.acquire_lock("deploy:web", "b", 20.0, 60.0) is not None
        assert again.events() == entries
    finally:
        again.close()


def test_opening_again_applies_no_migration_twice(db_path: Path) -> None:
    for _ in range(3):
        SqlStore(url(db_path)).close()
    assert applied_migrations(db_path) == list(range(1, LATEST + 1))


def applied_migrations(path: Path) -> list[int]:
    raw = sqlite3.connect(path)
    try:
        return [v for (v,) in raw.execute("SELECT version FROM schema_version ORDER BY 1")]
    finally:
        raw.close()


def test_the_migrated_schema_matches_the_tables_the_queries_use(store: SqlStore,
                                                                db_path: Path) -> None:
    engine = create_engine(url(db_path))
    try:
        found = inspect(engine)
        for table in tables.metadata.sorted_tables:
            assert ({c["name"] for c in found.get_columns(table.name)}
                    == set(table.columns.keys())), table.name
    finally:
        engine.dispose()


def test_a_database_from_a_newer_corral_is_refused_with_a_hint(db_path: Path) -> None:
    SqlStore(url(db_path)).close()
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute("INSERT INTO schema_version (version, description) "
                    "VALUES (?, 'from the future')", (LATEST + 1,))
    raw.close()
    with pytest.raises(StoreError) as caught:
        SqlStore(url(db_path))
    assert f"schema version {LATEST + 1}" in caught.value.message
    assert caught.value.hint is not None and "upgrade corral" in caught.value.hint


def test_the_database_runs_in_wal_mode(store: SqlStore, db_path: Path) -> None:
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    garbage = tmp_path / "state.db"
    garbage.write_bytes(b"this is not sqlite, " * 100)
    with pytest.raises(StoreError, match="unreadable"):
        SqlStore(url(garbage))


def test_an_unsupported_database_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="does not support"):
        SqlStore("mysql://localhost/corral")
    with pytest.raises(StoreError, match="not a database URL"):
        SqlStore("not a url")
