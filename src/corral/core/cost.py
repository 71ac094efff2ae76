"""Cost arithmetic for `corral cost`: resource-hours each service and release reserved in a
window, and the share of them spent on surges, warm fleets and failed deployments.

Pure: instance lifetimes, declared footprints (core/capacity.py) and deployments come in,
totals come out. Reserved is what `resources` declared times how long each instance lived;
an instance without `resources` reserves nothing. What is *used* is not here: usage is read
live (status, metrics) and not yet sampled over time, so no idle share is claimed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from corral.core.capacity import Footprint
from corral.ports.records import Deployment, DeploymentOutcome, Instance

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

    def add(self, footprint: Footprint, seconds: float) -> None:
        self.memory += footprint.memory / GIB * seconds / HOUR
        self.cores += footprint.cpus * seconds / HOUR


@dataclass
class CostReport:
    by_release: dict[tuple[str, int], Hours] = field(default_factory=dict)

    def total(self, service: str | None = None) -> Hours:
        found = Hours()
        for (name, _), hours in self.by_release.items():
            if service is None or name == service:
                for key in ("memory", "cores", "surge", "warm", "failed"):
                    setattr(found, key, getattr(found, key) + getattr(hours, key))
        return found


def cost(instances: Iterable[Instance], footprints: Mapping[tuple[str, int], Footprint],
         deployments: Sequence[Deployment], since: float, until: float) -> CostReport:
    """Reserved hours per (service, release) in [since, until].

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
