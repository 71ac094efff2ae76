"""The rolling strategy: replace instances a few at a time, never below the capacity floor.

`plan_rolling` looks at the instances of a service and returns the next steps toward
`replicas` ready instances of the target release and none of any other. It is also how
a failed deployment rolls back: the same plan, aimed at the previous release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

from corral.core.delivery import Decision, Observation, Progress, Target, retreat
from corral.core.steps import (
    AwaitHealthy,
    DrainAndStop,
    RollingPlan,
    StartInstances,
    Step,
    StopInstances,
)
from corral.ports.records import DeploymentOutcome, Instance, InstanceState


@dataclass(frozen=True)
class RollingTarget:
    release: int
    replicas: int
    max_surge: int
    max_unavailable: int
    start_timeout: float  # seconds a new instance has to become ready


def plan_rolling(target: RollingTarget, instances: Sequence[Instance], now: float) -> RollingPlan:
    """Next steps of a rolling deployment.

    Worked example: replicas=3, max_surge=1, max_unavailable=0, three ready v1 instances.
    The floor is 3 ready and the ceiling 4 instances, so the first plan starts one v2;
    when it is ready (4 ready), one v1 is drained and stopped (3 ready), which makes room
    to start the next v2, and so on until three v2 are ready and no v1 is left.
    """
    live = [i for i in instances if i.state.is_live and i.state is not InstanceState.DRAINING]
    new = [i for i in live if i.release == target.release]
    old = [i for i in live if i.release != target.release]

    failure = _failed_new_instance(target, new, instances, now)
    if failure:
        return RollingPlan(failure=failure)

    new_ready = [i for i in new if i.state is InstanceState.READY]
    if len(new_ready) >= target.replicas and not old:
        surplus = _surplus(new, target.replicas)
        if surplus:
            return RollingPlan(steps=(DrainAndStop(surplus, "more instances than replicas"),))
        return RollingPlan(done=True)

    steps: list[Step] = []
    old_idle = tuple(i.id for i in old if i.state is not InstanceState.READY)
    if old_idle:
        steps.append(StopInstances(old_idle, "replaced by the new release (not ready)"))
    old_ready = [i for i in old if i.state is InstanceState.READY]

    floor = target.replicas - target.max_unavailable
    available = len(new_ready) + len(old_ready)
    removable = max(0, min(len(old_ready), available - floor))
    if len(new_ready) >= target.replicas:
        removable = len(old_ready)  # the new fleet alone covers the floor
    if removable:
        steps.append(DrainAndStop(tuple(i.id for i in old_ready[:removable]),
                                  "replaced by the new release"))

    remaining = len(new) + len(old_ready) - removable
    ceiling = target.replicas + target.max_surge
    startable = min(target.replicas - len(new), ceiling - remaining)
    if startable > 0:
        steps.append(StartInstances(target.release, startable))

    if not steps:
        waiting = tuple(i.id for i in new if i.state is not InstanceState.READY)
        steps.append(AwaitHealthy(waiting))
    return RollingPlan(steps=tuple(steps))


def _failed_new_instance(target: RollingTarget, new: Sequence[Instance],
                         everything: Sequence[Instance], now: float) -> str | None:
    for instance in everything:
        if instance.release == target.release and instance.state is InstanceState.FAILED:
            return f"instance {instance.id} failed: {instance.reason or 'exited'}"
    for instance in new:
        waited = now - instance.created_at
        if instance.state is InstanceState.STARTING and waited > target.start_timeout:
            why = f": {instance.reason}" if instance.reason else ""
            return (f"instance {instance.id} did not pass its health check within "
                    f"{target.start_timeout:g}s{why}")
    return None


def _surplus(new: Sequence[Instance], replicas: int) -> tuple[str, ...]:
    # Keep the oldest ready instances; the surplus is whatever comes after them.
    ordered = sorted(new, key=lambda i: (i.state is not InstanceState.READY, i.created_at))
    return tuple(i.id for i in ordered[replicas:])


def next_rolling(target: Target, max_surge: int, max_unavailable: int, progress: Progress,
                 obs: Observation) -> Decision:
    """Rolling plans as a strategy: forward to the release; on failure or abort, the same
    plans aimed back at the previous release (or, with none, the new fleet stopped)."""
    if progress.phase != "retreat":
        if obs.abort:
            progress = progress.retreating(DeploymentOutcome.ABORTED, "aborted by `corral abort`")
        else:
            forward = RollingTarget(target.release, target.replicas, max_surge,
                                    max_unavailable, target.start_timeout)
            plan = plan_rolling(forward, obs.instances, obs.now)
            if plan.done:
                return Decision(replace(progress, phase="done"), (),
                                DeploymentOutcome.SUCCEEDED)
            if plan.failure is None:
                return Decision(replace(progress, phase="forward"), plan.steps)
            progress = progress.retreating(DeploymentOutcome.ROLLED_BACK, plan.failure)
    if target.previous is None:
        return retreat(target, progress, obs)
    back = RollingTarget(target.previous, target.replicas, max_surge, max_unavailable,
                         target.start_timeout)
    plan = plan_rolling(back, obs.instances, obs.now)
    outcome = DeploymentOutcome(progress.outcome or DeploymentOutcome.ROLLED_BACK.value)
    if plan.failure:
        return Decision(progress, (), DeploymentOutcome.FAILED,
                        f"{progress.reason}; rollback also failed: {plan.failure}")
    if plan.done:
        return Decision(progress, (), outcome, progress.reason)
    return Decision(progress, plan.steps)


@dataclass(frozen=True)
class Rolling:
    """The rolling strategy as the engine sees it: every ready instance weighs the same
    (no fleet weights to start from), nothing is kept warm, no router stats needed.

    >>> rolling = Rolling(max_surge=1, max_unavailable=0)
    >>> rolling.name, rolling.initial_weights(live=1), rolling.warm_window(1, 2)
    ('rolling', None, 0.0)
    >>> rolling.needs_router_stats, rolling.is_fast_rollback, rolling.is_previewable
    (False, False, True)
    """

    max_surge: int
    max_unavailable: int
    name: ClassVar[str] = "rolling"
    needs_router_stats: ClassVar[bool] = False
    is_fast_rollback: ClassVar[bool] = False
    is_previewable: ClassVar[bool] = True

    def next_decision(self, target: Target, progress: Progress, obs: Observation) -> Decision:
        return next_rolling(target, self.max_surge, self.max_unavailable, progress, obs)

    def initial_weights(self, live: int | None) -> dict[int, int] | None:
        return None

    def warm_window(self, previous: int | None, release: int) -> float:
        return 0.0
