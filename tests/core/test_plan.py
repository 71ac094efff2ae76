"""`corral plan`'s decisions as tables: wanted and running services in, changes out."""

from __future__ import annotations

from typing import Any

from corral.core.plan import Change, Running, Wanted, plan_changes
from corral.ports.records import Instance, InstanceState, Release

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def config(**over: Any) -> dict[str, Any]:
    return {"image": A, "replicas": 3, "env": {"GREETING": "hello"}, "port": 8000, **over}


def release(version: int = 4, image: str = A, **over: Any) -> Release:
    return Release("web", version, image, "sha256:c", config(image=image, **over), 0.0)


def instances(n: int, version: int = 4, state: InstanceState = InstanceState.READY
              ) -> list[Instance]:
    return [Instance(f"web-{k}", "web", version, A, "a", state, 0.0) for k in range(n)]


def wanted(image: str = A, **over: Any) -> dict[str, Wanted]:
    cfg = config(image=image, **over)
    return {"web": Wanted("web", image, cfg, cfg["replicas"])}


def test_what_runs_as_the_spec_says_has_no_changes() -> None:
    plan = plan_changes(wanted(), {"web": Running("web", release(), instances(3))})
    assert not plan.has_changes
    assert plan.summary().startswith("No changes.")


def test_a_service_never_deployed_is_created() -> None:
    plan = plan_changes(wanted(), {})
    assert [(c.op, c.subject) for c in plan.changes] == [("+", "web")]
    assert plan.summary() == "Plan: 1 to create, 0 to replace, 0 to destroy."


def test_a_new_image_replaces_the_service_and_says_so() -> None:
    plan = plan_changes(wanted(image=B), {"web": Running("web", release(), instances(3))})
    assert plan.changes == (Change("~", "web", f"image {A[:19]} → {B[:19]}",
                                   plan.changes[0].detail),)


def test_each_changed_config_key_is_named_in_the_reason() -> None:
    plan = plan_changes(wanted(env={"GREETING": "hi"}, replicas=5),
                        {"web": Running("web", release(), instances(3))})
    assert plan.changes[0].reason == "env.GREETING 'hello' → 'hi'; replicas 3 → 5"


def test_a_service_no_longer_in_the_spec_is_destroyed_with_its_instances() -> None:
    plan = plan_changes({}, {"web": Running("web", release(), instances(2))})
    assert plan.changes == (Change("-", "web", "not in corral.toml",
                                   {"instances": ["web-0", "web-1"]}),)


def test_dead_and_unhealthy_instances_are_replacements_and_missing_ones_creations() -> None:
    fleet = [*instances(1), Instance("web-dead", "web", 4, A, "a", InstanceState.READY, 0.0),
             Instance("web-sick", "web", 4, A, "a", InstanceState.UNHEALTHY, 0.0, reason="503")]
    plan = plan_changes(wanted(replicas=3) | {}, {"web": Running(
        "web", release(), fleet, frozenset({"web-0", "web-sick"}))})
    assert [(c.op, c.subject, c.reason) for c in plan.changes] == [
        ("~", "web/web-dead", "dead: not running"),
        ("~", "web/web-sick", "unhealthy: 503"),
    ]
    short = plan_changes(wanted(), {"web": Running("web", release(), instances(1))})
    assert [(c.op, c.reason) for c in short.changes] == [
        ("+", "2 instance(s) missing: runs 1 of 3")]


def test_surplus_instances_are_destroyed() -> None:
    plan = plan_changes(wanted(), {"web": Running("web", release(), instances(5))})
    assert [(c.op, c.detail) for c in plan.changes] == [("-", {"count": 2})]
