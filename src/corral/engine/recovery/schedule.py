"""Scheduled backups: the controller takes a backup every `[project] backup.every` and keeps
the newest `keep` in its folder, deleting older scheduled ones. It never deletes a file it
did not write (only PROJECT-TIME.tar.gz names in that folder)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from corral.engine.loop import WALL, BackgroundLoop, Timer
from corral.engine.recovery.backup import default_backup_name, take_backup
from corral.engine.workspace import Workspace
from corral.spec.model import BackupSchedule

log = logging.getLogger(__name__)


class ScheduledBackups:
    """A controller loop: one backup per period, then retention."""

    def __init__(self, ws: Workspace, schedule: BackupSchedule, *, timer: Timer = WALL,
                 clock: Callable[[], float] = time.time) -> None:
        self._ws = ws
        self._schedule = schedule
        self._clock = clock
        self.folder = ws.folder / schedule.folder
        self._loop = BackgroundLoop("backups", self._take, schedule.every, timer=timer,
                                    what="scheduled backup")

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop(timeout=60)

    @property
    def passes(self) -> int:
        return self._loop.passes

    def _take(self) -> None:
        taken_at = self._clock()
        report = take_backup(self._ws, self.folder / default_backup_name(self._ws, taken_at),
                             now=taken_at)
        log.info("scheduled backup %s (%s bytes)", report["file"], report["bytes"])
        for old in self.backups()[:-self._schedule.keep]:
            old.unlink(missing_ok=True)
            log.info("deleted backup %s (keep = %d)", old, self._schedule.keep)

    def backups(self) -> list[Path]:
        """The scheduled backups in the folder, oldest first (names sort by time)."""
        prefix = f"{self._ws.loaded.spec.project.name}-"
        return sorted(p for p in self.folder.glob(f"{prefix}*.tar.gz")
                      if p.name[len(prefix):len(prefix) + 8].isdigit())
