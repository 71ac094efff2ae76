"""The watcher's queue as the controller's push webhook uses it (engine/pipeline/pushes.py):
no poll, a look at the branch only when a push arrives, one run at a time, and a newer push
supersedes a commit still waiting. The pipeline's git side is a stand-in (pure queueing
logic; tests/e2e/test_pipeline_cli.py drives the real one through a real controller)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from corral.engine.pipeline.watch import Watcher
from loopback import poll


class _Branch:
    def __init__(self, head: str) -> None:
        self.head_now, self.looks = head, 0

    def head(self) -> str:
        self.looks += 1
        return self.head_now


def _watcher(tmp_path: Path, branch: _Branch, runs: list[tuple[str, str]],
             release: threading.Event) -> tuple[Watcher, list[tuple[str, str]]]:
    superseded: list[tuple[str, str]] = []
    pipeline: Any = SimpleNamespace(
        source=branch, folder=tmp_path, spec=SimpleNamespace(poll=0.01), say=lambda _: None,
        supersede=lambda commit, by: superseded.append((commit, by)))

    def run(commit: str, trigger: str) -> None:
        runs.append((commit, trigger))
        release.wait(30)

    return Watcher(pipeline, run=run, polls=False), superseded


def test_without_polls_a_push_is_the_only_look_and_a_newer_push_supersedes(
        tmp_path: Path) -> None:
    branch, release = _Branch("a" * 40), threading.Event()
    runs: list[tuple[str, str]] = []
    watcher, superseded = _watcher(tmp_path, branch, runs, release)
    watcher.start()
    try:
        watcher.push_received()
        poll(lambda: runs == [("a" * 40, "webhook")], 10, "a's run")
        assert branch.looks == 1  # no look at start, none on a clock: only the push's
        for head in ("b" * 40, "c" * 40):  # b waits behind a, then c replaces it
            branch.head_now = head
            watcher.push_received()
            poll(lambda h=head: (tmp_path / "watched-head").read_text() == h, 10,
                 f"the push of {head[:1]} seen")
        assert superseded == [("b" * 40, "c" * 40)]
        watcher.push_received()  # the same head again: never run twice
        release.set()
        poll(lambda: len(runs) == 2, 10, "c's run")
        assert runs == [("a" * 40, "webhook"), ("c" * 40, "webhook")]
    finally:
        release.set()
        watcher.stop()
