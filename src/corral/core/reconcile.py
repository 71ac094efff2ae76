"""The reconciler's decision: desired state (live release, replicas) against what runs.

Pure: fleet, driver listing, drift findings and time come in, a plan of actions comes out.
Failure is answered by replacement, never by a restart in place: a dead, unhealthy, stuck
or drifted instance gets a new instance started for it, and is retired once it carries no
traffic that the fleet still needs. Unknown instances wearing corral's labels are destroyed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from corral.ports.records import Instance, InstanceState, Observed

Kind = Literal["dead", "oom", "unhealthy", "stuck", "drifted", "unknown", "scale"]
SERVICE_LABEL = "corral.service"
OOM_KILLED = "killed by the OOM killer at its memory limit"


@dataclass(frozen=True)
class Cause:
    """Why the reconciler acts: a kind for machines and a detail for humans."""

    kind: Kind
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True)
class Desired:
    """What should run for one service: `replicas` instances of release `release`."""

    service: str
    release: int
    replicas: int
    start_timeout: float = 60.0


@dataclass(frozen=True)
class StartInstance:
    """Start one new instance of the live release, in place of `replaces` if given."""

    service: str
    release: int
    cause: Cause
    replaces: str | None = None


@dataclass(frozen=True)
class MarkFailed:
    """The instance is gone or exited: record it as failed (its replacement is planned)."""

    instance_id: str
    service: str
    cause: Cause


@dataclass(frozen=True)
class Retire:
    """Drain the instance's traffic and stop it."""

    instance_id: str
    service: str
    cause: Cause


@dataclass(frozen=True)
class Destroy:
    """Stop an instance the fleet does not know at once (no traffic reaches it)."""

    instance_id: str
    service: str
    cause: Cause


Action = StartInstance | MarkFailed | Retire | Destroy


@dataclass(frozen=True)
class ReconcilePlan:
    actions: tuple[Action, ...] = ()
    skipped: tuple[str, ...] = ()  # services left alone: a deployment holds them

    @property
    def is_empty(self) -> bool:
        return not self.actions

    def services(self) -> list[str]:
        """Services the plan touches, in order of first appearance."""
        return list(dict.fromkeys(a.service for a in self.actions))


@dataclass(frozen=True)
class World:
    """Everything one reconcile decision reads; built by the engine at each sweep."""

    desired: Mapping[str, Desired]
    fleet: Sequence[Instance]
    observed: Sequence[Observed]
    now: float
    drifted: Mapping[str, str] = field(default_factory=dict)  # instance id -> what drifted
    departed: Mapping[str, Sequence[tuple[str, str]]] = field(default_factory=dict)
    busy: frozenset[str] = frozenset()  # services a deployment holds
    hold_starts: frozenset[str] = frozenset()  # services backing off after failed starts
    unknown_grace: float = 10.0  # an unlisted instance younger than this may be starting
    remembered: Mapping[str, str] = field(default_factory=dict)  # not in the fleet, but in
    # the store: instance id -> its state there (an exit being forgotten, or a leak)


def plan_reconcile(world: World) -> ReconcilePlan:
    """The actions that bring every service to its desired state.

    Worked example: web wants 3 of v2; the fleet holds a, b ready and c, which the driver
    reports exited with code 137. The plan marks c failed and starts one v2 instance
    caused by `dead: c exited with code 137`. Once the replacement is ready, nothing is left
    to do. A drifted ready instance is retired only once 3 clean ones are ready, so the
    fleet never shrinks below its replicas to replace it.
    """
    observed = {o.id: o for o in world.observed}
    actions: list[Action] = []
    for name in sorted(world.desired):
        if name not in world.busy:
            actions += _plan_service(world, world.desired[name], observed)
    actions += _plan_unknown(world, observed)
    skipped = tuple(sorted(s for s in world.busy if s in world.desired))
    return ReconcilePlan(tuple(actions), skipped)


def _plan_service(world: World, want: Desired, observed: Mapping[str, Observed]
                  ) -> list[Action]:
    actions: list[Action] = []
    vacancies: list[tuple[str | None, Cause]] = [
        (old, _cause_of_departure(why)) for old, why in world.departed.get(want.service, ())]
    condemned: list[tuple[Instance, Cause]] = []
    clean: list[Instance] = []
    for instance in _active(world.fleet, want.service):
        seen = observed.get(instance.id)
        if seen is None or not seen.running:
            cause = _cause_of_departure(f"{instance.id} {exit_reason(seen)}")
            actions.append(MarkFailed(instance.id, want.service, cause))
            if instance.release == want.release:
                vacancies.append((instance.id, cause))
            continue
        if instance.release != want.release:
            continue  # another release's fleet (a warm blue-green side): not ours to size
        cause_or_none = _condemnation(world, want, instance)
        if cause_or_none is None:
            clean.append(instance)
        else:
            condemned.append((instance, cause_or_none))
            vacancies.append((instance.id, cause_or_none))
    if want.service not in world.hold_starts:
        for n in range(max(0, want.replicas - len(clean))):
            old, cause = vacancies[n] if n < len(vacancies) else (
                None, Cause("scale", f"{want.service} runs {len(clean)} of {want.replicas}"))
            actions.append(StartInstance(want.service, want.release, cause, old))
    ready = sum(1 for i in clean if i.state is InstanceState.READY)
    for instance, cause in condemned:
        # An instance with no traffic goes now; a ready one (drifted) only once enough
        # clean ones serve, so replacing it never costs capacity.
        if instance.state is not InstanceState.READY or ready >= want.replicas:
            actions.append(Retire(instance.id, want.service, cause))
    actions += _scale_down(want, clean)
    return actions


