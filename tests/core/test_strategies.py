"""Each strategy object as a table: spec in, object out; then every question the engine asks
of it (weights to start from, warm window, router stats, preview, fast rollback, the first
decision) with its answer, so the engine never needs to ask which strategy it runs."""

from __future__ import annotations

from typing import Any

import pytest

from corral.core.analysis import AnalysisPolicy
from corral.core.bluegreen import BlueGreen
from corral.core.canary import Canary, CanaryPolicy
from corral.core.delivery import Observation, Progress, Target
from corral.core.rollback import FastRollback
from corral.core.rolling import Rolling
from corral.core.steps import StartInstances
from corral.core.strategies import (
    STRATEGIES,
    Strategy,
    fast_rollback,
    recorded_strategy,
    strategy_for,
)
from corral.ports.records import Instance, InstanceState
from corral.spec.model import ServiceSpec

CANARY_POLICY = CanaryPolicy((10, 50, 100), 10.0, AnalysisPolicy(0.01, 0.5, 100, "fail", 60.0),
                             1)
ROLLING = Rolling(max_surge=1, max_unavailable=0)
BLUE_GREEN = BlueGreen(auto_promote=True, is_previewable=False, rollback_window=900.0)
CANARY = Canary(CANARY_POLICY)
FAST = FastRollback(replicas=3, is_previewable=True)


def service(**keys: Any) -> ServiceSpec:
    return ServiceSpec.model_validate({"image": "sha256:" + "a" * 64, "replicas": 3, **keys})


@pytest.mark.parametrize(("keys", "asked", "expected"), [
    ({}, None, Rolling(1, 0)),
    ({"rolling": {"max_surge": 2, "max_unavailable": 1}}, None, Rolling(2, 1)),
    ({"strategy": "blue-green"}, None, BlueGreen(True, True, 900.0)),
    ({"strategy": "blue-green",
      "blue_green": {"preview": False, "auto_promote": False, "rollback_window": "2m"}},
     None, BlueGreen(False, False, 120.0)),
    ({"strategy": "canary", "canary": {"steps": [10, 50, 100], "interval": "10s",
                                       "min_requests": 100, "max_p99_latency": "500ms",
                                       "analysis_deadline": "60s"}},
     None, Canary(CANARY_POLICY)),
    ({"strategy": "blue-green"}, "rolling", Rolling(1, 0)),  # deploy --strategy rolling
    ({}, "blue-green", BlueGreen(True, True, 900.0)),
    ({}, "rollback", None),  # the fast path is not a strategy a user picks
    ({}, "recreate", None),
])
def test_a_service_spec_and_the_strategy_asked_make_one_strategy_object(
        keys: dict[str, Any], asked: str | None, expected: Strategy | None) -> None:
    assert strategy_for(service(**keys), asked) == expected


def test_the_strategies_a_user_may_pick_are_rolling_blue_green_and_canary() -> None:
    assert sorted(STRATEGIES) == ["blue-green", "canary", "rolling"]


@pytest.mark.parametrize(
    ("strategy", "name", "needs_stats", "is_fast", "is_previewable"), [
        (ROLLING, "rolling", False, False, True),
        (BLUE_GREEN, "blue-green", False, False, False),
        (BlueGreen(True, True, 0.0), "blue-green", False, False, True),
        (CANARY, "canary", True, False, True),
        (FAST, "rollback", False, True, True),
        (FastRollback(3, is_previewable=False), "rollback", False, True, False),
    ])
def test_each_strategy_says_its_name_and_what_the_engine_must_do_for_it(
        strategy: Strategy, name: str, needs_stats: bool, is_fast: bool,
        is_previewable: bool) -> None:
    assert (strategy.name, strategy.needs_router_stats, strategy.is_fast_rollback,
            strategy.is_previewable) == (name, needs_stats, is_fast, is_previewable)


@pytest.mark.parametrize(("strategy", "live", "weights"), [
    (ROLLING, 1, None),  # every ready instance weighs the same
    (ROLLING, None, None),
    (BLUE_GREEN, 1, {1: 100}),  # all traffic pinned on the live fleet until the switch
    (BLUE_GREEN, None, None),  # a first deployment: nothing to pin on
    (CANARY, 4, {4: 100}),
    (CANARY, None, None),
    (FAST, 2, None),
])
def test_each_strategy_says_the_fleet_weights_a_deployment_starts_from(
        strategy: Strategy, live: int | None, weights: dict[int, int] | None) -> None:
    assert strategy.initial_weights(live) == weights


@pytest.mark.parametrize(("strategy", "previous", "release", "seconds"), [
    (BLUE_GREEN, 1, 2, 900.0),  # the old fleet stays warm for the rollback window
    (BLUE_GREEN, None, 1, 0.0),  # no previous fleet
    (BLUE_GREEN, 2, 2, 0.0),  # the same release: nothing else to keep
    (BlueGreen(True, True, 0.0), 1, 2, 0.0),  # rollback_window = 0: retire it at once
    (ROLLING, 1, 2, 0.0),
    (CANARY, 1, 2, 0.0),
    (FAST, 2, 1, 0.0),
])
def test_only_blue_green_keeps_the_previous_fleet_warm_after_a_success(
        strategy: Strategy, previous: int | None, release: int, seconds: float) -> None:
    assert strategy.warm_window(previous, release) == seconds


@pytest.mark.parametrize(("recorded", "keys", "expected"), [
    ("rollback", {"strategy": "blue-green", "blue_green": {"preview": False}},
     FastRollback(3, is_previewable=False)),
    ("rollback", {"strategy": "canary"}, FastRollback(3, is_previewable=True)),
    ("blue-green", {}, BlueGreen(True, True, 900.0)),  # a deploy --strategy blue-green
    ("rolling", {"strategy": "blue-green"}, Rolling(1, 0)),
    ("retired-name", {"strategy": "blue-green"}, BlueGreen(True, True, 900.0)),
])
def test_a_recorded_deployment_resumes_with_the_strategy_it_was_recorded_with(
        recorded: str, keys: dict[str, Any], expected: Strategy) -> None:
    assert recorded_strategy(recorded, service(**keys)) == expected


def test_the_fast_rollback_of_a_service_keeps_its_replicas_and_its_preview_rule() -> None:
    assert fast_rollback(service(replicas=5, strategy="blue-green",
                                 blue_green={"preview": False})) == FastRollback(5, False)


def _ready(release: int, count: int) -> tuple[Instance, ...]:
    return tuple(Instance(f"v{release}-{n}", "web", release, "d", f"a{n}",
                          InstanceState.READY, 0.0) for n in range(count))


@pytest.mark.parametrize(("strategy", "target", "fleet", "started"), [
    (ROLLING, Target(2, 1, 3, 30.0), _ready(1, 3), StartInstances(2, 1)),  # surge 1
    (BLUE_GREEN, Target(2, 1, 3, 30.0), _ready(1, 3), StartInstances(2, 3)),  # whole fleet
    (CANARY, Target(2, 1, 3, 30.0), _ready(1, 3), StartInstances(2, 1)),  # 10% of 3
    # back to v1 from v2: every instance at once, whatever the service's surge
    (FAST, Target(1, 2, 3, 30.0), _ready(2, 3), StartInstances(1, 3)),
])
def test_each_strategy_plans_its_own_first_step_from_a_ready_live_fleet(
        strategy: Strategy, target: Target, fleet: tuple[Instance, ...],
        started: StartInstances) -> None:
    decision = strategy.next_decision(target, Progress(), Observation(fleet, now=0.0))
    assert decision.outcome is None
    assert started in decision.steps
