"""The blue-green strategy: start a whole new fleet, then switch all traffic at once.

The new fleet runs with weight 0 (previewable with `X-Corral-Release: vN`) until every
instance is ready; then, automatically or after `corral promote`, one router update moves
all traffic. The old fleet stays warm for the rollback window (the engine keeps it and
retires it later). A failure or `corral abort` before the switch stops the new fleet.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from corral.core.delivery import (
    Decision,
    Observation,
    Progress,
    Target,
    interruption,
    pinned_on,
    scale_to,
    weights_step,
)
from corral.core.steps import AwaitPromotion
from corral.ports.records import DeploymentOutcome


@dataclass(frozen=True)
class BlueGreenPolicy:
    auto_promote: bool


def next_blue_green(target: Target, policy: BlueGreenPolicy, progress: Progress,
                    obs: Observation) -> Decision:
    """The next steps of a blue-green deployment.

    Worked example, replicas=3 with v1 serving: start three v2 (weight 0); when all are
    ready, wait for promotion if asked to; then one SetWeights {v2: 100, v1: 0} and the
    deployment succeeds with v1 still running, warm.
    """
    taken_over = interruption(target, progress, obs)
    if taken_over is not None:
        return taken_over
    waiting = scale_to(target.release, target.replicas, obs.instances)
    if waiting:
        return Decision(replace(progress, phase="start"), tuple(waiting))
    promoted = progress.promoted or obs.promote or policy.auto_promote
    if not promoted and target.previous is not None:
        return Decision(replace(progress, phase="gate"), (AwaitPromotion(target.release),))
    weights = {target.release: 100}
    if target.previous is not None:
        weights[target.previous] = 0
    step, as_json = weights_step(weights)
    return Decision(replace(progress, phase="switched", promoted=True, weights=as_json),
                    (step,), DeploymentOutcome.SUCCEEDED)


@dataclass(frozen=True)
class BlueGreen:
    """The blue-green strategy as the engine sees it: a deployment starts with all traffic
    pinned on the live fleet, the previous fleet stays warm for `rollback_window` seconds
    after the switch, and fleets without weight answer preview requests only with
    `is_previewable` (the spec's `preview`).

    Worked example: rollback window 900 s, v1 live, deploying v2: weights start at
    {v1: 100}, and after the switch v1 is kept warm for 900 s; a first deployment (nothing
    live) starts from equal weights and keeps nothing warm.

    >>> blue_green = BlueGreen(auto_promote=True, is_previewable=False, rollback_window=900.0)
    >>> blue_green.initial_weights(live=1), blue_green.warm_window(1, 2)
    ({1: 100}, 900.0)
    >>> blue_green.initial_weights(live=None), blue_green.warm_window(None, 1)
    (None, 0.0)
    >>> blue_green.name, blue_green.needs_router_stats, blue_green.is_fast_rollback
    ('blue-green', False, False)
    """

    auto_promote: bool
    is_previewable: bool
    rollback_window: float  # seconds the previous fleet stays warm after the switch
    name: ClassVar[str] = "blue-green"
    needs_router_stats: ClassVar[bool] = False
    is_fast_rollback: ClassVar[bool] = False

    def next_decision(self, target: Target, progress: Progress, obs: Observation) -> Decision:
        return next_blue_green(target, BlueGreenPolicy(self.auto_promote), progress, obs)

    def initial_weights(self, live: int | None) -> dict[int, int] | None:
        return pinned_on(live)

    def warm_window(self, previous: int | None, release: int) -> float:
        """Seconds the previous fleet stays warm once `release` took all traffic (0: none
        to keep: no previous release, or the same one)."""
        return self.rollback_window if previous not in (None, release) else 0.0
