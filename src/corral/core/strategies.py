"""Which strategy a deployment runs: one object per strategy, made from a service spec.

A `Strategy` answers everything the engine asks of it: the next decision (see
core.delivery), the fleet weights a deployment starts from, how long the previous fleet
stays warm after a success, whether analysis needs the router's per-release stats, whether
fleets without weight answer preview requests, and whether it is the rollback fast path
(whose success marks the release it left bad). The engine holds a `Strategy` and never asks
which one it runs; a strategy's name is only data, recorded with each deployment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from corral.core.analysis import AnalysisPolicy
from corral.core.bluegreen import BlueGreen
from corral.core.canary import Canary, CanaryPolicy
from corral.core.delivery import Decision, Observation, Progress, Target
from corral.core.rollback import FastRollback
from corral.core.rolling import Rolling
from corral.spec.model import ServiceSpec

Planner = Callable[[Target, Progress, Observation], Decision]


class Strategy(Protocol):
    """What the engine asks of a deployment's strategy (Rolling, BlueGreen, Canary,
    FastRollback); each answer is pure."""

    @property
    def name(self) -> str:
        """Recorded with the deployment (`corral status`, the ledger, metrics)."""

    @property
    def needs_router_stats(self) -> bool:
        """Whether each observation must carry the router's per-release stats."""

    @property
    def is_fast_rollback(self) -> bool:
        """Whether success marks the release the deployment left bad (`corral rollback`)."""

    @property
    def is_previewable(self) -> bool:
        """Whether fleets without weight answer `X-Corral-Release` requests."""

    def next_decision(self, target: Target, progress: Progress, obs: Observation) -> Decision:
        """The next steps (a planner: see core.delivery)."""

    def initial_weights(self, live: int | None) -> dict[int, int] | None:
        """Fleet weights a deployment starts from (None: every ready instance the same)."""

    def warm_window(self, previous: int | None, release: int) -> float:
        """Seconds the previous fleet stays warm after `release` succeeded (0: retire it)."""


def canary_policy(service: ServiceSpec) -> CanaryPolicy:
    canary = service.canary
    analysis = AnalysisPolicy(canary.max_error_rate, canary.max_p99_latency,
                              canary.min_requests, canary.insufficient_traffic,
                              max(canary.analysis_deadline, canary.interval))
    return CanaryPolicy(canary.steps, canary.interval, analysis,
                        canary.max_consecutive_failures)


def _rolling(service: ServiceSpec) -> Strategy:
    return Rolling(service.rolling.max_surge, service.rolling.max_unavailable)


def _blue_green(service: ServiceSpec) -> Strategy:
    settings = service.blue_green
    return BlueGreen(settings.auto_promote, settings.preview, settings.rollback_window)


def _canary(service: ServiceSpec) -> Strategy:
    return Canary(canary_policy(service))


_MADE_BY: dict[str, Callable[[ServiceSpec], Strategy]] = {
    Rolling.name: _rolling, BlueGreen.name: _blue_green, Canary.name: _canary}
STRATEGIES = tuple(_MADE_BY)  # the names a user may pick (`strategy`, `deploy --strategy`)


def strategy_for(service: ServiceSpec, name: str | None = None) -> Strategy | None:
    """The strategy `name` (default: the service's own) with the service's settings; None
    when no strategy a user may pick has that name (the rollback fast path is not one).

    >>> web = ServiceSpec.model_validate({"image": "web", "replicas": 3, "strategy": "canary",
    ...                                   "rolling": {"max_surge": 2}})
    >>> strategy_for(web).name, strategy_for(web, "rolling"), strategy_for(web, "rollback")
    ('canary', Rolling(max_surge=2, max_unavailable=0), None)
    """
    made_by = _MADE_BY.get(name or service.strategy)
    return made_by(service) if made_by else None


def is_previewable(service: ServiceSpec) -> bool:
    """Whether the service's own strategy lets fleets without weight answer
    `X-Corral-Release` requests: always, except blue-green with `preview = false`.

    >>> bg = {"image": "web", "strategy": "blue-green", "blue_green": {"preview": False}}
    >>> is_previewable(ServiceSpec.model_validate(bg))
    False
    >>> is_previewable(ServiceSpec.model_validate({"image": "web", "strategy": "canary"}))
    True
    """
    own = strategy_for(service)
    return own.is_previewable if own else True


def fast_rollback(service: ServiceSpec) -> FastRollback:
    """The rollback fast path for a release of `service` (see core.rollback)."""
    return FastRollback(service.replicas, is_previewable(service))


def recorded_strategy(recorded: str, service: ServiceSpec) -> Strategy:
    """The strategy a recorded deployment runs (a resumed one, a rollback): the fast path
    when it was recorded as one, else the strategy it names, else the service's own.

    >>> web = ServiceSpec.model_validate({"image": "web", "replicas": 2,
    ...                                   "strategy": "blue-green",
    ...                                   "blue_green": {"preview": False}})
    >>> recorded_strategy("rollback", web)
    FastRollback(replicas=2, is_previewable=False)
    >>> recorded_strategy("canary", web).name, recorded_strategy("gone", web).name
    ('canary', 'blue-green')
    """
    if recorded == FastRollback.name:
        return fast_rollback(service)
    return strategy_for(service, recorded) or strategy_for(service) or _rolling(service)


def planner_for(service: ServiceSpec, strategy: str | None = None) -> Planner:
    """The planner (`next_decision`) of `strategy`, default the service's own."""
    return recorded_strategy(strategy or service.strategy, service).next_decision
