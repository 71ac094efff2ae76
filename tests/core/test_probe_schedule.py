"""When an instance's due check runs, and when it is due next, as a table."""

from __future__ import annotations

import pytest

from corral.core.probe import plan_check

# (case, now, created_at, start_grace, interval, starting, waits_ready, busy, expected)
CASES = [
    ("a ready instance's check runs and the next falls on the grid after its interval",
     10.1, 0.0, 0.0, 1.0, False, False, False, (11.25, True)),
    ("a due time already on the grid stays where it is",
     10.0, 0.0, 0.0, 1.0, False, False, False, (11.0, True)),
    ("a starting instance's readiness check runs at its own pace, off the grid",
     10.0, 0.0, 0.0, 1.0, True, False, False, (10.1, True)),
    ("a starting instance with an interval below the starting pace keeps its interval",
     10.0, 0.0, 0.0, 0.05, True, False, False, (10.05, True)),
    ("an instance in its start grace runs nothing until the grace ends",
     10.0, 0.0, 30.0, 1.0, True, False, False, (30.0, False)),
    ("a busy instance is looked at again after the resolution",
     10.0, 0.0, 0.0, 1.0, False, False, True, (10.1, False)),
    ("busy comes before the start grace",
     10.0, 0.0, 30.0, 1.0, False, False, True, (10.1, False)),
    ("a liveness check waits for a ready instance, an interval later on the grid",
     10.1, 0.0, 0.0, 1.0, False, True, False, (11.25, False)),
    ("the start grace comes before waiting to be ready",
     10.0, 0.0, 30.0, 1.0, False, True, False, (30.0, False)),
]


@pytest.mark.parametrize(
    ("now", "created_at", "start_grace", "interval", "starting", "waits_ready", "busy",
     "expected"),
    [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_plan_check(now: float, created_at: float, start_grace: float, interval: float,
                    starting: bool, waits_ready: bool, busy: bool,
                    expected: tuple[float, bool]) -> None:
    assert plan_check(now, created_at, start_grace, interval, starting=starting,
                      waits_ready=waits_ready, busy=busy, resolution=0.1,
                      batch=0.25) == pytest.approx(expected)
