"""The LogStore contract: the SQLite log store and the in-memory fake must both pass it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.observe.logstore import SqliteLogStore
from corral.observe.memory import MemoryLogStore
from corral.ports.logs import Cursor, LogLine, LogQuery, LogSource, LogStore

WEB1 = LogSource("web-a1", "web", 1, "sha256:" + "a" * 64, "c0ffee")
WEB2 = LogSource("web-b2", "web", 2, "sha256:" + "b" * 64, None)
API1 = LogSource("api-c1", "api", 1, "sha256:" + "c" * 64, "beef")


@pytest.fixture(params=["memory", "sqlite"])
def logs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogStore]:
    made: LogStore = (MemoryLogStore() if request.param == "memory"
                      else SqliteLogStore(tmp_path / ".corral" / "logs.db"))
    yield made
    made.close()


def line(source: LogSource, message: str, at: float = 100.0, stream: str = "stdout",
         fields: dict[str, object] | None = None) -> LogLine:
    return LogLine(at=at, source=source, stream=stream, message=message, fields=fields)


def messages(lines: list[LogLine]) -> list[str]:
    return [item.message for item in lines]


def test_lines_read_back_with_their_source_stream_time_and_fields(logs: LogStore) -> None:
    logs.append([line(WEB1, '{"level":"info"}', 100.5, "stderr", {"level": "info"})])
    [got] = logs.query(LogQuery())
    assert got.source == WEB1 and got.stream == "stderr" and got.at == 100.5
    assert got.fields == {"level": "info"} and got.message == '{"level":"info"}'
    assert got.id > 0


def test_ids_increase_in_arrival_order_and_append_returns_the_last(logs: LogStore) -> None:
    assert logs.last_id() == 0
    last = logs.append([line(WEB1, "a"), line(WEB1, "b")])
    assert last == logs.last_id()
    ids = [item.id for item in logs.query(LogQuery())]
    assert ids == sorted(ids) and ids[-1] == last and len(set(ids)) == 2


def test_filters_select_by_service_release_instance_stream_and_time(logs: LogStore) -> None:
    logs.append([line(WEB1, "w1", 100), line(WEB2, "w2", 110, "stderr"),
                 line(API1, "a1", 120), line(WEB1, "w1-late", 130)])
    assert messages(logs.query(LogQuery(service="web"))) == ["w1", "w2", "w1-late"]
    assert messages(logs.query(LogQuery(service="web", release=2))) == ["w2"]
    assert messages(logs.query(LogQuery(instance="web-a1"))) == ["w1", "w1-late"]
    assert messages(logs.query(LogQuery(stream="stderr"))) == ["w2"]
    assert messages(logs.query(LogQuery(since=110, until=130))) == ["w2", "a1"]
    assert logs.query(LogQuery(instance="nobody")) == []


def test_grep_is_a_regular_expression_search(logs: LogStore) -> None:
    logs.append([line(WEB1, "GET /a 200"), line(WEB1, "GET /b 500"), line(WEB1, "POST /c 503")])
    assert messages(logs.query(LogQuery(grep=r" 5\d\d$"))) == ["GET /b 500", "POST /c 503"]


def test_the_limit_keeps_the_newest_lines_oldest_first(logs: LogStore) -> None:
    logs.append([line(WEB1, str(n), 100 + n) for n in range(10)])
    assert messages(logs.query(LogQuery(limit=3))) == ["7", "8", "9"]


def test_following_returns_the_lines_after_an_id_in_arrival_order(logs: LogStore) -> None:
    first = logs.append([line(WEB1, "old")])
    logs.append([line(WEB1, "new1"), line(API1, "other"), line(WEB1, "new2")])
    assert messages(logs.query(LogQuery(service="web", after_id=first))) == ["new1", "new2"]


def test_cursors_move_with_the_lines_they_account_for(logs: LogStore) -> None:
    assert logs.cursor("web-a1", "stdout") is None
    logs.append([line(WEB1, "x")], [Cursor("web-a1", "stdout", 2)])
    logs.append([], [Cursor("web-a1", "stdout", 10, done=True), Cursor("web-a1", "stderr", 0)])
    assert logs.cursor("web-a1", "stdout") == Cursor("web-a1", "stdout", 10, True)
    assert logs.cursor("web-a1", "stderr") == Cursor("web-a1", "stderr", 0, False)


def test_retention_by_age_drops_older_lines(logs: LogStore) -> None:
    logs.append([line(WEB1, str(n), float(n)) for n in range(10)])
    result = logs.prune(older_than=7.0)
    assert result.deleted == 7 and result.kept == 3
    assert messages(logs.query(LogQuery())) == ["7", "8", "9"]


def test_retention_by_count_keeps_the_newest_lines(logs: LogStore) -> None:
    logs.append([line(WEB1, str(n), float(n)) for n in range(10)])
    assert logs.prune(older_than=None, max_lines=4).kept == 4
    assert messages(logs.query(LogQuery())) == ["6", "7", "8", "9"]
    assert logs.count() == 4


def test_retention_by_size_shrinks_a_large_store(logs: LogStore) -> None:
    logs.append([line(WEB1, "x" * 500, float(n)) for n in range(2000)])
    result = logs.prune(older_than=None, max_bytes=200_000)
    assert 0 < result.kept < 2000 and result.deleted == 2000 - result.kept
    newest = logs.query(LogQuery(limit=1))
    assert newest[0].at == 1999.0  # the oldest lines go first
