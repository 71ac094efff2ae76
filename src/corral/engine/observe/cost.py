"""`corral cost`: read instances, releases, deployments and sampled usage from the store,
let core.cost do the arithmetic, and shape the report. Reads the store only; works without
a controller (used hours are what controllers sampled while they ran).
"""

from __future__ import annotations

from typing import Any

from corral.core.capacity import Footprint, limits_of
from corral.core.cost import Hours, cost, hour_of
from corral.ports.store import Store

USED_NOTE = ("used is what the controller sampled (every 60 s by default); idle is "
             "reserved minus used over reserved, counted only over sampled time")
UNSAMPLED_NOTE = ("no usage was sampled in this window (no controller ran, or its driver "
                  "cannot measure instances): used hours and the idle share are unknown")


def cost_report(store: Store, *, since: float, until: float,
                service: str | None = None) -> dict[str, Any]:
    """Reserved and used GiB-hours and core-hours per service and release in the window,
    the idle share, and the share spent on surges, warm fleets and failed deployments."""
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
    usage = store.list_usage(hour_of(since), until, service)
    report = cost(instances, footprints, deployments, since, until, usage)
    rows = [{"service": name, "release": f"v{version}", **_hours_view(hours)}
            for (name, version), hours in sorted(report.by_release.items())]
    return {"since": since, "until": until, "service": service, "releases": rows,
            "services": {name: _hours_view(report.total(name)) for name in services},
            "total": _hours_view(report.total()),
            "note": USED_NOTE if usage else UNSAMPLED_NOTE}


def _hours_view(hours: Hours) -> dict[str, Any]:
    def share(part: float) -> float | None:
        return round(part / hours.memory, 4) if hours.memory else None

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)
    return {"memory_gib_hours": _figure(hours.memory), "core_hours": _figure(hours.cores),
            "used_memory_gib_hours": _figure(hours.used_memory),
            "used_core_hours": _figure(hours.used_cores),
            "idle_share": rounded(hours.idle_memory_share),
            "idle_cpu_share": rounded(hours.idle_cpu_share),
            "sampled_share": rounded(hours.sampled_share),
            "surge_share": share(hours.surge), "warm_share": share(hours.warm),
            "failed_share": share(hours.failed)}


def _figure(hours: float) -> float:
    """Six significant digits: a small instance's first minutes (a few millionths of a
    GiB-hour) must not round to nothing."""
    return float(f"{hours:.6g}")
