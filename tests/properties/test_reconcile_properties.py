"""Invariants of the reconciler, checked by simulating sweeps over random failures."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.reconcile import (
    Desired,
    Destroy,
    MarkFailed,
    Retire,
    StartInstance,
    World,
    plan_reconcile,
)
from corral.ports.records import Instance, InstanceState, Observed

R, S, U = InstanceState.READY, InstanceState.STARTING, InstanceState.UNHEALTHY

Fault = tuple[str, int]  # (kind, index into the fleet)
faults = st.lists(st.tuples(st.sampled_from(["kill", "sick", "drift", "ready", "stray"]),
                            st.integers(0, 20)), max_size=25)


class Sim:
    def __init__(self, replicas: int, start: int) -> None:
        self.replicas = replicas
        self.fleet = {f"i{n}": Instance(f"i{n}", "web", 1, "d", "a", R, 0.0)
                      for n in range(start)}
        self.running = set(self.fleet)
        self.strays: set[str] = set()
        self.drifted: dict[str, str] = {}
        self.counter = 0
        self.now = 0.0

    def world(self) -> World:
        observed = [Observed(i, 1, "a", i in self.running, None, {"corral.service": "web"},
                             0.0) for i in sorted(set(self.fleet) | self.strays)]
        return World({"web": Desired("web", 1, self.replicas, 1e9)},
                     list(self.fleet.values()), observed, self.now,
                     drifted={k: v for k, v in self.drifted.items() if k in self.fleet},
                     unknown_grace=0.0)

    def apply(self) -> int:
        """One sweep; returns the ready clean count the fleet kept throughout."""
        plan = plan_reconcile(self.world())
        for action in plan.actions:
            if isinstance(action, StartInstance):
                self.counter += 1
                new = f"n{self.counter}"
                self.fleet[new] = Instance(new, "web", 1, "d", "a", S, self.now)
                self.running.add(new)
            elif isinstance(action, MarkFailed | Retire):
                self.fleet.pop(action.instance_id, None)
                self.running.discard(action.instance_id)
            elif isinstance(action, Destroy):
                self.strays.discard(action.instance_id)
        return self.ready_clean()

    def ready_clean(self) -> int:
        return sum(1 for i in self.fleet.values()
                   if i.state is R and i.id in self.running and i.id not in self.drifted)

    def fault(self, kind: str, index: int) -> None:
        ids = sorted(self.fleet)
        if not ids and kind != "stray":
            return
        victim = ids[index % len(ids)] if ids else ""
        if kind == "kill":
            self.running.discard(victim)
        elif kind == "sick" and self.fleet[victim].state is R:
            self.fleet[victim] = self.fleet[victim].moved_to(U)
        elif kind == "drift":
            self.drifted[victim] = "file /x modified"
        elif kind == "ready":
            self.make_ready()
        elif kind == "stray":
            self.strays.add(f"stray{index}")

    def make_ready(self) -> None:
        for key, instance in self.fleet.items():
            if instance.state is S and key in self.running:
                self.fleet[key] = instance.moved_to(R)


@settings(max_examples=200, deadline=None)
@given(replicas=st.integers(0, 6), start=st.integers(0, 8), events=faults)
def test_any_sequence_of_failures_converges_to_the_replicas_of_clean_ready_instances(
        replicas: int, start: int, events: list[Fault]) -> None:
    sim = Sim(replicas, start)
    for kind, index in events:
        sim.fault(kind, index)
        sim.apply()
    for _ in range(10):
        sim.apply()
        sim.make_ready()
    assert plan_reconcile(sim.world()).is_empty
    assert sim.ready_clean() == replicas == len(sim.fleet)
    assert not sim.strays


@settings(max_examples=200, deadline=None)
@given(replicas=st.integers(1, 6), drifts=st.lists(st.integers(0, 20), min_size=1,
                                                   max_size=6))
def test_replacing_drifted_instances_never_drops_ready_capacity_below_replicas(
        replicas: int, drifts: list[int]) -> None:
    sim = Sim(replicas, replicas)
    for index in drifts:
        ids = sorted(sim.fleet)
        sim.drifted[ids[index % len(ids)]] = "file /x modified"
        for _ in range(3):
            serving = sum(1 for i in sim.fleet.values() if i.state is R)
            sim.apply()
            assert sum(1 for i in sim.fleet.values() if i.state is R) >= min(serving, replicas)
            sim.make_ready()
    for _ in range(5):
        sim.apply()
        sim.make_ready()
    assert sim.ready_clean() == replicas and not (set(sim.drifted) & set(sim.fleet))


@settings(max_examples=100, deadline=None)
@given(replicas=st.integers(0, 6), start=st.integers(0, 8))
def test_a_healthy_service_is_never_touched(replicas: int, start: int) -> None:
    sim = Sim(replicas, replicas)
    assert plan_reconcile(sim.world()).is_empty
