"""The steps a strategy can ask for. The engine executes them; strategies only return them.

Decisions are data: a plan is a tuple of steps plus a verdict, so strategies are tested
with tables and a deployment can be resumed from its recorded steps.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StartInstances:
    """Start `count` new instances of `release`."""

    release: int
    count: int


@dataclass(frozen=True)
class DrainAndStop:
    """Take the instances out of traffic, wait for their in-flight requests, stop them."""

    instance_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class StopInstances:
    """Stop instances that carry no traffic (not ready, failed, surplus starting ones)."""

    instance_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class AwaitHealthy:
    """Nothing can move until health checks report: wait for the next observation."""

    instance_ids: tuple[str, ...]


@dataclass(frozen=True)
class SetWeights:
    """Give each fleet (release -> percent) its share of traffic, in one router update.

    `None` goes back to the rolling rule: every ready instance weighs the same."""

    weights: dict[int, int] | None


@dataclass(frozen=True)
class AwaitPromotion:
    """The new fleet is ready and previewable: wait for `corral promote` or `corral abort`."""

    release: int


@dataclass(frozen=True)
class Wait:
    """Nothing to do before `until` (an analysis window running, traffic still too thin)."""

    until: float
    why: str


@dataclass(frozen=True)
class RecordAnalysis:
    """Record one analysis verdict and its numbers in the deployment's steps and ledger."""

    step: int
    result: str  # "pass" | "fail" | "wait"
    reason: str
    numbers: dict[str, float | int | None]


Step = (StartInstances | DrainAndStop | StopInstances | AwaitHealthy | SetWeights
        | AwaitPromotion | Wait | RecordAnalysis)


@dataclass(frozen=True)
class RollingPlan:
    """What a rolling update does next (core/rolling.py). `done` ends the deployment;
    `failure` says why it cannot go on."""

    steps: tuple[Step, ...] = ()
    done: bool = False
    failure: str | None = None
