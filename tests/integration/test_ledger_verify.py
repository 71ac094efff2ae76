"""`ledger verify` against a real SQLite state database whose rows are tampered with directly,
the way someone with the file (and no corral) would."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.engine.observe.ledger import export_lines, verify
from corral.ports.records import Event
from corral.stores import SqlStore

pytestmark = pytest.mark.integration


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[SqlStore, Path]]:
    path = tmp_path / "state.db"
    store = SqlStore(f"sqlite:///{path}")
    for n in range(1, 11):
        store.append_event(Event(at=1_700_000_000.5 + n, actor="ann", action="deployment.start",
                                 subject="web", detail={"deployment": n, "to": n + 1}))
    yield store, path
    store.close()


def tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        # The ledger is insert-only in the database: someone with the file drops those first.
        conn.execute("DROP TRIGGER IF EXISTS events_no_update")
        conn.execute("DROP TRIGGER IF EXISTS events_no_delete")
        for statement in statements:
            conn.execute(statement)
    conn.close()


def test_an_untouched_ledger_verifies_and_names_its_head(db: tuple[SqlStore, Path]) -> None:
    store, _ = db
    verdict = verify(store)
    assert verdict.ok and verdict.checked == 10
    assert verdict.head.seq == 10 and verdict.head.hash == store.events()[-1].hash


@pytest.mark.parametrize("statement", [
    "UPDATE events SET actor = 'mallory' WHERE seq = 4",
    "UPDATE events SET detail = '{\"deployment\":4,\"to\":99}' WHERE seq = 4",
    "UPDATE events SET at = at + 1 WHERE seq = 4",
    "UPDATE events SET detail = 'not json' WHERE seq = 4",
])
def test_an_edited_entry_is_named(db: tuple[SqlStore, Path], statement: str) -> None:
    store, path = db
    tamper(path, statement)
    verdict = verify(store)
    assert not verdict.ok and verdict.first_bad == 4 and verdict.checked == 3
    assert "entry 4 was edited" in (verdict.problem or "")


def test_an_edit_that_recomputes_the_entry_hash_breaks_the_next_link(
        db: tuple[SqlStore, Path]) -> None:
    store, path = db
    row = store.events()[3]
    forged = Event(at=row.at, actor="mallory", action=row.action, subject=row.subject,
                   detail=row.detail).chained(row.seq, row.prev_hash)
    tamper(path, f"UPDATE events SET actor = 'mallory', hash = '{forged.hash}' WHERE seq = 4")
    verdict = verify(store)
    assert not verdict.ok and verdict.first_bad == 5
    assert "does not follow entry 4" in (verdict.problem or "")


def test_a_deleted_entry_is_named(db: tuple[SqlStore, Path]) -> None:
    store, path = db
    tamper(path, "DELETE FROM events WHERE seq = 6")
    verdict = verify(store)
    assert not verdict.ok and verdict.first_bad == 6
    assert "entry 6 was deleted" in (verdict.problem or "")


def test_an_inserted_entry_is_named(db: tuple[SqlStore, Path]) -> None:
    store, path = db
    # Make room at 5 by renumbering the tail, then slip a well-formed entry in.
    tamper(path, "UPDATE events SET seq = seq + 100 WHERE seq >= 5",
           "UPDATE events SET seq = seq - 99 WHERE seq >= 105")
    prev = store.events()[3]
    fake = Event(at=prev.at + 0.1, actor="mallory", action="release.live", subject="web",
                 detail={"release": 1}).chained(5, prev.hash)
    tamper(path, "INSERT INTO events (seq, at, actor, action, subject, detail, prev_hash, hash)"
                 f" VALUES (5, {fake.at}, 'mallory', 'release.live', 'web', "
                 f"'{json.dumps(fake.detail)}', '{fake.prev_hash}', '{fake.hash}')")
    verdict = verify(store)
    assert not verdict.ok and verdict.first_bad == 6  # the entry after the forged one
    assert verdict.checked == 5


def test_reordered_entries_are_named(db: tuple[SqlStore, Path]) -> None:
    store, path = db
    tamper(path, "UPDATE events SET seq = -7 WHERE seq = 7",
           "UPDATE events SET seq = 7 WHERE seq = 8",
           "UPDATE events SET seq = 8 WHERE seq = -7")
    verdict = verify(store)
    assert not verdict.ok and verdict.first_bad == 7
    assert "does not follow entry 6" in (verdict.problem or "")


def test_export_writes_every_entry_as_one_json_line_with_its_hashes(
        db: tuple[SqlStore, Path]) -> None:
    store, _ = db
    lines = [json.loads(text) for text in export_lines(store)]
    assert [line["seq"] for line in lines] == list(range(1, 11))
    assert lines[0]["prev_hash"] == "0" * 64 and lines[-1]["hash"] == store.events()[-1].hash
    assert lines[2]["detail"] == {"deployment": 3, "to": 4}
