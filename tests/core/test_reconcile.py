"""The reconciler's decisions as tables: observed state in, actions out. No processes."""

from __future__ import annotations

from corral.core.reconcile import (
    Cause,
    Desired,
    Destroy,
    MarkFailed,
    Retire,
    StartInstance,
    World,
    plan_reconcile,
)
from corral.ports.records import Instance, InstanceState, Observed

R = InstanceState.READY
S = InstanceState.STARTING
U = InstanceState.UNHEALTHY
D = InstanceState.DRAINING


def inst(id_: str, state: InstanceState = R, release: int = 2, created: float = 0.0,
         service: str = "web") -> Instance:
    return Instance(id_, service, release, "sha256:d", f"127.0.0.1:{hash(id_) % 1000 + 9000}",
                    state, created)


def seen(id_: str, running: bool = True, code: int | None = None, service: str = "web",
         started: float = 0.0) -> Observed:
    return Observed(id_, 1, "127.0.0.1:1", running, code, {"corral.service": service},
                    started)


def world(fleet: list[Instance], observed: list[Observed] | None = None,
          replicas: int = 3, **kw: object) -> World:
    observed = observed if observed is not None else [seen(i.id) for i in fleet]
    return World(desired={"web": Desired("web", 2, replicas, start_timeout=30.0)},
                 fleet=fleet, observed=observed, now=100.0, **kw)  # type: ignore[arg-type]


def kinds(plan_world: World) -> list[tuple[str, str | None, str]]:
    out = []
    for action in plan_reconcile(plan_world).actions:
        target = action.replaces if isinstance(action, StartInstance) else action.instance_id
        out.append((type(action).__name__, target, action.cause.kind))
    return out


def test_a_service_at_its_replicas_needs_nothing() -> None:
    assert plan_reconcile(world([inst("a"), inst("b"), inst("c")])).is_empty


def test_an_exited_instance_is_marked_failed_and_replaced_by_a_new_one() -> None:
    fleet = [inst("a"), inst("b"), inst("c")]
    observed = [seen("a"), seen("b"), seen("c", running=False, code=137)]
    plan = plan_reconcile(world(fleet, observed))
    assert plan.actions == (
        MarkFailed("c", "web", Cause("dead", "c exited with code 137")),
        StartInstance("web", 2, Cause("dead", "c exited with code 137"), replaces="c"),
    )


def test_an_instance_gone_from_the_driver_is_dead() -> None:
    fleet = [inst("a"), inst("b"), inst("c")]
    assert kinds(world(fleet, [seen("a"), seen("b")])) == [
        ("MarkFailed", "c", "dead"), ("StartInstance", "c", "dead")]


def test_a_death_noticed_by_the_health_monitor_names_the_replacement() -> None:
    plan = plan_reconcile(world([inst("a"), inst("b")],
                                departed={"web": [("c", "c exited with code 9")]}))
    assert plan.actions == (StartInstance("web", 2, Cause("dead", "c exited with code 9"), "c"),)


def test_an_unhealthy_instance_is_replaced_and_retired_at_once_as_it_has_no_traffic() -> None:
    fleet = [inst("a"), inst("b"), inst("c", U)]
    assert kinds(world(fleet)) == [("StartInstance", "c", "unhealthy"),
                                   ("Retire", "c", "unhealthy")]


def test_a_drifted_ready_instance_is_kept_until_its_replacement_is_ready() -> None:
    drifted = {"c": "file /app/server.py modified"}
    before = world([inst("a"), inst("b"), inst("c")], drifted=drifted)
    assert kinds(before) == [("StartInstance", "c", "drifted")]
    starting = world([inst("a"), inst("b"), inst("c"), inst("n", S, created=99.0)],
                     drifted=drifted)
    assert kinds(starting) == []
    ready = world([inst("a"), inst("b"), inst("c"), inst("n")], drifted=drifted)
    assert kinds(ready) == [("Retire", "c", "drifted")]


def test_an_instance_starting_longer_than_its_start_timeout_is_stuck() -> None:
    fleet = [inst("a"), inst("b"), inst("c", S, created=10.0)]
    assert kinds(world(fleet)) == [("StartInstance", "c", "stuck"), ("Retire", "c", "stuck")]


def test_a_starting_instance_within_its_start_timeout_counts_toward_replicas() -> None:
    assert kinds(world([inst("a"), inst("b"), inst("c", S, created=90.0)])) == []


def test_missing_replicas_are_started_with_a_scale_cause() -> None:
    assert kinds(world([inst("a")])) == [("StartInstance", None, "scale")] * 2


