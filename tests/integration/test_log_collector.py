"""The log collector against real files written by real processes, moved the way the process
driver moves them when an instance stops; the SQLite log store underneath."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.engine.observe.logs import MISSING_GRACE, LogCollector, Watched
from corral.observe.logstore import SqliteLogStore
from corral.ports.logs import Cursor, LogQuery, LogSource

pytestmark = pytest.mark.integration

WRITER = """
import json, sys
n = int(sys.argv[1])
for i in range(n):
    print(f"line {i}", flush=(i % 500 == 0))
    if i % 1000 == 0:
        print(json.dumps({"level": "info", "i": i}), file=sys.stderr, flush=True)
sys.stdout.write("no newline at the end")
"""


class Instances:
    """Instance folders like the process driver's: run/instances/ID, then logs/ID."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.live: dict[str, LogSource] = {}

    def paths_of(self, instance_id: str) -> tuple[Path, Path]:
        live = self.root / "run" / instance_id
        base = live if live.is_dir() else self.root / "logs" / instance_id
        return base / "stdout.log", base / "stderr.log"

    def watched(self) -> list[Watched]:
        return [Watched(source) for source in self.live.values()]

    def start(self, instance_id: str, lines: int) -> subprocess.Popen[bytes]:
        folder = self.root / "run" / instance_id
        folder.mkdir(parents=True)
        self.live[instance_id] = LogSource(instance_id, "web", 1, "sha256:" + "a" * 64, "c0ffee")
        with open(folder / "stdout.log", "wb") as out, open(folder / "stderr.log", "wb") as err:
            return subprocess.Popen([sys.executable, "-c", WRITER, str(lines)], stdout=out,
                                    stderr=err)

    def retire(self, instance_id: str) -> None:
        """What ProcessDriver.stop does: move the logs, remove the folder, forget it."""
        kept = self.root / "logs" / instance_id
        kept.mkdir(parents=True)
        for name in ("stdout.log", "stderr.log"):
            os.replace(self.root / "run" / instance_id / name, kept / name)
        (self.root / "run" / instance_id).rmdir()
        del self.live[instance_id]


@pytest.fixture
def instances(tmp_path: Path) -> Instances:
    return Instances(tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteLogStore]:
    made = SqliteLogStore(tmp_path / "logs.db")
    yield made
    made.close()


def collector(store: SqliteLogStore, instances: Instances, **kwargs: object) -> LogCollector:
    return LogCollector(store, instances.watched, instances.paths_of, time.time,
                        interval=0.05, settle=0.0, **kwargs)  # type: ignore[arg-type]


def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def stdout_lines(store: SqliteLogStore, instance: str) -> list[str]:
    return [line.message for line in
            store.query(LogQuery(instance=instance, stream="stdout", limit=10**7))]


def test_every_line_of_an_instance_that_died_and_was_moved_is_stored_once(
        store: SqliteLogStore, instances: Instances) -> None:
    loop = collector(store, instances)
    loop.start()
    try:
        writer = instances.start("web-1", 20_000)
        until(lambda: store.count() > 0)  # the collector holds the files open by now
        writer.wait(timeout=60)
        instances.retire("web-1")
        expected = [f"line {i}" for i in range(20_000)] + ["no newline at the end"]
        until(lambda: store.cursor("web-1", "stdout") is not None
              and store.cursor("web-1", "stdout").done)  # type: ignore[union-attr]
    finally:
        loop.stop()
    assert stdout_lines(store, "web-1") == expected


def test_json_lines_are_parsed_into_fields_and_tagged_with_their_source(
        store: SqliteLogStore, instances: Instances) -> None:
    instances.start("web-2", 2500).wait(timeout=60)
    loop = collector(store, instances)
    loop.tick()
    errors = store.query(LogQuery(instance="web-2", stream="stderr"))
    assert [line.fields for line in errors] == [{"level": "info", "i": i} for i in (0, 1000, 2000)]
    source = errors[0].source
    assert (source.service, source.release, source.git_commit) == ("web", 1, "c0ffee")


def test_a_new_collector_resumes_where_the_last_one_stopped_without_repeating(
        store: SqliteLogStore, instances: Instances) -> None:
    writer = instances.start("web-3", 30_000)
    first = collector(store, instances)
    first.tick()
    first.stop()  # a controller restart while the app keeps writing
    writer.wait(timeout=60)
    second = collector(store, instances)
    second.tick()
    instances.retire("web-3")
    second.tick()
    second.tick()
    assert stdout_lines(store, "web-3") == [f"line {i}" for i in range(30_000)] + [
        "no newline at the end"]


def test_instances_that_ended_while_no_collector_ran_are_drained_at_start(
        store: SqliteLogStore, instances: Instances) -> None:
    instances.start("web-4", 100).wait(timeout=60)
    source = instances.live["web-4"]
    instances.retire("web-4")
    loop = collector(store, instances, backlog=lambda: [Watched(source, ended_at=50.0)])
    loop.start()
    try:
        until(lambda: len(stdout_lines(store, "web-4")) == 101)
    finally:
        loop.stop()
    assert {line.at for line in store.query(LogQuery(instance="web-4"))} == {50.0}
    loop.drain([Watched(source, ended_at=50.0)])  # done: nothing is read twice
    assert len(stdout_lines(store, "web-4")) == 101


