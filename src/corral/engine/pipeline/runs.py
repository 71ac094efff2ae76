"""Pipeline run records: one JSON file per run under `.corral/pipeline/runs/`, written
whole (write then rename) by the process running it; approvals are marker files another
process (`corral approve RUN`) drops beside it. `corral pipeline status` reads them."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from corral.errors import NotFound


@dataclass
class StageRecord:
    index: int
    kind: str
    env: str | None
    outcome: str = "pending"  # pending, running, waiting, passed, failed, skipped
    started_at: float | None = None
    seconds: float | None = None
    reason: str | None = None
    digests: dict[str, str] = field(default_factory=dict)


@dataclass
class RunRecord:
    id: int
    commit: str
    trigger: str  # "manual", "poll", "webhook"
    created_at: float
    commit_time: float | None = None
    state: str = "queued"  # queued, running, waiting, succeeded, failed, skipped, superseded
    ended_at: float | None = None
    stages: list[StageRecord] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return asdict(self)


class RunBook:
    def __init__(self, folder: Path) -> None:
        self.folder = folder / "runs"

    def new(self, commit: str, trigger: str, at: float, kinds: list[tuple[str, str | None]],
            state: str = "queued") -> RunRecord:
        """A new run with the next id (taken with O_EXCL: two processes never share one)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        number = max(self.ids(), default=0) + 1
        while True:
            try:
                os.close(os.open(self._path(number), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                break
            except FileExistsError:
                number += 1
        run = RunRecord(number, commit, trigger, at, state=state, stages=[
            StageRecord(n, kind, env) for n, (kind, env) in enumerate(kinds)])
        self.save(run)
        return run

    def save(self, run: RunRecord) -> None:
        path = self._path(run.id)
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(run.view(), indent=1))
        os.replace(scratch, path)

    def get(self, run_id: int) -> RunRecord:
        try:
            data = json.loads(self._path(run_id).read_text())
        except (OSError, ValueError):
            raise NotFound(f"no pipeline run {run_id}",
                           hint="corral pipeline status lists the runs") from None
        stages = [StageRecord(**s) for s in data.pop("stages")]
        return RunRecord(**data, stages=stages)

    def ids(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        return sorted(int(p.stem) for p in self.folder.glob("*.json") if p.stem.isdigit())

    def all(self) -> list[RunRecord]:
        runs = []
        for run_id in self.ids():
            with contextlib.suppress(NotFound):  # being created right now
                runs.append(self.get(run_id))
        return runs

    def approve(self, run_id: int, actor: str) -> None:
        run = self.get(run_id)
        if run.state != "waiting":
            raise NotFound(f"pipeline run {run_id} is not waiting for approval ({run.state})",
                           hint="corral pipeline status shows which runs wait")
        self._approval(run_id).write_text(actor)

    def approved_by(self, run_id: int) -> str | None:
        path = self._approval(run_id)
        if not path.exists():
            return None
        actor = path.read_text()
        path.unlink()  # one approval opens one gate
        return actor

    def _path(self, run_id: int) -> Path:
        return self.folder / f"{run_id}.json"

    def _approval(self, run_id: int) -> Path:
        return self.folder / f"{run_id}.approved"
