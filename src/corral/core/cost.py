"""Cost arithmetic for `corral cost`: resource-hours each service and release reserved and
used in a window, the share of them spent on surges, warm fleets and failed deployments,
and the idle share.

Pure: instance lifetimes, declared footprints (core/capacity.py), deployments and sampled
usage come in, totals come out. Reserved is what `resources` declared times how long each
instance lived; an instance without `resources` reserves nothing. Used is what the
controller sampled (`tally` turns one sample into an hour's aggregate); the idle share
compares it with what was reserved over the same sampled time only, so hours no controller
sampled neither count as idle nor as used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields

from corral.core.capacity import Footprint
from corral.ports.records import Deployment, DeploymentOutcome, Instance, UsageTally

HOUR = 3600.0
GIB = float(1 << 30)
FAILED = (DeploymentOutcome.ROLLED_BACK, DeploymentOutcome.FAILED, DeploymentOutcome.ABORTED)


@dataclass
class Hours:
    """Reserved GiB-hours of memory and core-hours, in all and by what they were spent on."""

    memory: float = 0.0
    cores: float = 0.0
    surge: float = 0.0  # GiB-hours above `replicas` while a deployment ran
    warm: float = 0.0  # GiB-hours of a previous fleet kept warm after a blue-green switch
    failed: float = 0.0  # GiB-hours of instances started by a deployment that failed
    used_memory: float = 0.0  # GiB-hours sampled in use
    used_cores: float = 0.0  # core-hours of CPU time sampled
    sampled_memory: float = 0.0  # GiB-hours reserved while samples were taken
    sampled_cores: float = 0.0  # core-hours reserved while samples were taken

    def add(self, footprint: Footprint, seconds: float) -> None:
        self.memory += footprint.memory / GIB * seconds / HOUR
        self.cores += footprint.cpus * seconds / HOUR

    def add_used(self, tally: UsageTally, footprint: Footprint, part: float) -> None:
        """`part` of one hour's tally (less than 1 for an hour the window cuts)."""
        self.used_memory += tally.memory_byte_seconds / GIB / HOUR * part
        self.used_cores += tally.cpu_seconds / HOUR * part
        self.sampled_memory += footprint.memory / GIB * tally.seconds / HOUR * part
        self.sampled_cores += footprint.cpus * tally.seconds / HOUR * part

    @property
    def idle_memory_share(self) -> float | None:
        """(reserved - used) / reserved over the sampled time; None when nothing reserved
        was sampled. Below 0 when instances used more than they reserved (memory above
        `memory`, up to `memory_max`)."""
        return _idle(self.sampled_memory, self.used_memory)

    @property
    def idle_cpu_share(self) -> float | None:
        return _idle(self.sampled_cores, self.used_cores)

    @property
    def sampled_share(self) -> float | None:
        """How much of the reserved GiB-hours samples cover (1.0: a controller sampled
        the whole window)."""
        return self.sampled_memory / self.memory if self.memory else None

    def plus(self, other: Hours) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))


def _idle(reserved: float, used: float) -> float | None:
    return (reserved - used) / reserved if reserved > 0 else None


@dataclass(frozen=True)
class Reading:
    """One instance's last sample: when it was taken and the CPU time charged by then."""

    at: float
    cpu_seconds: float | None


def hour_of(moment: float) -> float:
    """The start of the clock hour `moment` falls in (the key of a UsageTally)."""
    return moment - moment % HOUR


def tally(instance: Instance, memory: int, cpu_seconds: float | None, at: float,
          last: Reading | None, period: float) -> tuple[UsageTally, Reading]:
    """One sample of `instance` turned into usage over the time since its last one.

    Memory seen now is held for that interval (bytes times seconds). CPU is the growth of
    the cgroup's counter. An instance seen for the first time counts from its creation if
    that was within one `period`; an older one (adopted by a restarted controller) only
    sets its baseline: the time before belongs to a sampler that already counted it, or to
    none, and is never counted twice or piled into this hour. Used is so a lower bound.

    >>> from corral.ports.records import InstanceState
    >>> web = Instance("i", "web", 1, "", "", InstanceState.READY, 7190.0)
    >>> first, seen = tally(web, 1 << 20, 2.0, 7200.0, None, 60.0)
    >>> (first.hour, first.seconds, first.cpu_seconds)
    (7200.0, 10.0, 2.0)
    >>> later, _ = tally(web, 2 << 20, 5.0, 7260.0, seen, 60.0)
    >>> (later.seconds, later.memory_byte_seconds == 60 * (2 << 20), later.cpu_seconds)
    (60.0, True, 3.0)
    """
    if last is None:
        age = max(at - instance.created_at, 0.0)
        seconds = age if age <= period else 0.0
        cpu = cpu_seconds if cpu_seconds is not None and age <= period else 0.0
    else:
        seconds = max(at - last.at, 0.0)
        cpu = (max(cpu_seconds - last.cpu_seconds, 0.0)
               if cpu_seconds is not None and last.cpu_seconds is not None else 0.0)
    return (UsageTally(instance.id, instance.service, instance.release, hour_of(at), seconds,
                       memory * seconds, cpu), Reading(at, cpu_seconds))


