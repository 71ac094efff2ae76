"""One pipeline run: a commit checked out into a clean work tree, then its stages in order,
each recorded in the run record and as a `pipeline.stage` ledger entry (commit, digests,
seconds, outcome). The first stage that does not pass ends the run: nothing after a failed
test deploys, nothing after a failed smoke check promotes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from corral.core.pipeline import run_outcome
from corral.engine.pipeline import stages
from corral.engine.pipeline.runs import RunBook, RunRecord, StageRecord
from corral.engine.pipeline.source import Source
from corral.engine.workspace import Workspace, current_actor
from corral.errors import CorralError
from corral.ports.records import Event
from corral.spec.pipeline import PipelineSpec, StageSpec

Say = Callable[[str], None]


class Pipeline:
    """The project's [pipeline]: its source, run records and how stages reach controllers."""

    def __init__(self, ws: Workspace, deliverer: stages.Deliverer | None,
                 say: Say | None = None,
                 approval_poll: float = 0.2) -> None:
        if ws.loaded.spec.pipeline is None:
            raise CorralError(f"{ws.loaded.path.name} has no [pipeline] section",
                              hint="docs/spec.md's [pipeline] shows one")
        self.ws = ws
        self.spec: PipelineSpec = ws.loaded.spec.pipeline
        self.folder = ws.image_dir / "pipeline"
        url = self.spec.source
        if "://" not in url and not url.startswith(("git@", "/")):
            url = str((ws.folder / url).resolve())
        self.source = Source(url, self.spec.branch, self.folder)
        self.runs = RunBook(self.folder)
        self.deliverer = deliverer
        self.say = say or (lambda _: None)
        self.approval_poll = approval_poll
        self._ledger_env = next((s.env for s in self.spec.stages if s.env), None)

    def new_run(self, commit: str, trigger: str, state: str = "queued") -> RunRecord:
        return self.runs.new(commit, trigger, time.time(),
                             [(s.kind, s.env) for s in self.spec.stages], state)

    def run(self, commit: str | None = None, trigger: str = "manual",
            record: RunRecord | None = None) -> RunRecord:
        """Resolve `commit` (None: the branch's head), check it out and run every stage."""
        full = self.source.resolve(commit)
        run = record or self.new_run(full, trigger)
        run.commit, run.state = full, "running"
        run.commit_time = self.source.commit_time(full)
        self.runs.save(run)
        self.say(f"run {run.id}: commit {full[:12]}")
        checkout = stages.Checkout(self.source.checkout(full, self.folder / "work" / str(run.id)),
                                   full, self.ws.image_dir, self.source)
        outcomes = []
        for spec, stage in zip(self.spec.stages, run.stages, strict=True):
            outcome = self._stage(run, checkout, spec, stage)
            outcomes.append(outcome)
            if outcome != "passed":
                break
        run.state, run.ended_at = run_outcome(outcomes), time.time()
        self.runs.save(run)
        self.say(f"run {run.id}: {run.state}")
        return run

    def supersede(self, commit: str, by: str) -> RunRecord:
        """Record that `commit` was queued and then replaced by the newer `by`."""
        run = self.new_run(commit, "poll", "superseded")
        run.ended_at = time.time()
        for stage in run.stages:
            stage.outcome, stage.reason = "skipped", f"superseded by {by[:12]}"
        self.runs.save(run)
        return run

    def _stage(self, run: RunRecord, checkout: stages.Checkout, spec: StageSpec,
               stage: StageRecord) -> str:
        if spec.approve:
            self._await_approval(run, stage)
        stage.outcome, stage.started_at = "running", time.time()
        self.runs.save(run)
        started = time.monotonic()
        try:
            outcome, reason, digests = self._carry_out(run, checkout, spec)
        except CorralError as exc:
            outcome, reason, digests = "failed", exc.message, {}
        stage.outcome, stage.reason, stage.digests = outcome, reason, digests
        stage.seconds = round(time.monotonic() - started, 3)
        self.runs.save(run)
        self._record(run, spec, stage)
        self.say(f"  {stages.stage_tag(spec)}: {outcome} in {stage.seconds:.2f} s"
                 + (f" ({reason})" if reason else ""))
        return outcome

    def _carry_out(self, run: RunRecord, checkout: stages.Checkout,
                   spec: StageSpec) -> stages.Result:
        if spec.kind == "build":
            return stages.build(checkout, self._ledger_env)
        if spec.kind == "test":
            return stages.test(checkout, spec, self._ledger_env, run.id)
        if spec.kind == "smoke":
            return stages.smoke(checkout, spec)
        if self.deliverer is None:  # the controller's push queue runs commits in a child
            raise CorralError(f"this process cannot {spec.kind}: it has no way to reach "
                              "the environments' controllers", hint="run it with `corral "
                              "pipeline run`")
        if spec.kind == "deploy":
            return stages.deploy(checkout, spec, self.deliverer)
        return stages.promote(checkout, spec, self.deliverer)

    def _await_approval(self, run: RunRecord, stage: StageRecord) -> None:
        stage.outcome, run.state = "waiting", "waiting"
        self.runs.save(run)
        self.say(f"  run {run.id} waits for approval: corral approve {run.id}")
        while (actor := self.runs.approved_by(run.id)) is None:
            time.sleep(self.approval_poll)
        run.state, stage.reason = "running", f"approved by {actor}"

    def _record(self, run: RunRecord, spec: StageSpec, stage: StageRecord) -> None:
        """The stage's ledger entry, in the ledger of the environment it acted on (build
        and test: the first environment the pipeline names)."""
        ws = Workspace.open(self.ws.loaded.path, spec.env or self._ledger_env,
                            self.ws.state_root)
        ws.store.append_event(Event(
            at=time.time(), actor=current_actor(), action="pipeline.stage",
            subject=f"pipeline/{run.id}", detail={
                "run": run.id, "commit": run.commit, "stage": stage.index, "kind": spec.kind,
                "environment": spec.env, "digests": stage.digests, "seconds": stage.seconds,
                "outcome": stage.outcome, "reason": stage.reason}))


def pipeline_folder(ws: Workspace) -> Path:
    return ws.image_dir / "pipeline"
