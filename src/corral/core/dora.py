"""DORA metrics from the ledger: deployment frequency, lead time for changes, change failure
rate and time to restore. Pure arithmetic over ledger entries and commit times passed in;
reading the ledger and the releases is the engine's job. DEFINITIONS is printed under them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from corral.ports.records import Event

DAY = 86400.0
FAILURE_SIGNS = ("instance.unhealthy", "instance.failed")

DEFINITIONS = {
    "deployment_frequency": "succeeded deployments per day in the window (rollbacks "
                            "excluded); a deployment counts on the day it ended",
    "lead_time": "median time from a release's git commit to its deployment succeeding "
                 "(100% of traffic on it); releases without a commit time are left out",
    "change_failure_rate": "share of finished deployments (rollbacks excluded) that ended "
                           "rolled back or failed, or succeeded and were followed by a "
                           "rollback of the same service before the next deployment",
    "time_to_restore": "median time from a failed change's first failure sign (an instance "
                       "of its release unhealthy or failed; else the rollback's start) to "
                       "the service running healthy again (the rollback or the next "
                       "deployment succeeding)",
}


@dataclass(frozen=True)
class Deployment:
    """One deployment as the ledger tells it."""

    id: int
    service: str
    from_release: int | None
    to_release: int
    started_at: float
    ended_at: float | None
    outcome: str | None  # "succeeded" | "rolled_back" | "failed" | "aborted" | None (running)
    rollback: bool  # it moved the service back to an older release


@dataclass(frozen=True)
class Dora:
    deployments: int  # succeeded, rollbacks excluded
    per_day: float
    lead_time: float | None  # seconds, median
    changes: int
    failed_changes: int
    change_failure_rate: float | None
    time_to_restore: float | None  # seconds, median
    restored: int
    unrestored: int


def deployments_of(events: Sequence[Event]) -> list[Deployment]:
    """Deployments from their deployment.start and deployment.<outcome> entries.

    >>> start = Event(at=10, actor="a", action="deployment.start", subject="web",
    ...               detail={"deployment": 1, "from": 2, "to": 3})
    >>> end = Event(at=40, actor="a", action="deployment.succeeded", subject="web",
    ...             detail={"deployment": 1})
    >>> deployments_of([start, end])
    [Deployment(id=1, service='web', from_release=2, to_release=3, started_at=10, \
ended_at=40, outcome='succeeded', rollback=False)]
    """
    starts: dict[int, Event] = {}
    ends: dict[int, Event] = {}
    for event in events:
        number = event.detail.get("deployment")
        if not event.action.startswith("deployment.") or not isinstance(number, int):
            continue
        (starts if event.action == "deployment.start" else ends).setdefault(number, event)
    found = []
    for number, start in sorted(starts.items()):
        end = ends.get(number)
        source, target = start.detail.get("from"), start.detail.get("to")
        if not isinstance(target, int):
            continue
        back = bool(start.detail.get("rollback")) or (isinstance(source, int) and target < source)
        found.append(Deployment(number, start.subject, source if isinstance(source, int) else None,
                                target, start.at, end.at if end else None,
                                end.action.split(".", 1)[1] if end else None, back))
    return found


def dora(events: Sequence[Event], commit_times: dict[tuple[str, int], float],
         since: float, until: float) -> Dora:
    """The four figures for deployments that ended in [since, until).

    Worked example: over 2 days, web v1→v2 succeeds (commit 1h before), v2→v3 is rolled
    back 10 minutes after v3's first instance went unhealthy, and v2→v4 succeeds
    (commit 3h before): frequency 2/2 = 1.0 a day, lead time median(1h, 3h) = 2h,
    change failure rate 1/3, time to restore 10 minutes (see tests/core/test_dora.py).
    """
    deployments = deployments_of(events)
    ended = [d for d in deployments if d.ended_at is not None and since <= d.ended_at < until]
    changes = [d for d in ended if not d.rollback and d.outcome != "aborted"]
    succeeded = [d for d in changes if d.outcome == "succeeded"]
    leads = [d.ended_at - commit_times[(d.service, d.to_release)] for d in succeeded
             if d.ended_at is not None and (d.service, d.to_release) in commit_times]
    failures = [d for d in changes if _is_failed_change(d, deployments)]
    restores = [_restore_time(d, deployments, events) for d in failures]
    done = [r for r in restores if r is not None]
    days = max((until - since) / DAY, 1e-9)
    return Dora(
        deployments=len(succeeded), per_day=len(succeeded) / days,
        lead_time=statistics.median(leads) if leads else None,
        changes=len(changes), failed_changes=len(failures),
        change_failure_rate=len(failures) / len(changes) if changes else None,
        time_to_restore=statistics.median(done) if done else None,
        restored=len(done), unrestored=len(restores) - len(done))


def _next_of_service(deployment: Deployment, deployments: Sequence[Deployment]) -> list[Deployment]:
    return [d for d in deployments
            if d.service == deployment.service and d.started_at >= (deployment.ended_at or 0)
            and d.id != deployment.id]


def _is_failed_change(deployment: Deployment, deployments: Sequence[Deployment]) -> bool:
    if deployment.outcome in ("rolled_back", "failed"):
        return True
    later = _next_of_service(deployment, deployments)
    # A rollback that failed left this release live: no evidence that it failed.
    return bool(later) and later[0].rollback and later[0].outcome in ("succeeded", None)


def _restore_time(deployment: Deployment, deployments: Sequence[Deployment],
                  events: Sequence[Event]) -> float | None:
    """Seconds from the first failure sign to healthy again; None if not restored yet."""
    later = _next_of_service(deployment, deployments)
    if deployment.outcome == "rolled_back":
        window_end, restored_at = deployment.ended_at, deployment.ended_at
    else:
        window_end = later[0].started_at if later and later[0].rollback else None
        fixed = [d for d in later if d.outcome == "succeeded"]
        restored_at = fixed[0].ended_at if fixed else None
    if restored_at is None:
        return None
    begin = deployment.started_at if deployment.outcome != "succeeded" else (
        deployment.ended_at or deployment.started_at)
    detected = _first_failure_sign(deployment, events, begin, window_end or restored_at)
    if detected is None:
        detected = window_end if deployment.outcome == "succeeded" and window_end else (
            deployment.ended_at or restored_at)
    return max(0.0, restored_at - detected)


def _first_failure_sign(deployment: Deployment, events: Sequence[Event], begin: float,
                        end: float) -> float | None:
    of_release: set[str] = set()
    for event in events:
        if (event.action == "instance.start" and event.subject.startswith(deployment.service + "/")
                and event.detail.get("release") == deployment.to_release):
            of_release.add(event.subject)
        elif (event.action in FAILURE_SIGNS and event.subject in of_release
              and begin <= event.at <= end):
            return event.at
    return None
