"""DORA arithmetic over ledger entries: tables of events in, figures out."""

from __future__ import annotations

import pytest

from corral.core.dora import DAY, deployments_of, dora
from corral.ports.records import Event

H = 3600.0


def ev(at: float, action: str, subject: str = "web", **detail: object) -> Event:
    return Event(at=at, actor="ann", action=action, subject=subject, detail=dict(detail))


def deployment(number: int, start: float, end: float, outcome: str, source: int | None,
               target: int, service: str = "web", **extra: object) -> list[Event]:
    return [ev(start, "deployment.start", service, deployment=number, to=target,
               **{"from": source}, **extra),
            ev(end, f"deployment.{outcome}", service, deployment=number)]


WORKED = [
    *deployment(1, 1 * H, 1 * H + 60, "succeeded", None, 1),
    *deployment(2, 10 * H, 10 * H + 60, "succeeded", 1, 2),
    ev(20 * H, "instance.start", "web/w3a", release=3),
    ev(20 * H + 30, "instance.unhealthy", "web/w3a"),
    *deployment(3, 20 * H, 20 * H + 30 + 600, "rolled_back", 2, 3),
    *deployment(4, 30 * H, 30 * H + 60, "succeeded", 2, 4),
]
COMMITS = {("web", 2): 10 * H + 60 - 1 * H, ("web", 4): 30 * H + 60 - 3 * H}


def test_the_worked_example_of_the_docstring() -> None:
    figures = dora(WORKED, COMMITS, since=2 * H, until=2 * H + 2 * DAY)
    assert figures.deployments == 2 and figures.per_day == pytest.approx(1.0)
    assert figures.lead_time == pytest.approx(2 * H)
    assert (figures.changes, figures.failed_changes) == (3, 1)
    assert figures.change_failure_rate == pytest.approx(1 / 3)
    assert figures.time_to_restore == pytest.approx(600)


def test_deployments_outside_the_window_are_not_counted() -> None:
    figures = dora(WORKED, COMMITS, since=25 * H, until=26 * H + DAY)
    assert (figures.deployments, figures.changes, figures.failed_changes) == (1, 1, 0)
    assert figures.change_failure_rate == 0.0 and figures.time_to_restore is None


def test_a_success_followed_by_a_rollback_is_a_failed_change_restored_by_the_rollback() -> None:
    events = [*deployment(1, 0, 60, "succeeded", None, 1),
              ev(100, "instance.start", "web/w2", release=2),
              *deployment(2, 100, 160, "succeeded", 1, 2),
              ev(400, "instance.failed", "web/w2"),
              *deployment(3, 500, 560, "succeeded", 2, 1)]
    figures = dora(events, {}, since=0, until=DAY)
    assert (figures.changes, figures.failed_changes) == (2, 1)
    assert figures.deployments == 2  # the rollback itself is not a deployment of a change
    assert figures.time_to_restore == pytest.approx(160)  # 400 (failed) → 560 (healthy)


def test_a_failed_change_never_fixed_counts_as_unrestored() -> None:
    events = [*deployment(1, 0, 60, "failed", None, 1)]
    figures = dora(events, {}, since=0, until=DAY)
    assert (figures.failed_changes, figures.restored, figures.unrestored) == (1, 0, 1)


def test_aborted_and_running_deployments_are_not_changes() -> None:
    events = [*deployment(1, 0, 60, "aborted", None, 1),
              ev(100, "deployment.start", "web", deployment=2, to=2, **{"from": 1})]
    figures = dora(events, {}, since=0, until=DAY)
    assert figures.changes == 0 and figures.change_failure_rate is None


@pytest.mark.parametrize(("source", "target", "flag", "is_rollback"), [
    (1, 2, None, False), (3, 2, None, True), (2, 3, True, True), (None, 1, None, False)])
def test_a_rollback_is_a_move_to_an_older_release_or_one_marked_so(
        source: int | None, target: int, flag: bool | None, is_rollback: bool) -> None:
    extra = {"rollback": flag} if flag is not None else {}
    events = deployment(7, 0, 1, "succeeded", source, target, **extra)
    assert deployments_of(events)[0].rollback is is_rollback


def test_services_do_not_mix() -> None:
    events = [*deployment(1, 0, 60, "succeeded", None, 1, "web"),
              *deployment(2, 100, 160, "succeeded", None, 5, "api"),
              *deployment(3, 200, 260, "succeeded", 5, 4, "api")]
    figures = dora(events, {}, since=0, until=DAY)
    assert (figures.changes, figures.failed_changes) == (2, 1)
