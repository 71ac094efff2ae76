"""Canary, blue-green, promote/abort and rollback executed by the deployer against fakes:
a fake router fed with simulated traffic that follows the weights it was given (one batch
of requests each time the deployer reads the router's stats)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_deployer import Rig

from corral.core.weights import traffic_shares
from corral.engine.delivery.rollback import Rollback, RollbackRequest
from corral.ports.records import DeploymentOutcome
from loopback import poll

FAST_CANARY = {"strategy": "canary", "canary": {
    "steps": [10, 50, 100], "interval": "150ms", "min_requests": 20,
    "analysis_deadline": "3s", "max_error_rate": 0.05}}


class TrafficRig(Rig):
    """A Rig whose router sees 100 requests spread by weight before each stats read;
    `failing` releases answer 500 on one request in five."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.failing: set[str] = set()
        self._sent = 0
        self.router.before_stats = self._send

    def _send(self, service: str) -> None:
        for label, share in traffic_shares(self.router.backends(service)).items():
            for _ in range(round(share)):
                self._sent += 1
                status = 500 if label in self.failing and self._sent % 5 == 0 else 200
                self.router.record(service, label, status, 0.003)


@pytest.fixture
def trig(tmp_path: Path) -> Iterator[TrafficRig]:
    rig = TrafficRig(tmp_path)
    yield rig
    rig.stopping.set()


def deploy(rig: Rig, events: list[dict[str, Any]] | None = None, **service: Any) -> Any:
    sink = events.append if events is not None else (lambda event: None)
    return rig.deployer.deploy(rig.request(**service), sink)


def test_a_healthy_canary_walks_every_step_and_ends_with_all_traffic(trig: TrafficRig) -> None:
    deploy(trig)
    events: list[dict[str, Any]] = []
    done = deploy(trig, events, env={"V": "2"}, **FAST_CANARY)
    assert done.outcome is DeploymentOutcome.SUCCEEDED, done.reason
    analyses = [e for e in events if e["type"] == "analysis"]
    assert [a["percent"] for a in analyses if a["result"] == "pass"] == [10, 50, 100]
    assert {b.release for b in trig.router.backends("web") if b.weight} == {"v2"}
    assert trig.store.live_release("web") == 2


def test_a_canary_with_errors_is_rolled_back_with_the_numbers_that_tripped_it(
        trig: TrafficRig) -> None:
    deploy(trig)
    trig.failing.add("v2")
    done = deploy(trig, env={"V": "bad"}, **FAST_CANARY)
    assert done.outcome is DeploymentOutcome.ROLLED_BACK
    assert "error rate" in (done.reason or "") and "at 10%" in (done.reason or "")
    steps = trig.store.list_steps(done.id)
    failed = [s for s in steps if s.kind == "RecordAnalysis" and s.detail["result"] == "fail"]
    assert failed and failed[0].detail["numbers"]["error_rate"] > 0.05
    assert {(b.release, b.weight > 0) for b in trig.router.backends("web")} == {("v1", True)}
    assert all(i.release == 1 for i in trig.fleets.of_service("web"))
    assert 2 in trig.store.bad_releases("web")
    ledger = [e for e in trig.store.events() if e.action == "deployment.analysis"]
    assert ledger[-1].detail["result"] == "fail"


def test_a_canary_never_gives_a_fleet_more_traffic_than_its_ready_share(
        trig: TrafficRig) -> None:
    deploy(trig)
    start = len(trig.router.sets)
    deploy(trig, env={"V": "2"}, **FAST_CANARY)
    for snapshot in trig.router.sets[start:]:
        total = sum(w for _, w in snapshot)
        for label in {r for r, _ in snapshot}:
            ready = sum(1 for r, w in snapshot if r == label and w > 0)
            share = sum(w for r, w in snapshot if r == label) / total if total else 0
            assert share <= ready / 3 + 0.001


def test_insufficient_traffic_fails_the_canary_at_its_deadline_and_says_so(
        trig: TrafficRig) -> None:
    deploy(trig)
    canary = {**FAST_CANARY["canary"], "min_requests": 10**9, "analysis_deadline": "500ms"}
    done = deploy(trig, env={"V": "2"}, strategy="canary", canary=canary)
    assert done.outcome is DeploymentOutcome.ROLLED_BACK
    assert "insufficient traffic" in (done.reason or "")


