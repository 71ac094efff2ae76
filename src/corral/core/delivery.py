"""What every strategy shares: the deployment's progress, the observations, the decision,
and the retreat (putting all traffic back on the previous fleet and stopping the new one).

A strategy is a pure function (target, progress, observation) -> decision. The engine saves
the decision's progress *before* it executes the steps, and the steps are idempotent
(they compare wanted with observed), so a controller killed at any point resumes by calling
the strategy again with what it saved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from corral.core.steps import AwaitHealthy, DrainAndStop, SetWeights, StartInstances, Step
from corral.ports.records import DeploymentOutcome, Instance, InstanceState, ReleaseStats


@dataclass(frozen=True)
class Target:
    """Where a deployment goes (`release`) and where it came from (`previous`)."""

    release: int
    previous: int | None
    replicas: int
    start_timeout: float  # seconds a new instance has to become ready


@dataclass(frozen=True)
class Progress:
    """A deployment's saved position. Every field is plain JSON data."""

    phase: str = "start"
    step: int = 0  # canary: index into its weight steps
    window_start: float = 0.0  # canary: when the current analysis window began
    baseline: dict[str, Any] = field(default_factory=dict)  # label -> stats JSON at window start
    failures: int = 0  # canary: consecutive failed analyses
    promoted: bool = False
    outcome: str | None = None  # the outcome a retreat ends with
    reason: str | None = None
    weights: dict[str, int] | None = None  # the fleet weights asked for last ("2" -> 90)
    holder: str = ""  # who holds the service's deploy lock, so a resumed deployment can take it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Progress:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def retreating(self, outcome: DeploymentOutcome, reason: str) -> Progress:
        return replace(self, phase="retreat", outcome=outcome.value, reason=reason)


@dataclass(frozen=True)
class Observation:
    instances: tuple[Instance, ...]
    now: float
    stats: Mapping[str, ReleaseStats] = field(default_factory=dict)
    promote: bool = False  # `corral promote` was asked
    abort: bool = False  # `corral abort` was asked


@dataclass(frozen=True)
class Decision:
    progress: Progress
    steps: tuple[Step, ...] = ()
    outcome: DeploymentOutcome | None = None  # set: the deployment ends once steps ran
    reason: str | None = None


def fleet(instances: Sequence[Instance], release: int | None) -> list[Instance]:
    """The live, not draining, instances of one release."""
    return [i for i in instances if i.release == release and i.state.is_live
            and i.state is not InstanceState.DRAINING]


def ready(instances: Sequence[Instance]) -> list[Instance]:
    return [i for i in instances if i.state is InstanceState.READY]


def pinned_on(live: int | None) -> dict[int, int] | None:
    """Fleet weights that keep all traffic on the live fleet, so new instances get none
    until a strategy moves it (canary, blue-green); None (equal weights) with no live fleet.

    >>> pinned_on(3), pinned_on(None)
    ({3: 100}, None)
    """
    return None if live is None else {live: 100}


def weights_step(weights: Mapping[int, int]) -> tuple[SetWeights, dict[str, int]]:
    """The step and its JSON form (progress keeps release numbers as strings)."""
    return SetWeights(dict(weights)), {str(k): v for k, v in weights.items()}


def start_failure(release: int, instances: Sequence[Instance], now: float,
                  start_timeout: float, since: float = -math.inf) -> str | None:
    """Why the release's new instances cannot become ready, if they cannot."""
    for instance in instances:
        if instance.release != release or instance.created_at < since:
            continue
        if instance.state is InstanceState.FAILED:
            return f"instance {instance.id} failed: {instance.reason or 'exited'}"
        if (instance.state is InstanceState.STARTING
                and now - instance.created_at > start_timeout):
            why = f": {instance.reason}" if instance.reason else ""
            return (f"instance {instance.id} did not pass its health check within "
                    f"{start_timeout:g}s{why}")
    return None


def scale_to(release: int, count: int, instances: Sequence[Instance]) -> list[Step]:
    """Start what is missing of `count` live instances of `release`, else wait for them."""
    live = fleet(instances, release)
    if len(live) < count:
        return [StartInstances(release, count - len(live))]
    waiting = tuple(i.id for i in live if i.state is not InstanceState.READY)
    return [AwaitHealthy(waiting)] if waiting else []


def interruption(target: Target, progress: Progress, obs: Observation) -> Decision | None:
    """What takes over from a strategy's own steps: a retreat already under way, an abort,
    or a new instance that failed to start (the latter two begin a retreat). None when the
    strategy may go on."""
    if progress.phase == "retreat":
        return retreat(target, progress, obs)
    if obs.abort:
        return retreat(target, progress.retreating(DeploymentOutcome.ABORTED,
                                                   "aborted by `corral abort`"), obs)
    failure = start_failure(target.release, obs.instances, obs.now, target.start_timeout)
    if failure:
        return retreat(target, progress.retreating(DeploymentOutcome.ROLLED_BACK, failure), obs)
    return None


def retreat(target: Target, progress: Progress, obs: Observation) -> Decision:
    """All traffic back to the previous fleet at once, then stop the new fleet.

    The previous fleet is topped up to `replicas` first if it lost instances; the new fleet
    is stopped once the previous one can carry everything (the capacity invariant keeps
    traffic on new instances until then). With no previous release, the new fleet stops.
    """
    outcome = DeploymentOutcome(progress.outcome or DeploymentOutcome.ROLLED_BACK.value)
    steps: list[Step] = []
    new = fleet(obs.instances, target.release)
    if target.previous is not None:
        step, as_json = weights_step({target.previous: 100})
        if progress.weights != as_json:
            steps.append(step)
            progress = replace(progress, weights=as_json)
        old = fleet(obs.instances, target.previous)
        if len(ready(old)) < target.replicas:
            stuck = start_failure(target.previous, old, obs.now, target.start_timeout)
            if stuck:
                return Decision(progress, tuple(steps), DeploymentOutcome.FAILED,
                                f"{progress.reason}; the previous release did not come back: "
                                f"{stuck}")
            return Decision(progress, (*steps, *scale_to(target.previous, target.replicas,
                                                          obs.instances)))
    if new:
        steps.append(DrainAndStop(tuple(i.id for i in new), str(outcome.value)))
    if target.previous is None and outcome is DeploymentOutcome.ROLLED_BACK:
        outcome = DeploymentOutcome.FAILED  # nothing to roll back to
    return Decision(progress, tuple(steps), outcome, progress.reason)
