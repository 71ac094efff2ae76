"""DORA metrics for `corral dora`: read the ledger and the releases' commit times, then let
core.dora do the arithmetic. Reads the store only; works without a controller.
"""

from __future__ import annotations

from typing import Any

from corral.core.dora import DEFINITIONS, Dora, dora
from corral.ports.ledger import EventFilter
from corral.ports.store import Store

RELEVANT = ("deployment", "instance")  # actions the arithmetic looks at


def dora_report(store: Store, *, since: float, until: float,
                service: str | None = None) -> dict[str, Any]:
    """The four figures and their definitions, for the deployments that ended in the window.

    Entries from one day before `since` are read too, so a deployment started before the
    window but ended in it is whole.
    """
    events = []
    for action in RELEVANT:
        events += store.find_events(EventFilter(service=service, action=action,
                                                since=since - 86400.0, until=until))
    events.sort(key=lambda e: e.seq)
    services = [service] if service else store.services()
    commits = {(r.service, r.version): r.git_commit_time
               for name in services for r in store.list_releases(name)
               if r.git_commit_time is not None}
    figures = dora(events, commits, since, until)
    return {"since": since, "until": until, "service": service,
            **_figures_view(figures), "definitions": DEFINITIONS}


def _figures_view(figures: Dora) -> dict[str, Any]:
    return {"deployment_frequency": {"deployments": figures.deployments,
                                     "per_day": round(figures.per_day, 3)},
            "lead_time": {"median_seconds": figures.lead_time},
            "change_failure_rate": {"rate": figures.change_failure_rate,
                                    "failed": figures.failed_changes,
                                    "changes": figures.changes},
            "time_to_restore": {"median_seconds": figures.time_to_restore,
                                "restored": figures.restored,
                                "unrestored": figures.unrestored}}