def test_insufficient_traffic_can_be_configured_to_pass_and_is_recorded(
        trig: TrafficRig) -> None:
    deploy(trig)
    canary = {**FAST_CANARY["canary"], "min_requests": 10**9, "analysis_deadline": "300ms",
              "insufficient_traffic": "pass"}
    done = deploy(trig, env={"V": "2"}, strategy="canary", canary=canary)
    assert done.outcome is DeploymentOutcome.SUCCEEDED
    passes = [s.detail for s in trig.store.list_steps(done.id) if s.kind == "RecordAnalysis"]
    assert all("insufficient traffic" in p["reason"] for p in passes)


def test_blue_green_switches_every_request_in_one_update_and_keeps_the_old_fleet_warm(
        trig: TrafficRig) -> None:
    deploy(trig)
    start = len(trig.router.sets)
    done = deploy(trig, env={"V": "2"}, strategy="blue-green")
    assert done.outcome is DeploymentOutcome.SUCCEEDED
    weighted = [{r for r, w in s if w > 0} for s in trig.router.sets[start:]]
    assert {"v1", "v2"} not in weighted  # never both at once
    assert weighted[-1] == {"v2"}
    releases = sorted(i.release for i in trig.fleets.of_service("web"))
    assert releases == [1, 1, 1, 2, 2, 2]
    warm = trig.deployer.traffic.warm("web")
    assert warm is not None and warm["release"] == 1


def test_rollback_to_a_warm_fleet_is_one_router_update(trig: TrafficRig) -> None:
    deploy(trig)
    deploy(trig, env={"V": "2"}, strategy="blue-green")
    before = len(trig.router.sets)
    rollback = Rollback(trig.store, trig.deployer._instances, trig.deployer)
    events: list[dict[str, Any]] = []
    done = rollback.run(RollbackRequest("web", "tester"), events.append)
    assert done.outcome is DeploymentOutcome.SUCCEEDED
    first = trig.router.sets[before]
    assert {r for r, w in first if w > 0} == {"v1"}
    assert trig.store.live_release("web") == 2 - 1
    assert 2 in trig.store.bad_releases("web")
    assert events[-1]["switched_ms"] < 1000


def test_rollback_without_a_warm_fleet_redeploys_the_previous_release(trig: TrafficRig) -> None:
    deploy(trig)
    deploy(trig, env={"V": "2"})
    rollback = Rollback(trig.store, trig.deployer._instances, trig.deployer)
    done = rollback.run(RollbackRequest("web", "tester"), lambda event: None)
    assert done.outcome is DeploymentOutcome.SUCCEEDED
    assert trig.store.live_release("web") == 1
    assert {b.release for b in trig.router.backends("web") if b.weight} == {"v1"}


def test_a_blue_green_gate_waits_for_promote(trig: TrafficRig) -> None:
    deploy(trig)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(deploy(
        trig, env={"V": "2"}, strategy="blue-green", blue_green={"auto_promote": False})))
    thread.start()
    poll(lambda: (trig.store.get_progress(trig.store.list_deployments("web")[0].id)
                  or {}).get("phase") == "gate")
    assert {b.release for b in trig.router.backends("web") if b.weight} == {"v1"}
    trig.deployer.signal("web", "promote")
    thread.join(10)
    assert result[0].outcome is DeploymentOutcome.SUCCEEDED


def test_abort_puts_all_traffic_back_on_the_stable_fleet(trig: TrafficRig) -> None:
    deploy(trig)
    result: list[Any] = []
    canary = {**FAST_CANARY["canary"], "interval": "30s"}
    thread = threading.Thread(target=lambda: result.append(deploy(
        trig, env={"V": "2"}, strategy="canary", canary=canary)))
    thread.start()
    poll(lambda: any(b.release == "v2" and b.weight for b in trig.router.backends("web")))
    trig.deployer.signal("web", "abort")
    thread.join(10)
    assert result[0].outcome is DeploymentOutcome.ABORTED
    assert {b.release for b in trig.router.backends("web") if b.weight} == {"v1"}
    assert 2 not in trig.store.bad_releases("web")
