"""Capacity admission: can the machine hold every instance a deployment will run at its
peak? Decided from declared `resources`, the machine's capacity and what runs already.

Pure: limits, counts and the machine's numbers come in, a refusal (with the numbers) or
None comes out. Instances without declared resources count as nothing: admission can
only add up what was declared (docs/spec.md says so beside `resources`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from corral.ports.records import Capacity, Limits
from corral.spec.model import ServiceSpec
from corral.spec.size import format_size


def limits_of(service: ServiceSpec) -> Limits:
    """The per-instance limits a service's `resources` declare (empty: none)."""
    res = service.resources
    if res is None:
        return Limits()
    return Limits(memory=res.memory, memory_max=res.memory_max, cpus=res.cpus, pids=res.pids)


@dataclass(frozen=True)
class Footprint:
    """What some instances reserve together: bytes of memory and cores."""

    memory: int = 0
    cpus: float = 0.0

    def __add__(self, other: Footprint) -> Footprint:
        return Footprint(self.memory + other.memory, self.cpus + other.cpus)

    @classmethod
    def of(cls, limits: Limits, count: int = 1) -> Footprint:
        """`count` instances reserving `limits` each: `memory`, else the hard limit."""
        memory = limits.memory if limits.memory is not None else limits.memory_limit
        return cls((memory or 0) * count, (limits.cpus or 0.0) * count)


def total(footprints: Iterable[Footprint]) -> Footprint:
    return sum(footprints, Footprint())


def peak_footprint(strategy: str, replicas: int, new: Limits, live: int,
                   old: Limits, max_surge: int = 1) -> Footprint:
    """The most the service's instances reserve at once during a deployment to a release
    reserving `new` per instance, from `live` instances reserving `old`.

    rolling keeps at most max(live, replicas) + max_surge instances, each counted at the
    larger of the two reservations; blue-green starts a whole fleet beside the old one;
    canary grows the canary to a whole fleet beside the stable one (its last step).

    >>> gig = Limits(memory=1 << 30, cpus=0.5)
    >>> peak_footprint("rolling", 3, gig, 3, gig, max_surge=1)
    Footprint(memory=4294967296, cpus=2.0)
    >>> peak_footprint("blue-green", 3, gig, 3, gig).memory >> 30
    6
    >>> peak_footprint("canary", 2, gig, 0, Limits()).memory >> 30
    2
    """
    if strategy == "rolling":
        count = max(live, replicas) + max_surge if live else replicas
        each = Footprint.of(new)
        if live:
            was = Footprint.of(old)
            each = Footprint(max(each.memory, was.memory), max(each.cpus, was.cpus))
        return Footprint(each.memory * count, each.cpus * count)
    return Footprint.of(new, replicas) + Footprint.of(old, live)


@dataclass(frozen=True)
class Admission:
    """One deployment's question: its peak, what other services reserve, the machine."""

    service: str
    strategy: str
    peak: Footprint  # this service's instances at the deployment's peak
    starting: Footprint  # of which the new instances
    others: Footprint  # every other live instance on the machine
    machine: Capacity
    reserve: Footprint = Footprint()


def refusal(admission: Admission) -> str | None:
    """Why the deployment does not fit, with the numbers; None if it does.

    >>> machine = Capacity(memory=8 << 30, memory_available=6 << 30, cpus=2.0)
    >>> ask = Admission("web", "blue-green", peak=Footprint(7 << 30, 1.0),
    ...                 starting=Footprint(3 << 30, 0.5), others=Footprint(1 << 30, 0.5),
    ...                 machine=machine, reserve=Footprint(1 << 30, 0.0))
    >>> print(refusal(ask))  # doctest: +NORMALIZE_WHITESPACE
    web's blue-green deployment needs memory 7G at its peak, beside 1G reserved by other
    services and 1G kept for the system: 9G in all, more than the machine's 8G
    >>> refusal(Admission("web", "rolling", Footprint(1 << 30), Footprint(1 << 30),
    ...                   Footprint(), machine)) is None
    True
    """
    ask, room = admission, admission.machine
    head = f"{ask.service}'s {ask.strategy} deployment needs"
    if ask.peak.memory:
        need = ask.peak.memory + ask.others.memory + ask.reserve.memory
        if need > room.memory:
            return (f"{head} memory {format_size(ask.peak.memory)} at its peak, beside "
                    f"{format_size(ask.others.memory)} reserved by other services and "
                    f"{format_size(ask.reserve.memory)} kept for the system: "
                    f"{format_size(need)} in all, more than the machine's "
                    f"{format_size(room.memory)}")
        free = room.memory_available - ask.reserve.memory
        if ask.starting.memory > free:
            return (f"{head} memory {format_size(ask.starting.memory)} for the instances it "
                    f"starts, but only {format_size(max(free, 0))} is free now (after "
                    f"{format_size(ask.reserve.memory)} kept for the system)")
    if ask.peak.cpus:
        need_cpus = ask.peak.cpus + ask.others.cpus + ask.reserve.cpus
        if need_cpus > room.cpus + 1e-9:
            return (f"{head} {ask.peak.cpus:g} cores at its peak, beside {ask.others.cpus:g} "
                    f"reserved by other services and {ask.reserve.cpus:g} kept for the "
                    f"system: {need_cpus:g} in all, more than the machine's {room.cpus:g}")
    return None
