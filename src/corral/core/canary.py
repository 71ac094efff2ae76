"""The canary strategy: move traffic to the new fleet in steps, analysing after each.

Each step first scales the canary fleet to the step's share of `replicas`, then moves the
weight, then runs analysis windows until a verdict. A failure (or `corral abort`) retreats:
weight 0 on the canary at once, its instances stopped. The stable fleet keeps `replicas`
instances until the last step passed, so a retreat never waits for capacity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

from corral.core.analysis import (
    AnalysisPolicy,
    analyse,
    stats_delta,
    stats_from_json,
    stats_to_json,
)
from corral.core.delivery import (
    Decision,
    Observation,
    Progress,
    Target,
    fleet,
    interruption,
    pinned_on,
    ready,
    retreat,
    scale_to,
    weights_step,
)
from corral.core.steps import DrainAndStop, RecordAnalysis, Step, Wait
from corral.ports.records import DeploymentOutcome, ReleaseStats


@dataclass(frozen=True)
class CanaryPolicy:
    steps: tuple[int, ...]  # percents, rising, ending at 100
    interval: float  # seconds a window runs before its verdict
    analysis: AnalysisPolicy
    max_consecutive_failures: int  # failed windows in a row that end the canary


@dataclass(frozen=True)
class Canary:
    """The canary strategy as the engine sees it: a deployment starts with all traffic
    pinned on the live fleet, analysis needs the router's per-release stats, nothing is
    kept warm after the last step.

    >>> from corral.core.analysis import AnalysisPolicy
    >>> canary = Canary(CanaryPolicy((10, 50, 100), 10.0,
    ...                              AnalysisPolicy(0.01, 0.5, 100, "fail", 60.0), 1))
    >>> canary.initial_weights(live=1), canary.initial_weights(live=None)
    ({1: 100}, None)
    >>> canary.name, canary.warm_window(1, 2), canary.needs_router_stats
    ('canary', 0.0, True)
    """

    policy: CanaryPolicy
    name: ClassVar[str] = "canary"
    needs_router_stats: ClassVar[bool] = True
    is_fast_rollback: ClassVar[bool] = False
    is_previewable: ClassVar[bool] = True

    def next_decision(self, target: Target, progress: Progress, obs: Observation) -> Decision:
        return next_canary(target, self.policy, progress, obs)

    def initial_weights(self, live: int | None) -> dict[int, int] | None:
        return pinned_on(live)

    def warm_window(self, previous: int | None, release: int) -> float:
        return 0.0


def canary_replicas(percent: int, replicas: int) -> int:
    """Instances the canary needs to carry `percent` of the traffic of `replicas`.

    >>> [canary_replicas(p, 3) for p in (10, 34, 50, 100)]
    [1, 2, 2, 3]
    """
    return max(1, math.ceil(percent * replicas / 100))


def next_canary(target: Target, policy: CanaryPolicy, progress: Progress,
                obs: Observation) -> Decision:
    """The next steps of a canary deployment (see the module docstring for the phases)."""
    taken_over = interruption(target, progress, obs)
    if taken_over is not None:
        return taken_over
    if target.previous is None:
        return _first_release(target, progress, obs)
    percent = policy.steps[progress.step]
    if progress.phase in ("start", "scale"):
        waiting = scale_to(target.release, canary_replicas(percent, target.replicas),
                           obs.instances)
        if waiting:
            return Decision(replace(progress, phase="scale"), tuple(waiting))
        step, as_json = weights_step({target.release: percent, target.previous: 100 - percent})
        return Decision(replace(progress, phase="analyse", weights=as_json,
                                window_start=obs.now, baseline=_snapshot(obs), failures=0),
                        (step,))
    if progress.phase == "analyse":
        return _analyse(target, policy, progress, obs)
    return _finish(target, progress, obs)


def _analyse(target: Target, policy: CanaryPolicy, progress: Progress,
             obs: Observation) -> Decision:
    waited = obs.now - progress.window_start
    if waited < policy.interval:
        return Decision(progress, (Wait(progress.window_start + policy.interval,
                                        "analysis window"),))
    canary, stable = (_window(obs, progress, release)
                      for release in (target.release, target.previous))
    verdict = analyse(policy.analysis, canary, stable, waited)
    record = RecordAnalysis(progress.step, verdict.result, verdict.reason, verdict.numbers)
    if verdict.result == "wait":
        return Decision(progress, (record, Wait(obs.now + min(1.0, policy.interval),
                                                "waiting for traffic")))
    if verdict.result == "fail":
        failures = progress.failures + 1
        if failures >= policy.max_consecutive_failures:
            why = (f"canary analysis failed at {policy.steps[progress.step]}%: "
                   f"{verdict.reason}")
            return _with(record, retreat(target, replace(progress, failures=failures)
                                         .retreating(DeploymentOutcome.ROLLED_BACK, why), obs))
        return Decision(replace(progress, failures=failures, window_start=obs.now,
                                baseline=_snapshot(obs)), (record,))
    if progress.step + 1 < len(policy.steps):
        return Decision(replace(progress, phase="scale", step=progress.step + 1), (record,))
    return Decision(replace(progress, phase="finish"), (record,))


def _finish(target: Target, progress: Progress, obs: Observation) -> Decision:
    """All traffic on the canary: stop the stable fleet and any surplus."""
    steps: list[Step] = []
    step, as_json = weights_step({target.release: 100})
    if progress.weights != as_json:
        steps.append(step)
    old = [i.id for i in obs.instances if i.release != target.release and i.state.is_live
           and i.state.value != "draining"]
    if old:
        steps.append(DrainAndStop(tuple(old), "replaced by the canary"))
    return Decision(replace(progress, weights=as_json), tuple(steps),
                    DeploymentOutcome.SUCCEEDED)


def _first_release(target: Target, progress: Progress, obs: Observation) -> Decision:
    """No stable fleet to compare with: start the fleet and give it all traffic."""
    waiting = scale_to(target.release, target.replicas, obs.instances)
    if waiting or len(ready(fleet(obs.instances, target.release))) < target.replicas:
        return Decision(replace(progress, phase="scale"), tuple(waiting))
    return _finish(target, progress, obs)


def _snapshot(obs: Observation) -> dict[str, object]:
    return {label: stats_to_json(stats) for label, stats in obs.stats.items()}


def _window(obs: Observation, progress: Progress, release: int | None) -> ReleaseStats:
    label = f"v{release}"
    base = progress.baseline.get(label)
    return stats_delta(obs.stats.get(label, ReleaseStats()),
                       stats_from_json(base) if base else None)


def _with(record: RecordAnalysis, decision: Decision) -> Decision:
    return replace(decision, steps=(record, *decision.steps))
