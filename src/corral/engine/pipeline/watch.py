"""`corral watch`: follow the pipeline's branch. A poller looks at the branch's head every
`poll` (or at once when a signed webhook says a push happened); a runner takes one commit
at a time. A head seen before is never run again, so after `corral rollback` the branch
does not redeploy what was rolled back: only a newer commit moves an environment.

The controller's push webhook (engine/pipeline/pushes.py) reuses this queue without the
poll: it looks only when a push arrives, and runs each commit in a child process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from corral.core.pipeline import Queue, enqueue
from corral.engine.pipeline.run import Pipeline
from corral.errors import CorralError

log = logging.getLogger(__name__)


RunCommit = Callable[[str, str], object]
"""Run the pipeline for (commit, trigger) and return once the run ended."""


class Watcher:
    def __init__(self, pipeline: Pipeline, run: RunCommit | None = None,
                 polls: bool = True) -> None:
        """`run` defaults to the pipeline's own run in this process; without `polls` the
        branch is looked at only when a push arrives (push_received)."""
        self.pipeline = pipeline
        self.run_commit: RunCommit = run or pipeline.run
        self.polls = polls
        self.queue = Queue()
        self.lock = threading.Lock()
        self.wake = threading.Event()  # a webhook or stop ends the poller's wait at once
        self.work = threading.Event()  # a commit is waiting
        self.stopping = threading.Event()
        self._head_file = pipeline.folder / "watched-head"
        self._trigger = "poll"  # what made the next look happen
        self._waiting_trigger = "poll"  # what found the waiting commit
        self.threads = [threading.Thread(target=self._poll, name="pipeline-poll", daemon=True),
                        threading.Thread(target=self._runner, name="pipeline-run", daemon=True)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.work.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def push_received(self) -> None:
        """A signed push arrived: look at the branch now."""
        self._trigger = "webhook"
        self.wake.set()

    def check(self) -> str | None:
        """Look at the branch's head once; queue it if it was never seen. The new head."""
        trigger, self._trigger = self._trigger, "poll"
        head = self.pipeline.source.head()
        if head == self._last_seen():
            return None
        self._head_file.parent.mkdir(parents=True, exist_ok=True)
        self._head_file.write_text(head)
        with self.lock:
            self.queue, superseded = enqueue(self.queue, head)
            self._waiting_trigger = trigger
        if superseded is not None:
            self.pipeline.supersede(superseded, by=head)
            self.pipeline.say(f"commit {superseded[:12]} superseded by {head[:12]}")
        self.work.set()
        return head

    def _last_seen(self) -> str | None:
        try:
            return self._head_file.read_text().strip() or None
        except OSError:
            return None

    def _poll(self) -> None:
        every = self.pipeline.spec.poll if self.polls else None
        woke = False
        while not self.stopping.is_set():
            if self.polls or woke:
                try:
                    self.check()
                except CorralError as exc:
                    log.warning("watch: %s", exc.message)
            woke = self.wake.wait(every)
            self.wake.clear()

    def _runner(self) -> None:
        while not self.stopping.is_set():
            self.work.wait()
            self.work.clear()
            with self.lock:
                commit, trigger = self.queue.waiting, self._waiting_trigger
                self.queue = Queue(running=commit)
            if commit is None or self.stopping.is_set():
                continue
            try:
                self.run_commit(commit, trigger)
            except CorralError as exc:
                self.pipeline.say(f"run of {commit[:12]} failed: {exc.message}")
            finally:
                with self.lock:
                    self.queue = Queue(waiting=self.queue.waiting)
                    if self.queue.waiting:
                        self.work.set()