@dataclass
class CostReport:
    by_release: dict[tuple[str, int], Hours] = field(default_factory=dict)

    def total(self, service: str | None = None) -> Hours:
        found = Hours()
        for (name, _), hours in self.by_release.items():
            if service is None or name == service:
                found.plus(hours)
        return found


def cost(instances: Iterable[Instance], footprints: Mapping[tuple[str, int], Footprint],
         deployments: Sequence[Deployment], since: float, until: float,
         usage: Iterable[UsageTally] = ()) -> CostReport:
    """Reserved and used hours per (service, release) in [since, until].

    `usage` holds the tallies of the hours from `hour_of(since)` on; the hour the window
    starts in counts for the part of it inside the window (its samples taken as spread
    evenly over the hour).

    Worked example: web v1 reserves 1G; a rolling deployment to v2 (1G, replicas 1) runs
    from t=0 to t=3600 s; v1's instance lives until 3600, v2's from 1800 on. Each reserved
    1G for its time, 1.5 GiB-hours in all by t=3600, of which 0.5 are surge (two instances
    where one was wanted, for half an hour).
    """
    report = CostReport()
    lived = [(i, *_clip(i, since, until)) for i in instances]
    for instance, start, end in lived:
        if end > start:
            report.by_release.setdefault((instance.service, instance.release), Hours()).add(
                footprints.get((instance.service, instance.release), Footprint()), end - start)
    for deployment in deployments:
        _charge(report, deployment, lived, footprints, until)
    for sampled in usage:
        key = (sampled.service, sampled.release)
        part = min(1.0, max(0.0, (sampled.hour + HOUR - since) / HOUR))
        report.by_release.setdefault(key, Hours()).add_used(
            sampled, footprints.get(key, Footprint()), part)
    return report


def _charge(report: CostReport, deployment: Deployment,
            lived: Sequence[tuple[Instance, float, float]],
            footprints: Mapping[tuple[str, int], Footprint], until: float) -> None:
    """Add one deployment's surge, warm and failed hours to its releases."""
    service, new = deployment.service, deployment.to_release
    began, ended = deployment.started_at, deployment.ended_at or until
    gib = footprints.get((service, new), Footprint()).memory / GIB
    mine = [(i, s, e) for i, s, e in lived if i.service == service and e > s]
    hours = report.by_release.setdefault((service, new), Hours())
    if deployment.outcome in FAILED:
        hours.failed += gib * sum(e - s for i, s, e in mine if i.release == new
                                  and began <= i.created_at <= ended) / HOUR
        return
    hours.surge += gib * _above(mine, deployment.replicas, began, ended) / HOUR
    old = deployment.from_release
    if deployment.strategy == "blue-green" and old is not None:
        old_gib = footprints.get((service, old), Footprint()).memory / GIB
        warm = sum(e - max(s, ended) for i, s, e in mine if i.release == old and e > ended)
        report.by_release.setdefault((service, old), Hours()).warm += old_gib * warm / HOUR


def _above(lived: Sequence[tuple[Instance, float, float]], replicas: int, began: float,
           ended: float) -> float:
    """Instance-seconds above `replicas` within [began, ended]: a sweep over starts and ends.

    >>> from corral.ports.records import InstanceState
    >>> def at(s, e): return (Instance("i", "web", 1, "", "", InstanceState.READY, s), s, e)
    >>> _above([at(0, 100), at(50, 200), at(60, 70)], 1, 0, 150)
    60.0
    """
    edges = sorted([(max(s, began), 1) for _, s, e in lived if e > began and s < ended]
                   + [(min(e, ended), -1) for _, s, e in lived if e > began and s < ended])
    total, running, last = 0.0, 0, began
    for moment, step in edges:
        total += max(0, running - replicas) * (moment - last)
        running, last = running + step, moment
    return total


def _clip(instance: Instance, since: float, until: float) -> tuple[float, float]:
    end = instance.ended_at if instance.ended_at is not None else until
    return max(instance.created_at, since), min(end, until)
