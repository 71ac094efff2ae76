"""The controller's push webhook: a signed push to the [pipeline] branch (POST
/v1/pipeline/push, api/pipeline_routes.py) runs the pipeline for the new head at once,
without polling.

The queue is the watcher's (engine/pipeline/watch.py, core/pipeline.py): a head seen before
is never run again (so a rollback stands), a newer push supersedes a commit still waiting,
one run at a time, and each run's deploy and promote stages refuse a commit older than
what is live. Each run is a detached child `corral pipeline run COMMIT` (its output
appended to .corral/pipeline/pushes.log): the run drives every environment's controller
through its API exactly as a run from a terminal does, and a controller that stops or
restarts leaves a run in progress to finish. The secret is CORRAL_WEBHOOK_SECRET in the
controller's environment; without it every push is refused (401).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from corral.engine.pipeline.run import Pipeline
from corral.engine.pipeline.watch import Watcher
from corral.engine.workspace import Workspace

log = logging.getLogger(__name__)

SECRET_VARIABLE = "CORRAL_WEBHOOK_SECRET"
LOG_NAME = "pushes.log"


class PushTrigger:
    """The controller's loop that turns signed pushes into pipeline runs."""

    def __init__(self, ws: Workspace, secret: bytes) -> None:
        self.ws = ws
        self.secret = secret
        self.pipeline = Pipeline(ws, None, say=lambda line: log.info("pipeline: %s", line))
        self.branch = self.pipeline.spec.branch
        self.watcher = Watcher(self.pipeline, run=self._run_child, polls=False)

    @classmethod
    def of(cls, ws: Workspace) -> PushTrigger | None:
        """The trigger of a spec with a [pipeline] (None without one)."""
        if ws.loaded.spec.pipeline is None:
            return None
        return cls(ws, os.environ.get(SECRET_VARIABLE, "").encode())

    def start(self) -> None:
        self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()

    def push_received(self) -> None:
        """A signed push to the branch: look at its head now (queued if never seen)."""
        self.watcher.push_received()

    def _run_child(self, commit: str, trigger: str) -> int | None:
        """`corral pipeline run COMMIT` in its own session; returns its exit code once it
        ends, or None when the controller stops first (the run goes on without it)."""
        log_path = self.pipeline.folder / LOG_NAME
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "corral", "--file", str(self.ws.loaded.path),
                   "pipeline", "run", commit, "--trigger", trigger]
        with open(log_path, "ab") as out:
            child = subprocess.Popen(command, cwd=self.ws.folder, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.info("pipeline: run of %s started by a push (pid %d, log %s)", commit[:12],
                 child.pid, log_path)
        while not self.watcher.stopping.is_set():
            try:
                return child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
        return None