def test_surplus_instances_are_retired_not_ready_first_then_the_newest() -> None:
    fleet = [inst("a", created=1.0), inst("b", created=3.0), inst("c", created=2.0),
             inst("s", S, created=99.0)]
    assert kinds(world(fleet, replicas=2)) == [("Retire", "s", "scale"), ("Retire", "b", "scale")]


def test_draining_instances_are_left_alone_and_do_not_count() -> None:
    fleet = [inst("a"), inst("b"), inst("c"), inst("d", D)]
    assert kinds(world(fleet)) == []
    assert kinds(world([inst("a"), inst("b"), inst("d", D)])) == [
        ("StartInstance", None, "scale")]


def test_another_release_s_instances_are_not_sized_but_their_deaths_are_recorded() -> None:
    fleet = [inst("a"), inst("b"), inst("c"), inst("old", release=1), inst("gone", release=1)]
    observed = [seen(i.id) for i in fleet[:4]]
    assert kinds(world(fleet, observed)) == [("MarkFailed", "gone", "dead")]


def test_an_unknown_instance_with_corral_labels_is_destroyed_after_the_grace() -> None:
    fleet = [inst("a"), inst("b"), inst("c")]
    observed = [*(seen(i.id) for i in fleet), seen("stray", started=50.0),
                seen("young", started=95.0), seen("exited", running=False, started=99.0),
                Observed("foreign", 1, "x", True, None, {}, 0.0)]
    assert kinds(world(fleet, observed)) == [("Destroy", "exited", "unknown"),
                                             ("Destroy", "stray", "unknown")]


def test_a_service_held_by_a_deployment_is_skipped_entirely() -> None:
    fleet = [inst("a")]
    observed = [seen("a"), seen("stray")]
    plan = plan_reconcile(world(fleet, observed, busy=frozenset({"web"})))
    assert plan.is_empty and plan.skipped == ("web",)


def test_a_service_backing_off_gets_no_starts_but_still_retires() -> None:
    fleet = [inst("a"), inst("b"), inst("c", U)]
    assert kinds(world(fleet, hold_starts=frozenset({"web"}))) == [
        ("Retire", "c", "unhealthy")]


def test_a_service_with_no_live_release_is_not_touched() -> None:
    plan = plan_reconcile(World(desired={}, fleet=[inst("a")], observed=[seen("a")],
                                now=100.0))
    assert plan.is_empty


def test_destroy_and_retire_carry_the_service_for_the_lock() -> None:
    plan = plan_reconcile(world([inst("a"), inst("b"), inst("c")],
                                [seen("a"), seen("b"), seen("c"), seen("x", service="api")]))
    assert plan.actions == (Destroy("x", "api", Cause(
        "unknown", "x is running but the store does not know it")),)
    assert plan.services() == ["api"]
    assert not any(isinstance(a, Retire) for a in plan.actions)


def test_an_exited_instance_the_store_remembers_is_not_called_unknown() -> None:
    fleet = [inst("a"), inst("b"), inst("c")]
    observed = [*(seen(i.id) for i in fleet), seen("x", running=False)]
    assert kinds(world(fleet, observed, remembered={"x": "failed"})) == []


def test_a_running_instance_the_store_has_as_stopped_is_destroyed() -> None:
    fleet = [inst("a"), inst("b"), inst("c")]
    observed = [*(seen(i.id) for i in fleet), seen("x")]
    plan = plan_reconcile(world(fleet, observed, remembered={"x": "stopped"}))
    assert [a.cause.detail for a in plan.actions] == [
        "x is running but the store has it as stopped"]


def test_an_instance_the_oom_killer_ended_is_replaced_with_cause_oom() -> None:
    fleet = [inst("a"), inst("b"), inst("c")]
    killed = Observed("c", 1, "127.0.0.1:1", False, 137, {"corral.service": "web"}, 0.0,
                      oom_killed=True)
    why = "c killed by the OOM killer at its memory limit (exit code 137)"
    assert plan_reconcile(world(fleet, [seen("a"), seen("b"), killed])).actions == (
        MarkFailed("c", "web", Cause("oom", why)),
        StartInstance("web", 2, Cause("oom", why), replaces="c"))


def test_an_oom_death_the_health_monitor_noticed_first_keeps_its_cause() -> None:
    fleet = [inst("a"), inst("b")]
    departed = {"web": [("c", "c killed by the OOM killer at its memory limit")]}
    assert kinds(world(fleet, departed=departed)) == [("StartInstance", "c", "oom")]
