"""Invariants of canary, blue-green and the weights arithmetic, over whole simulated
deployments: weights sum to 100, no fleet ever gets more traffic than its ready capacity,
and every abort or rollback ends with all traffic on a healthy previous fleet."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from sim import Sim

from corral.core.delivery import Target
from corral.core.strategies import planner_for
from corral.core.weights import capacity_caps, fleet_shares
from corral.ports.records import Backend, DeploymentOutcome
from corral.spec.model import ServiceSpec

releases = st.integers(min_value=1, max_value=4)


@given(desired=st.dictionaries(releases, st.integers(0, 100), max_size=4),
       ready=st.dictionaries(releases, st.integers(0, 6), min_size=1, max_size=4),
       replicas=st.integers(1, 6))
def test_fleet_shares_sum_to_100_and_never_exceed_ready_capacity(
        desired: dict[int, int], ready: dict[int, int], replicas: int) -> None:
    shares = fleet_shares(desired, ready, replicas)
    if sum(ready.values()) == 0:
        assert shares == {}
        return
    assert sum(shares.values()) == 100
    caps = capacity_caps({r: n for r, n in ready.items() if n}, replicas)
    for release, share in shares.items():
        assert Fraction(0) <= share <= caps[release]
    assert all(ready[r] > 0 for r in shares)


def _capacity_held(backends: list[Backend], replicas: int) -> None:
    total = sum(b.weight for b in backends)
    if not total:
        return
    ready: dict[str, int] = {}
    for b in backends:
        if b.weight > 0:
            ready[b.release] = ready.get(b.release, 0) + 1
    all_ready = sum(ready.values())
    for label, n in ready.items():
        share = sum(b.weight for b in backends if b.release == label) / total
        assert share <= n / min(replicas, all_ready) + 0.001, (label, share, ready)


def _service(strategy: str, replicas: int, **extra: object) -> ServiceSpec:
    return ServiceSpec.model_validate({
        "image": "sha256:" + "a" * 64, "replicas": replicas, "strategy": strategy,
        "canary": {"steps": [10, 50, 100], "interval": "3s", "min_requests": 50,
                   "analysis_deadline": "20s"}, **extra})


@settings(max_examples=60, deadline=None)
@given(replicas=st.integers(1, 5), order=st.lists(st.integers(0, 9), max_size=30),
       strategy=st.sampled_from(["canary", "blue-green", "rolling"]))
def test_a_healthy_deployment_keeps_the_capacity_invariant_at_every_step_and_succeeds(
        replicas: int, order: list[int], strategy: str) -> None:
    sim = Sim(replicas, replicas, order)
    decision = sim.run(planner_for(_service(strategy, replicas)),
                       Target(2, 1, replicas, start_timeout=1e9))
    assert decision.outcome is DeploymentOutcome.SUCCEEDED, decision.reason
    for backends in sim.routed:
        _capacity_held(backends, replicas)
    last = sim.routed[-1]
    assert {b.release for b in last if b.weight} == {"v2"}


@settings(max_examples=60, deadline=None)
@given(replicas=st.integers(1, 5), order=st.lists(st.integers(0, 9), max_size=30),
       abort_at=st.integers(0, 60), strategy=st.sampled_from(["canary", "blue-green",
                                                              "rolling"]))
def test_any_abort_ends_with_all_traffic_on_the_full_previous_fleet(
        replicas: int, order: list[int], abort_at: int, strategy: str) -> None:
    sim = Sim(replicas, replicas, order, abort_at=abort_at)
    decision = sim.run(planner_for(_service(strategy, replicas)),
                       Target(2, 1, replicas, start_timeout=1e9))
    if decision.outcome is DeploymentOutcome.SUCCEEDED:
        return  # it finished before the abort came
    assert decision.outcome is DeploymentOutcome.ABORTED
    for backends in sim.routed:
        _capacity_held(backends, replicas)
    live = [i for i in sim.instances if i.state.value in ("ready", "starting")]
    assert sorted(i.release for i in live) == [1] * replicas
    final = sim.routed[-1] if sim.routed else []
    assert {b.release for b in final if b.weight} <= {"v1"}


@settings(max_examples=40, deadline=None)
@given(replicas=st.integers(1, 5), order=st.lists(st.integers(0, 9), max_size=30),
       error_every=st.sampled_from([2, 5, 10]))
def test_a_failing_canary_is_rolled_back_to_a_full_stable_fleet(
        replicas: int, order: list[int], error_every: int) -> None:
    sim = Sim(replicas, replicas, order, error_every=error_every)
    decision = sim.run(planner_for(_service("canary", replicas)),
                       Target(2, 1, replicas, start_timeout=1e9))
    assert decision.outcome is DeploymentOutcome.ROLLED_BACK
    assert "error rate" in (decision.reason or "")
    for backends in sim.routed:
        _capacity_held(backends, replicas)
    assert sorted(i.release for i in sim.instances) == [1] * replicas
    assert {b.release for b in sim.routed[-1] if b.weight} == {"v1"}
