"""Scheduled backups on virtual time: one per period, the newest `keep` kept, each whole;
files the schedule did not write are never deleted."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from corral.engine.loop import FakeTimer
from corral.engine.recovery.backup import verify_backup
from corral.engine.recovery.schedule import ScheduledBackups
from corral.engine.workspace import Workspace
from corral.errors import SpecError
from loopback import poll

pytestmark = pytest.mark.integration

SPEC = """\
[project]
name = "shop"
backup = { every = "1h", keep = 2, folder = "saved" }
"""


def test_one_backup_per_period_and_only_the_newest_are_kept(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text(SPEC)
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "notes.tar.gz").write_text("not a scheduled backup")
    ws = Workspace.open(tmp_path / "corral.toml")
    schedule = ws.loaded.spec.project.backup
    assert schedule is not None and schedule.every == 3600
    timer = FakeTimer()
    hours = itertools.count(1_700_000_000, 3600)
    backups = ScheduledBackups(ws, schedule, timer=timer, clock=lambda: float(next(hours)))
    backups.start()
    try:
        assert backups.passes == 0  # nothing before the first period
        for taken in range(1, 5):
            timer.advance(3600)
            poll(lambda n=taken: backups.passes == n, 30, f"backup {taken}")
    finally:
        backups.stop()
    kept = backups.backups()
    assert [p.name for p in kept] == ["shop-20231115T001320000000Z.tar.gz",
                                      "shop-20231115T011320000000Z.tar.gz"]
    assert all(verify_backup(p).manifest["project"] == "shop" for p in kept)
    assert (tmp_path / "saved" / "notes.tar.gz").exists()
    taken = [e for e in ws.store.events() if e.action == "backup.taken"]
    assert len(taken) == 4


def test_a_schedule_without_a_period_is_a_spec_error(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text(SPEC.replace('every = "1h", ', ""))
    with pytest.raises(SpecError, match="every"):
        Workspace.open(tmp_path / "corral.toml")
