"""Canary and blue-green decisions as tables: observed state in, steps out."""

from __future__ import annotations

import pytest

from corral.core.analysis import AnalysisPolicy
from corral.core.bluegreen import BlueGreenPolicy, next_blue_green
from corral.core.canary import CanaryPolicy, canary_replicas, next_canary
from corral.core.delivery import Observation, Progress, Target
from corral.core.steps import (
    AwaitPromotion,
    DrainAndStop,
    RecordAnalysis,
    SetWeights,
    StartInstances,
    Wait,
)
from corral.ports.records import DeploymentOutcome, Instance, InstanceState, ReleaseStats

R, S = InstanceState.READY, InstanceState.STARTING
TARGET = Target(release=2, previous=1, replicas=3, start_timeout=30)
POLICY = CanaryPolicy((10, 50, 100), 10.0, AnalysisPolicy(0.01, 0.5, 100, "fail", 60), 2)


def fleet(*spec: tuple[int, InstanceState]) -> tuple[Instance, ...]:
    return tuple(Instance(f"i{n}", "web", release, "d", f"a{n}", state, 0.0)
                 for n, (release, state) in enumerate(spec))


STABLE = ((1, R), (1, R), (1, R))


def stats(requests: int, errors: int = 0) -> ReleaseStats:
    return ReleaseStats(requests=requests, errors=errors,
                        latency_buckets=((0.1, requests), (float("inf"), requests)))


@pytest.mark.parametrize(("percent", "replicas", "expected"), [
    (10, 3, 1), (50, 3, 2), (100, 3, 3), (1, 10, 1), (25, 4, 1), (26, 4, 2)])
def test_the_canary_fleet_is_sized_to_carry_its_step(percent: int, replicas: int,
                                                     expected: int) -> None:
    assert canary_replicas(percent, replicas) == expected


@pytest.mark.parametrize(("instances", "progress", "expected"), [
    (STABLE, Progress(), [StartInstances(2, 1)]),
    ((*STABLE, (2, S)), Progress(phase="scale"), ["AwaitHealthy"]),
    ((*STABLE, (2, R)), Progress(phase="scale"), [SetWeights({2: 10, 1: 90})]),
    ((*STABLE, (2, R)), Progress(phase="scale", step=1), [StartInstances(2, 1)]),
])
def test_each_step_scales_the_canary_before_moving_weight(
        instances: tuple[tuple[int, InstanceState], ...], progress: Progress,
        expected: list[object]) -> None:
    decision = next_canary(TARGET, POLICY, progress, Observation(fleet(*instances), 10.0))
    got = [type(s).__name__ if type(s).__name__ == "AwaitHealthy" else s
           for s in decision.steps]
    assert got == expected


def analysing(now: float, canary: ReleaseStats, failures: int = 0) -> tuple[object, ...]:
    progress = Progress(phase="analyse", window_start=100.0, failures=failures,
                        weights={"2": 10, "1": 90})
    obs = Observation(fleet(*STABLE, (2, R)), now, {"v2": canary, "v1": stats(900)})
    decision = next_canary(TARGET, POLICY, progress, obs)
    return decision.steps, decision.outcome, decision.progress


def test_analysis_waits_for_its_window() -> None:
    steps, outcome, _ = analysing(105.0, stats(500))
    assert isinstance(steps[0], Wait) and outcome is None


def test_a_passing_window_moves_to_the_next_step() -> None:
    steps, _, progress = analysing(111.0, stats(500))
    assert isinstance(steps[0], RecordAnalysis) and steps[0].result == "pass"
    assert progress.step == 1 and progress.phase == "scale"  # type: ignore[attr-defined]


def test_one_failure_below_the_limit_starts_a_new_window() -> None:
    _, outcome, progress = analysing(111.0, stats(500, errors=50))
    assert outcome is None and progress.failures == 1  # type: ignore[attr-defined]
    assert progress.window_start == 111.0  # type: ignore[attr-defined]


def test_consecutive_failures_at_the_limit_drop_the_canary_weight_at_once() -> None:
    steps, outcome, _ = analysing(111.0, stats(500, errors=50), failures=1)
    assert outcome is DeploymentOutcome.ROLLED_BACK
    assert [type(s) for s in steps] == [RecordAnalysis, SetWeights, DrainAndStop]
    assert steps[1] == SetWeights({1: 100})


def test_thin_traffic_waits_then_fails_at_the_deadline() -> None:
    steps, outcome, _ = analysing(120.0, stats(5))
    assert outcome is None and steps[0].result == "wait"  # type: ignore[attr-defined]
    steps, outcome, _ = analysing(161.0, stats(5), failures=1)
    assert outcome is DeploymentOutcome.ROLLED_BACK


BG = BlueGreenPolicy(auto_promote=False)


@pytest.mark.parametrize(("instances", "progress", "promote", "expected"), [
    (STABLE, Progress(), False, [StartInstances(2, 3)]),
    ((*STABLE, (2, R), (2, R), (2, R)), Progress(), False, [AwaitPromotion(2)]),
    ((*STABLE, (2, R), (2, R), (2, R)), Progress(), True, [SetWeights({2: 100, 1: 0})]),
])
def test_blue_green_starts_a_whole_fleet_waits_at_its_gate_and_switches_at_once(
        instances: tuple[tuple[int, InstanceState], ...], progress: Progress, promote: bool,
        expected: list[object]) -> None:
    decision = next_blue_green(TARGET, BG, progress,
                               Observation(fleet(*instances), 0.0, promote=promote))
    assert list(decision.steps) == expected


def test_blue_green_abort_at_the_gate_stops_the_new_fleet() -> None:
    decision = next_blue_green(TARGET, BG, Progress(phase="gate", weights={"1": 100}),
                               Observation(fleet(*STABLE, (2, R), (2, R), (2, R)), 0.0,
                                           abort=True))
    assert decision.outcome is DeploymentOutcome.ABORTED
    assert decision.steps == (DrainAndStop(("i3", "i4", "i5"), "aborted"),)
