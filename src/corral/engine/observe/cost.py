"""`corral cost`: read instances, releases and deployments from the store, let core.cost do
the arithmetic, and shape the report. Reads the store only; works without a controller.
"""

from __future__ import annotations

from typing import Any

from corral.core.capacity import Footprint, limits_of
from corral.core.cost import Hours, cost
from corral.ports.store import Store

USED_NOTE = ("used hours are not reported: usage is read live (corral status, metrics) "
             "and not sampled over time yet, so no idle share is claimed")


def cost_report(store: Store, *, since: float, until: float,
                service: str | None = None) -> dict[str, Any]:
    """Reserved GiB-hours and core-hours per service and release in the window, with the
    share spent on surges, warm fleets and failed deployments."""
    services = [service] if service else store.services()
    footprints: dict[tuple[str, int], Footprint] = {}
    for name in services:
        for release in store.list_releases(name):
            try:
                footprints[(name, release.version)] = Footprint.of(limits_of(release.spec))
            except ValueError:  # a config this version cannot read: it reserved nothing known
                continue
    instances = [i for name in services for i in store.list_instances(name, live_only=False)]
    deployments = [d for d in store.list_deployments(service)
                   if d.started_at <= until and (d.ended_at or until) >= since]
    report = cost(instances, footprints, deployments, since, until)
    rows = [{"service": name, "release": f"v{version}", **_hours_view(hours)}
            for (name, version), hours in sorted(report.by_release.items())]
    return {"since": since, "until": until, "service": service, "releases": rows,
            "services": {name: _hours_view(report.total(name)) for name in services},
            "total": _hours_view(report.total()), "note": USED_NOTE}


def _hours_view(hours: Hours) -> dict[str, Any]:
    def share(part: float) -> float | None:
        return round(part / hours.memory, 4) if hours.memory else None
    return {"memory_gib_hours": round(hours.memory, 4), "core_hours": round(hours.cores, 4),
            "surge_share": share(hours.surge), "warm_share": share(hours.warm),
            "failed_share": share(hours.failed)}
