"""The blue-green strategy: start a whole new fleet, then switch all traffic at once.

The new fleet runs with weight 0 (previewable with `X-Corral-Release: vN`) until every
instance is ready; then, automatically or after `corral promote`, one router update moves
all traffic. The old fleet stays warm for the rollback window (the engine keeps it and
retires it later). A failure or `corral abort` before the switch stops the new fleet.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from corral.core.delivery import (
    Decision,
    Observation,
    Progress,
    Target,
    interruption,
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


def previews(strategy: str, preview: bool) -> bool:
    """Whether fleets without weight answer `X-Corral-Release` requests: always, except
    for a blue-green service with `preview = false`.

    >>> previews("blue-green", False), previews("blue-green", True), previews("canary", False)
    (False, True, True)
    """
    return strategy != "blue-green" or preview