def test_a_long_lived_instances_files_keep_only_their_recent_stored_part_on_disk(
        store: SqliteLogStore, instances: Instances) -> None:
    """~4.5 MB written by a running process: what is stored is freed (a hole) but the last
    `keep` bytes (8 MiB by default, 1 MiB here); every line still reaches the store exactly
    once, in order."""
    lines, pad, keep, step = 50_000, "x" * 80, 1 << 20, 512 << 10
    folder = instances.root / "run" / "web-4"
    folder.mkdir(parents=True)
    instances.live["web-4"] = LogSource("web-4", "web", 1, "sha256:" + "a" * 64, "c0ffee")
    path = instances.paths_of("web-4")[0]
    script = f"for i in range({lines}):\n    print(f'line {{i}} {pad}')\n"
    with open(path, "wb") as out:
        chatty = subprocess.Popen([sys.executable, "-c", script], stdout=out)
    loop = collector(store, instances, keep_on_disk=keep, free_step=step)
    loop.start()
    try:
        chatty.wait(timeout=120)
        until(lambda: len(stdout_lines(store, "web-4")) >= lines)
        until(lambda: path.stat().st_blocks * 512 < keep + 2 * step)
        size = path.stat().st_size
        assert size > 4 << 20
        with open(path, "rb") as handle:  # the freed part reads as zeros; the rest is intact
            assert handle.read(4096) == bytes(4096)
            handle.seek(size - 4096)
            assert handle.read().endswith(f"line {lines - 1} {pad}\n".encode())
        with open(path, "ab") as out:  # the app goes on writing after the hole
            out.write(b"after the hole\n")
        until(lambda: stdout_lines(store, "web-4")[-1] == "after the hole")
    finally:
        loop.stop()
    assert stdout_lines(store, "web-4") == [f"line {i} {pad}" for i in range(lines)] + [
        "after the hole"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_instance_listed_for_one_pass_only_is_read_to_the_end_after_it_left(
        store: SqliteLogStore, instances: Instances) -> None:
    """An app that died at start: listed once (the fleet told the collector it was added),
    already exited and its files moved before the collector read a byte."""
    instances.start("web-5", 300).wait(timeout=60)
    source = instances.live["web-5"]
    instances.retire("web-5")
    listed = [Watched(source)]
    clock = Clock()
    loop = LogCollector(store, lambda: listed, instances.paths_of, clock, settle=1.0)
    loop.tick()
    listed.clear()  # it left the fleet
    clock.now += 0.5
    loop.tick()  # gone from now on; read up to its last complete line
    assert store.cursor("web-5", "stdout").done is False  # type: ignore[union-attr]
    clock.now += 1.0  # settled
    loop.tick()
    assert stdout_lines(store, "web-5") == [f"line {i}" for i in range(300)] + [
        "no newline at the end"]
    assert store.cursor("web-5", "stdout").done  # type: ignore[union-attr]


def test_a_file_being_moved_at_the_last_pass_is_read_later_not_marked_done_unread(
        store: SqliteLogStore, instances: Instances) -> None:
    instances.start("web-6", 50).wait(timeout=60)
    source = instances.live["web-6"]
    listed = [Watched(source)]
    clock = Clock()
    loop = LogCollector(store, lambda: listed, instances.paths_of, clock, settle=0.0)
    aside = instances.root / "aside"
    aside.mkdir()
    for name in ("stdout.log", "stderr.log"):  # the driver is half-way through retire()
        os.replace(instances.root / "run" / "web-6" / name, aside / name)
    loop.tick()  # listed, but its files are not where they were, nor where they go yet
    listed.clear()
    loop.tick()  # its last pass: still not there
    assert store.cursor("web-6", "stdout") is None or \
        not store.cursor("web-6", "stdout").done  # type: ignore[union-attr]
    (instances.root / "logs").mkdir(exist_ok=True)
    os.replace(aside, instances.root / "logs" / "web-6")
    (instances.root / "run" / "web-6").rmdir()
    clock.now += 0.5
    loop.tick()
    assert len(stdout_lines(store, "web-6")) == 51
    assert store.cursor("web-6", "stdout").done  # type: ignore[union-attr]


def test_a_file_that_never_appears_is_given_up_after_a_grace(
        store: SqliteLogStore, instances: Instances) -> None:
    source = LogSource("web-7", "web", 1, "sha256:" + "a" * 64)
    listed = [Watched(source)]
    clock = Clock()
    loop = LogCollector(store, lambda: listed, instances.paths_of, clock, settle=0.0)
    loop.tick()
    listed.clear()
    loop.tick()
    clock.now += MISSING_GRACE
    loop.tick()
    assert store.cursor("web-7", "stdout") == Cursor("web-7", "stdout", 0, True)
