"""Which strategy a deployment runs: a service spec in, one pure planner out.

A planner is `(target, progress, observation) -> decision` (see core.delivery); the engine
calls it in a loop and never needs to know which strategy it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from corral.core.analysis import AnalysisPolicy
from corral.core.bluegreen import BlueGreenPolicy, next_blue_green
from corral.core.canary import CanaryPolicy, next_canary
from corral.core.delivery import Decision, Observation, Progress, Target
from corral.core.rolling import next_rolling
from corral.spec.model import ServiceSpec

Planner = Callable[[Target, Progress, Observation], Decision]
STRATEGIES = ("rolling", "blue-green", "canary")


def canary_policy(service: ServiceSpec) -> CanaryPolicy:
    canary = service.canary
    analysis = AnalysisPolicy(canary.max_error_rate, canary.max_p99_latency,
                              canary.min_requests, canary.insufficient_traffic,
                              max(canary.analysis_deadline, canary.interval))
    return CanaryPolicy(canary.steps, canary.interval, analysis,
                        canary.max_consecutive_failures)


def planner_for(service: ServiceSpec, strategy: str | None = None,
                fast: bool = False) -> Planner:
    """The planner of `strategy` (default: the service's). `fast` is the rollback path: a
    rolling replacement of every instance at once, no analysis, no gate."""
    chosen = strategy or service.strategy
    if fast:
        return partial(_rolling, max(1, service.replicas), 0)
    if chosen == "canary":
        return partial(_canary, canary_policy(service))
    if chosen == "blue-green":
        return partial(_blue_green, BlueGreenPolicy(service.blue_green.auto_promote))
    return partial(_rolling, service.rolling.max_surge, service.rolling.max_unavailable)


def _rolling(surge: int, unavailable: int, target: Target, progress: Progress,
             obs: Observation) -> Decision:
    return next_rolling(target, surge, unavailable, progress, obs)


def _canary(policy: CanaryPolicy, target: Target, progress: Progress,
            obs: Observation) -> Decision:
    return next_canary(target, policy, progress, obs)


def _blue_green(policy: BlueGreenPolicy, target: Target, progress: Progress,
                obs: Observation) -> Decision:
    return next_blue_green(target, policy, progress, obs)