def _active(fleet: Iterable[Instance], service: str) -> list[Instance]:
    """Live instances of `service` that are not already on their way out."""
    return [i for i in fleet if i.service == service and i.state.is_live
            and i.state is not InstanceState.DRAINING]


def _condemnation(world: World, want: Desired, instance: Instance) -> Cause | None:
    if instance.id in world.drifted:
        return Cause("drifted", world.drifted[instance.id])
    if instance.state is InstanceState.UNHEALTHY:
        return Cause("unhealthy", instance.reason or "failing its health check")
    age = world.now - instance.created_at
    if instance.state is InstanceState.STARTING and age > want.start_timeout:
        return Cause("stuck", f"not healthy {want.start_timeout:g}s after start"
                     + (f" ({instance.reason})" if instance.reason else ""))
    return None


def _scale_down(want: Desired, clean: list[Instance]) -> list[Action]:
    """Surplus clean instances: not-ready ones first, then the newest ready ones."""
    surplus = len(clean) - want.replicas
    if surplus <= 0:
        return []
    order = sorted(clean, key=lambda i: (i.state is InstanceState.READY, -i.created_at, i.id))
    cause = Cause("scale", f"{want.service} runs {len(clean)} of {want.replicas}")
    return [Retire(i.id, want.service, cause) for i in order[:surplus]]


def _plan_unknown(world: World, observed: Mapping[str, Observed]) -> list[Action]:
    known = {i.id for i in world.fleet}
    actions: list[Action] = []
    for seen in sorted(observed.values(), key=lambda o: o.id):
        service = seen.labels.get(SERVICE_LABEL)
        if seen.id in known or service is None or service in world.busy:
            continue
        if seen.running and world.now - (seen.started_at or 0.0) < world.unknown_grace:
            continue  # it may be a start whose fleet entry is being written right now
        remembered = world.remembered.get(seen.id)
        if remembered is not None and not seen.running:
            continue  # a known instance's exit, being forgotten by whoever noticed it
        state = "running" if seen.running else "exited"
        why = (f"the store has it as {remembered}" if remembered
               else "the store does not know it")
        actions.append(Destroy(seen.id, service, Cause("unknown",
                                                       f"{seen.id} is {state} but {why}")))
    return actions


def split_starts(actions: Sequence[Action]) -> tuple[list[Action], list[StartInstance],
                                                     list[Action]]:
    """One service's actions in the order the engine runs them: those before its first
    start, one by one; every start, side by side (each waits for its app to exec, so three
    drifted replicas take one start's time, not three); the rest, one by one.

    >>> dead = Cause("dead", "exited")
    >>> fail, retire = MarkFailed("a", "web", dead), Retire("b", "web", dead)
    >>> start = StartInstance("web", 2, dead, replaces="a")
    >>> split_starts([fail, start, retire, start]) == ([fail], [start, start], [retire])
    True
    >>> split_starts([fail, retire]) == ([fail, retire], [], [])
    True
    """
    starts = [a for a in actions if isinstance(a, StartInstance)]
    if not starts:
        return list(actions), [], []
    first = actions.index(starts[0])
    rest: list[Action] = [a for a in actions[first:] if not isinstance(a, StartInstance)]
    return list(actions[:first]), starts, rest


def exit_reason(seen: Observed | None) -> str:
    """Why an instance is no longer running, for its record, the ledger and `status`.

    >>> exit_reason(Observed("a", 7, "", running=False, exit_code=137, oom_killed=True))
    'killed by the OOM killer at its memory limit (exit code 137)'
    >>> exit_reason(Observed("a", 7, "", running=False, exit_code=3)), exit_reason(None)
    ('exited with code 3', 'is gone from the driver')
    """
    if seen is None:
        return "is gone from the driver"
    if seen.oom_killed:
        code = "" if seen.exit_code is None else f" (exit code {seen.exit_code})"
        return f"{OOM_KILLED}{code}"
    return "exited" if seen.exit_code is None else f"exited with code {seen.exit_code}"


def _cause_of_departure(why: str) -> Cause:
    """A death, `oom` when the OOM killer did it (whoever noticed it: the health monitor
    records the reason exit_reason gave, the reconciler reads it back)."""
    return Cause("oom" if OOM_KILLED in why else "dead", why)


def backoff_delay(failures: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before the next start after `failures` replacements failed in a row.

    The first replacement is immediate; then 0.5, 1, 2, 4 … seconds, at most `cap`.

    >>> [backoff_delay(n) for n in range(5)]
    [0.0, 0.5, 1.0, 2.0, 4.0]
    >>> backoff_delay(20)
    30.0
    """
    if failures <= 0:
        return 0.0
    return float(min(cap, base * 2 ** (failures - 1)))
