"""`corral plan`'s decision: the spec (with the images it would build) against what runs.

Pure: wanted services (digest-pinned configs) and running ones (live release, instances,
which of them still run) come in; terraform-style changes come out: `+` create, `~`
replace with the reason that forces it, `-` destroy. Nothing here reads a file or a clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from corral.core.release import config_digest
from corral.ports.records import Instance, InstanceState, Release

Op = Literal["+", "~", "-"]


@dataclass(frozen=True)
class Wanted:
    """A service as corral.toml says it should run (image resolved to a digest)."""

    service: str
    image_digest: str
    config: dict[str, Any]  # core.release.release_config
    replicas: int


@dataclass(frozen=True)
class Running:
    """A service as the store and the driver see it."""

    service: str
    live: Release | None
    instances: Sequence[Instance] = ()
    running_ids: frozenset[str] | None = None  # None: the driver was not asked


@dataclass(frozen=True)
class Change:
    op: Op
    subject: str  # "web" for a service, "web/ID" for one instance
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SpecPlan:
    changes: tuple[Change, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def count(self, op: Op) -> int:
        return sum(1 for c in self.changes if c.op == op)

    def summary(self) -> str:
        """'Plan: 1 to create, 2 to replace, 0 to destroy.' or 'No changes. …'"""
        if not self.changes:
            return "No changes. What runs is what corral.toml says."
        return (f"Plan: {self.count('+')} to create, {self.count('~')} to replace, "
                f"{self.count('-')} to destroy.")


def plan_changes(wanted: Mapping[str, Wanted], running: Mapping[str, Running]) -> SpecPlan:
    """Every change that `corral deploy` (or the reconciler) would make, per service.

    Worked example: web wants image b with replicas 3 while v4 runs image a with 3 ready
    instances: one change, `~ web: image a → b` (a new release replaces every instance).
    A service in the store but not in the spec gives `- api` with its instances.
    """
    changes: list[Change] = []
    for name in sorted(set(wanted) | set(running)):
        want, have = wanted.get(name), running.get(name)
        if want is None:
            if have is not None and have.live is not None and _live(have.instances):
                changes.append(Change("-", name, "not in corral.toml", {
                    "instances": [i.id for i in _live(have.instances)]}))
            continue
        changes += _plan_service(want, have)
    return SpecPlan(tuple(changes))


def _plan_service(want: Wanted, have: Running | None) -> list[Change]:
    if have is None or have.live is None:
        return [Change("+", want.service, f"{want.replicas} instance(s) of image "
                       f"{_short(want.image_digest)}", {"replicas": want.replicas,
                                                        "image": want.image_digest})]
    reasons = release_differences(have.live, want)
    if reasons:
        return [Change("~", want.service, "; ".join(reasons), {
            "from": have.live.version, "image": want.image_digest,
            "config": config_digest(want.config)})]
    return _plan_instances(want, have)


def release_differences(live: Release, want: Wanted) -> list[str]:
    """Why the wanted config makes a new release: the image, then each changed key."""
    reasons = []
    if live.image_digest != want.image_digest:
        reasons.append(f"image {_short(live.image_digest)} → {_short(want.image_digest)}")
    old = _flatten({k: v for k, v in live.config.items() if k != "image"})
    new = _flatten({k: v for k, v in want.config.items() if k != "image"})
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key):
            reasons.append(f"{key} {_show(key, old.get(key))} → {_show(key, new.get(key))}")
    return reasons


def _plan_instances(want: Wanted, have: Running) -> list[Change]:
    assert have.live is not None
    changes = []
    mine = [i for i in _live(have.instances) if i.release == have.live.version]
    healthy = 0
    for instance in sorted(mine, key=lambda i: i.id):
        subject = f"{want.service}/{instance.id}"
        if have.running_ids is not None and instance.id not in have.running_ids:
            changes.append(Change("~", subject, "dead: not running"))
        elif instance.state is InstanceState.UNHEALTHY:
            changes.append(Change("~", subject, f"unhealthy: {instance.reason or 'failing'}"))
        else:
            healthy += 1
    replaced = len(changes)
    missing = want.replicas - healthy - replaced
    if missing > 0:
        changes.append(Change("+", want.service, f"{missing} instance(s) missing: runs "
                              f"{healthy} of {want.replicas}", {"count": missing}))
    elif missing < 0:
        changes.append(Change("-", want.service, f"{-missing} instance(s) above replicas "
                              f"{want.replicas}", {"count": -missing}))
    return changes


def _live(instances: Sequence[Instance]) -> list[Instance]:
    return [i for i in instances if i.state.is_live and i.state is not InstanceState.DRAINING]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"health": {"path": "/"}} -> {"health.path": "/"}."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _show(key: str, value: Any) -> str:
    """A config value as the spec writes it: `15m`, not the 900.0 seconds stored."""
    from corral.spec.duration import duration_keys, format_duration
    from corral.spec.model import ServiceSpec

    if value is None:
        return "(unset)"
    if key in duration_keys(ServiceSpec) and isinstance(value, int | float):
        return format_duration(value)
    return repr(value)


def _short(digest: str) -> str:
    return digest[:19]
