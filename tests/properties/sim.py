"""A pure simulation of a deployment for property tests: strategies' steps applied to a list
of instances, health passes handed out in an order hypothesis picks, traffic counted."""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.core.delivery import Decision, Observation, Progress, Target
from corral.core.steps import DrainAndStop, SetWeights, StartInstances, StopInstances
from corral.core.strategies import Planner
from corral.core.weights import backends_for
from corral.ports.records import Backend, Instance, InstanceState, ReleaseStats


@dataclass
class Sim:
    replicas: int
    old: int
    health_order: list[int]
    abort_at: int | None = None
    error_every: int = 0  # the new release answers 500 on one request in N (0: never)
    instances: list[Instance] = field(default_factory=list)
    weights: dict[int, int] | None = None
    routed: list[list[Backend]] = field(default_factory=list)
    counter: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.instances = [Instance(f"o{n}", "web", 1, "d1", f"a{n}", InstanceState.READY, 0.0)
                          for n in range(self.old)]
        self.weights = {1: 100}

    def route(self) -> None:
        self.routed.append(backends_for(self.instances, self.weights, self.replicas))

    def apply(self, decision: Decision, tick: int) -> None:
        for step in decision.steps:
            if isinstance(step, DrainAndStop | StopInstances):
                self.instances = [i for i in self.instances if i.id not in step.instance_ids]
            elif isinstance(step, StartInstances):
                for _ in range(step.count):
                    self.counter += 1
                    self.instances.append(Instance(
                        f"n{self.counter}", "web", step.release, f"d{step.release}",
                        f"b{self.counter}", InstanceState.STARTING, float(tick)))
            elif isinstance(step, SetWeights):
                self.weights = step.weights
            self.route()

    def heal_one(self) -> None:
        starting = [i for i in self.instances if i.state is InstanceState.STARTING]
        if starting:
            pick = starting[(self.health_order.pop(0) if self.health_order else 0)
                            % len(starting)]
            self.instances = [i.moved_to(InstanceState.READY) if i is pick else i
                              for i in self.instances]
            self.route()

    def serve(self) -> None:
        """1000 requests split by the last routed weights."""
        backends = self.routed[-1] if self.routed else []
        total = sum(b.weight for b in backends)
        for backend in backends:
            if not total or not backend.weight:
                continue
            n = round(1000 * backend.weight / total)
            self.requests[backend.release] = self.requests.get(backend.release, 0) + n
            if backend.release == "v2" and self.error_every:
                self.errors["v2"] = self.errors.get("v2", 0) + n // self.error_every

    def stats(self) -> dict[str, ReleaseStats]:
        return {label: ReleaseStats(requests=n, errors=self.errors.get(label, 0),
                                    latency_buckets=((0.1, n), (float("inf"), n)))
                for label, n in self.requests.items()}

    def run(self, planner: Planner, target: Target) -> Decision:
        progress = Progress()
        for tick in range(2000):
            self.serve()
            obs = Observation(tuple(self.instances), now=float(tick), stats=self.stats(),
                              promote=True, abort=self.abort_at is not None
                              and tick >= self.abort_at)
            decision = planner(target, progress, obs)
            progress = decision.progress
            self.apply(decision, tick)
            if decision.outcome is not None:
                return decision
            self.heal_one()
        raise AssertionError("the deployment never ended")


def shares_by_release(backends: list[Backend]) -> dict[str, float]:
    total = sum(b.weight for b in backends)
    out: dict[str, float] = {}
    for b in backends:
        out[b.release] = out.get(b.release, 0.0) + (b.weight / total if total else 0.0)
    return out


def ready_by_release(instances_backends: list[Backend], ready_ids: set[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for b in instances_backends:
        if b.instance in ready_ids:
            out[b.release] = out.get(b.release, 0) + 1
    return out
